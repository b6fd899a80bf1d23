"""The fitness protocol's decisions as pure functions of accuracy curves.

A *curve* is a list of per-epoch accuracies of one training run, holding only the epochs the
run completed. Two NaN conventions exist:

* project default (``numpy_nan=False``): a NaN accuracy or record counts as -inf, so it is
  below every threshold and never the argmax; a run with no completed epoch has record -inf;
  a non-finite fitness is a failure;
* paper mode (``numpy_nan=True``): numpy's rules. ``NaN < x`` is false, ``max`` of a list
  holding NaN is NaN, ``argmax`` picks the first NaN; a run with no completed epoch has record
  NaN, and a NaN fitness is returned as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EarlyStop",
    "ScreenDecision",
    "best_index",
    "decide_screen",
    "fitness_of",
    "run_epochs",
    "run_record",
    "stage1_fails",
]


def _project(value: float) -> float:
    """NaN -> -inf (the project's reading of a missing or broken measurement)."""
    return -math.inf if math.isnan(value) else value


@dataclass(frozen=True)
class EarlyStop:
    """Stop a run after epoch ``e`` (0-based) if ``e >= min_epoch`` and its accuracy < ``below``.

    The screen uses (2, 0.25) and the final run (4, 0.40).
    """

    min_epoch: int
    below: float

    def stops(self, epoch: int, accuracy: float, *, numpy_nan: bool) -> bool:
        value = accuracy if numpy_nan else _project(accuracy)
        return epoch >= self.min_epoch and bool(value < self.below)


def run_epochs(curve: Sequence[float], rule: EarlyStop, *, numpy_nan: bool) -> list[float]:
    """The epochs a run would complete if its untruncated accuracies were ``curve``.

    The stopping epoch itself is kept (its accuracy is measured before the check).
    """
    kept: list[float] = []
    for epoch, accuracy in enumerate(curve):
        kept.append(float(accuracy))
        if rule.stops(epoch, accuracy, numpy_nan=numpy_nan):
            break
    return kept


def run_record(curve: Sequence[float], *, numpy_nan: bool) -> float:
    """A screen run's record: the maximum accuracy over its completed epochs."""
    if not curve:
        return math.nan if numpy_nan else -math.inf
    if numpy_nan:
        return float(np.max(np.asarray(curve, dtype=np.float64)))
    return max(_project(float(a)) for a in curve)


def stage1_fails(records: Sequence[float], below: float, *, numpy_nan: bool) -> bool:
    """Stage 1 fails when every record is below ``below`` (0.25)."""
    values = np.asarray(records, dtype=np.float64)
    if not numpy_nan:
        values = np.where(np.isnan(values), -np.inf, values)
    return bool(np.all(values < below))


def best_index(records: Sequence[float], *, numpy_nan: bool) -> int:
    """Index of the best record, ties to the first (numpy argmax; NaN rules as above)."""
    values = np.asarray(records, dtype=np.float64)
    if not numpy_nan:
        values = np.where(np.isnan(values), -np.inf, values)
    return int(np.argmax(values))


@dataclass(frozen=True)
class ScreenDecision:
    """The outcome of the learning-rate screen: the chosen lr, or a failure reason."""

    lr: float | None
    reason: str | None

    @property
    def failed(self) -> bool:
        return self.lr is None


def decide_screen(
    lrs: Sequence[float],
    records: Sequence[float],
    *,
    stage1_size: int,
    stage1_below: float,
    screen_below: float,
    numpy_nan: bool,
    complete: bool,
) -> ScreenDecision:
    """Apply the screen thresholds to the records of the lrs run so far, in screen order.

    The first ``stage1_size`` records are stage 1's: all below ``stage1_below`` is a failure.
    Otherwise, while the screen is not ``complete``, the answer is ``ScreenDecision(None,
    None)`` ("run stage 2"). A complete screen fails if its best record is below
    ``screen_below`` and else picks the argmax (ties to the first).
    """
    if len(lrs) != len(records):
        raise ValueError(f"{len(lrs)} learning rates but {len(records)} records")
    stage1 = records[:stage1_size]
    if stage1_fails(stage1, stage1_below, numpy_nan=numpy_nan):
        return ScreenDecision(
            None,
            f"LR screen stage 1: every training accuracy is below {stage1_below} ({_fmt(stage1)})",
        )
    if not complete:
        return ScreenDecision(None, None)
    best = best_index(records, numpy_nan=numpy_nan)
    best_value = records[best] if numpy_nan else _project(records[best])
    if best_value < screen_below:
        return ScreenDecision(
            None,
            f"LR screen: the best training accuracy is below {screen_below} ({_fmt(records)})",
        )
    return ScreenDecision(float(lrs[best]), None)


def fitness_of(val_curve: Sequence[float], *, numpy_nan: bool) -> float | None:
    """Fitness = max validation accuracy over the final run's epochs.

    None (a failure) in the project default when the maximum is not finite; paper mode
    returns numpy's maximum (NaN for an empty curve or one holding NaN).
    """
    if numpy_nan:
        return float(np.max(val_curve)) if len(val_curve) else math.nan
    best = run_record(val_curve, numpy_nan=False)
    return best if math.isfinite(best) else None


def _fmt(values: Sequence[float]) -> str:
    """Accuracies for a reason: a run without a finite accuracy reads "diverged"."""
    return ", ".join(f"{v:.4f}" if math.isfinite(v) else "diverged" for v in values)
