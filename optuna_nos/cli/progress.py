"""Terminal progress of ``optuna-nos run``: a bar of decided GA slots with an honest ETA.

The bar counts *slots* (units of GA work, see :mod:`optuna_nos.sampler`), not trials: a slot
may take several trials (a child redrawn after a failure, a retried crash), so the trial count
is shown beside it. Initial slots train at the cheap *init* fidelity and the rest at the
*evolution* fidelity, so a single rate would misjudge the time left; the ETA is

    ETA = r_init * t_init + r_evolution * t_evolution

with r the slots left at each fidelity and t the mean wall time of this process's trials at
that fidelity. Until an evolution trial finished, t_evolution is taken as t_init and the ETA
is shown as a lower bound ("ETA >= ..."), since an evolution trial costs at least an init one.
Log lines go through the bar (``tqdm.write``), so they never land on top of it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from optuna_nos.study.stored import FIDELITY_USER_ATTR

__all__ = ["SearchProgress", "eta_seconds", "redirect_logging"]


def eta_seconds(left: dict[str, int], mean_s: dict[str, float]) -> tuple[float | None, bool]:
    """(seconds left, exact): slots left times mean duration, per fidelity.

    A fidelity without a measured duration borrows the init fidelity's (``exact`` False: a
    lower bound); with no duration at all the time is None.
    """
    total, exact = 0.0, True
    for fidelity, count in left.items():
        if count <= 0:
            continue
        mean = mean_s.get(fidelity)
        if mean is None:
            mean, exact = mean_s.get("init"), False
        if mean is None:
            return None, False
        total += count * mean
    return total, exact


def _clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@contextlib.contextmanager
def redirect_logging() -> Iterator[None]:
    """Route the root logger's console output through tqdm while the block runs."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield


class SearchProgress:
    """A study callback that advances a tqdm bar by decided slots (ParticleSampler studies).

    With another sampler the bar counts finished trials and has no total.
    """

    def __init__(self, study: optuna.Study, *, disable: bool | None = None) -> None:
        from tqdm import tqdm

        sampler = study.sampler
        sizes = getattr(sampler, "sizes", None)
        self._n_init = int(sizes.n_init) if sizes is not None else 0
        self._total: int | None = getattr(sampler, "n_slots", None)
        self._durations: dict[str, list[float]] = {}
        self._trials = 0
        self.bar = tqdm(
            total=self._total,
            unit="slot",
            desc="slots decided",
            disable=disable,
            bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed} elapsed{postfix}"
            if self._total
            else None,
        )
        self.update(study, None)

    def left(self, decided: int) -> dict[str, int]:
        """Slots left per fidelity when ``decided`` slots are decided (the initial population
        is decided before any evolution slot opens)."""
        if self._total is None:
            return {}
        init_left = max(self._n_init - decided, 0)
        return {
            "init": init_left,
            "evolution": self._total - self._n_init - max(decided - self._n_init, 0),
        }

    def update(self, study: optuna.Study, trial: FrozenTrial | None) -> None:
        if trial is not None:
            self._trials += 1
            if trial.duration is not None and trial.state.is_finished():
                init = trial.user_attrs.get(FIDELITY_USER_ATTR) == "init"
                fidelity = "init" if init else "evolution"
                self._durations.setdefault(fidelity, []).append(trial.duration.total_seconds())
        n_decided = getattr(study.sampler, "n_decided", None)
        done = n_decided(study) if callable(n_decided) else self._trials
        means = {k: sum(v) / len(v) for k, v in self._durations.items() if v}
        seconds, exact = eta_seconds(self.left(done), means)
        eta = _clock(seconds) if exact or seconds is None else f">= {_clock(seconds)}"
        self.bar.set_postfix_str(f"{self._trials} trials, ETA {eta}", refresh=False)
        self.bar.update(done - self.bar.n)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.update(study, trial)

    def close(self) -> None:
        self.bar.close()


def baseline_bar(total: int, disable: bool | None = None) -> Any:
    """The bar of the baseline phase (one step per baseline and fidelity)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="run", desc="baselines", disable=disable)
