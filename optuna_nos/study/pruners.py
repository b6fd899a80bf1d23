"""Pruners that stop diverging or collapsed candidates early, and say why.

A candidate optimizer that makes the loss non-finite, or leaves the model at chance level
after a warm-up, will not recover; training it further only burns the worker's time. Every
prune writes its reason to the trial's user attr ``nos.reason``.
"""

from __future__ import annotations

import math

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from optuna_nos.core.errors import NOSError
from optuna_nos.core.validation import check_int
from optuna_nos.study.stored import REASON_ATTR

__all__ = ["REASON_ATTR", "DivergencePruner", "record_reason"]


def record_reason(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    """Write ``reason`` to the trial's ``nos.reason`` user attr through the storage."""
    study._storage.set_trial_user_attr(trial._trial_id, REASON_ATTR, reason)


class DivergencePruner(BasePruner):
    """Prune non-finite intermediate values and collapse to chance level.

    For the latest reported intermediate value ``v`` at step ``s``:

    1. ``v`` is NaN or infinite: prune (at any step).
    2. ``chance_level`` is set and ``s >= n_warmup_steps``: prune when ``v`` has collapsed,
       i.e. ``v <= chance_level + margin`` in a maximizing study (accuracy) or
       ``v >= chance_level - margin`` in a minimizing one (loss).
    3. Otherwise ask ``wrapped`` (any Optuna pruner, e.g. ``MedianPruner``), if given.

    The reason of every prune goes to the trial's user attr ``nos.reason``.

    Args:
        wrapped: pruner consulted when neither rule fires; ``None`` prunes nothing else.
        n_warmup_steps: steps (reports) before the collapse rule applies.
        chance_level: metric value of a model that learned nothing, e.g. 0.1 accuracy on
            ten balanced classes, or ln(10) cross-entropy; ``None`` disables rule 2.
        margin: how close to chance counts as collapsed.
    """

    def __init__(
        self,
        wrapped: BasePruner | None = None,
        *,
        n_warmup_steps: int = 2,
        chance_level: float | None = None,
        margin: float = 0.02,
    ) -> None:
        if wrapped is not None and not isinstance(wrapped, BasePruner):
            raise NOSError(f"wrapped must be an Optuna pruner or None, got {wrapped!r}")
        check_int("n_warmup_steps", n_warmup_steps, minimum=0)
        if chance_level is not None and not math.isfinite(chance_level):
            raise NOSError(f"chance_level must be a finite number or None, got {chance_level!r}")
        if not math.isfinite(margin) or margin < 0:
            raise NOSError(f"margin must be a finite number >= 0, got {margin!r}")
        self._wrapped = wrapped
        self._n_warmup_steps = n_warmup_steps
        self._chance_level = chance_level
        self._margin = margin

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        reason = self._reason(study, step, trial.intermediate_values[step])
        if reason is None and self._wrapped is not None and self._wrapped.prune(study, trial):
            reason = f"pruned by {type(self._wrapped).__name__} at step {step}"
        if reason is None:
            return False
        record_reason(study, trial, reason)
        return True

    def _reason(self, study: optuna.Study, step: int, value: float) -> str | None:
        if not math.isfinite(value):
            return f"non-finite intermediate value {value} at step {step}"
        if self._chance_level is None or step < self._n_warmup_steps:
            return None
        chance, margin = self._chance_level, self._margin
        if study.direction == StudyDirection.MINIMIZE:
            if value >= chance - margin:
                return (
                    f"collapsed to chance level at step {step}: {value:.6g} >= "
                    f"{chance:.6g} - {margin:.6g}"
                )
            return None
        if value <= chance + margin:
            return (
                f"collapsed to chance level at step {step}: {value:.6g} <= "
                f"{chance:.6g} + {margin:.6g}"
            )
        return None
