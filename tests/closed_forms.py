"""Closed forms and released formats of the binary ops, written independently of the package.

The decay graph's binary ops are the first seven of these. Import it from a test module as
``from closed_forms import BINARY_CLOSED_FORMS``; :func:`assert_closed_form` compares an op's
elementwise values with a closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch


def binary_pow(x: float, y: float) -> float:
    """|x|^y with 0^0 = 1 and 0^(negative) = inf."""
    if x == 0.0:
        return 1.0 if y == 0.0 else (0.0 if y > 0 else math.inf)
    return abs(x) ** y


BINARY_CLOSED_FORMS = {
    0: lambda x, y: x + y,
    1: lambda x, y: x - y,
    2: lambda x, y: x * y,
    3: max,
    4: min,
    5: lambda x, y: x / (y + 1e-7),
    6: lambda x, y: x / math.sqrt(1.0 + y * y),
    7: lambda x, y: min(max(x, -abs(y)), abs(y)),
    8: lambda x, y: 0.95 * x + 0.05 * y,
    9: binary_pow,
}

#: The binary ops as the released code prints them.
RELEASED_BINARY_FORMATS = {
    0: "({x})+({y})",
    1: "({x})-({y})",
    2: "({x})*({y})",
    3: "max({x}, {y})",
    4: "min({x}, {y})",
    5: "({x}) / ({y})",
    6: "({x}) / (sqrt(1+({y})^2))",
    7: "clip({x}, {y})",
    8: "(0.95*({x})+0.05*({y}))",
    9: "(|{x}|)^({y})",
}


def columns(points: Sequence[tuple[float, ...]]) -> list[torch.Tensor]:
    """The points' coordinates as float64 tensors, one per argument."""
    return [torch.tensor(column, dtype=torch.float64) for column in zip(*points, strict=True)]


def assert_closed_form(
    got: Sequence[float], points: Sequence[tuple[float, ...]], form: Callable[..., float]
) -> None:
    """``got[i] == form(*points[i])`` for every point (relative 1e-12, absolute 1e-14)."""
    for point, value in zip(points, got, strict=True):
        assert value == pytest.approx(form(*point), rel=1e-12, abs=1e-14), point
