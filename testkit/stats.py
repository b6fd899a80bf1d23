"""Statistics for tests of random draws and for the benches' comparisons."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Resamples of :func:`bootstrap_interval` by default.
BOOTSTRAP_RESAMPLES = 10_000


def assert_rate(hits: int, trials: int, p: float, what: str, sigmas: float = 5.0) -> None:
    """The observed rate lies within ``sigmas`` binomial standard deviations of p."""
    assert trials > 0, f"no trials for {what}"
    sd = math.sqrt(p * (1.0 - p) / trials)
    rate = hits / trials
    assert abs(rate - p) <= sigmas * sd + 1e-12, (
        f"{what}: {hits}/{trials} = {rate:.4f}, expected {p:.4f} +- {sigmas * sd:.4f}"
    )


def bootstrap_interval(
    a: Sequence[float],
    b: Sequence[float],
    *,
    paired: bool,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its percentile bootstrap interval.

    Paired: resample the indices of the pairs (a_i - b_i); else resample a and b
    independently.
    """
    rng = np.random.default_rng(seed)
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if paired:
        if len(x) != len(y):
            raise ValueError(f"paired samples need equal lengths, got {len(x)} and {len(y)}")
        d = x - y
        boots = d[rng.integers(0, len(d), (resamples, len(d)))].mean(axis=1)
    else:
        boots = x[rng.integers(0, len(x), (resamples, len(x)))].mean(axis=1) - y[
            rng.integers(0, len(y), (resamples, len(y)))
        ].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(boots, [tail, 1.0 - tail])
    return float(x.mean() - y.mean()), float(low), float(high)
