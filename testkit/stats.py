"""Statistical assertions for tests of random draws."""

from __future__ import annotations

import math


def assert_rate(hits: int, trials: int, p: float, what: str, sigmas: float = 5.0) -> None:
    """The observed rate lies within ``sigmas`` binomial standard deviations of p."""
    assert trials > 0, f"no trials for {what}"
    sd = math.sqrt(p * (1.0 - p) / trials)
    rate = hits / trials
    assert abs(rate - p) <= sigmas * sd + 1e-12, (
        f"{what}: {hits}/{trials} = {rate:.4f}, expected {p:.4f} +- {sigmas * sd:.4f}"
    )
