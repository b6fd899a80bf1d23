"""The shared argument checks: bools are never numbers, and messages name the argument."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optuna_nos.core.errors import NOSError
from optuna_nos.core.validation import check_int, check_real, is_int, is_real


def test_bools_are_neither_ints_nor_reals() -> None:
    assert not is_int(True) and not is_real(False)
    assert is_int(3) and is_real(3) and is_real(0.5) and is_real(np.float32(2.0))
    assert not is_int(3.0) and not is_real("1")


@pytest.mark.parametrize("value", [True, 1.5, "2", None, -1, 11])
def test_check_int_names_the_argument_and_the_value(value: object) -> None:
    with pytest.raises(NOSError, match=rf"^steps must be an integer in 0\.\.10, got {value!r}$"):
        check_int("steps", value, minimum=0, maximum=10)


def test_check_int_returns_what_it_accepted() -> None:
    assert check_int("n", 0, minimum=0) == 0
    assert check_int("n", 7) == 7


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_check_real_refuses_non_finite(value: float) -> None:
    with pytest.raises(NOSError, match="^lr must be finite"):
        check_real("lr", value)


def test_check_real_minimum_and_result() -> None:
    assert check_real("lr", np.float32(0.5)) == 0.5
    assert math.isinf(check_real("lr", math.inf, finite=False))
    with pytest.raises(NOSError, match=r"^lr must be >= 0\.0, got -1$"):
        check_real("lr", -1, minimum=0.0)
    with pytest.raises(NOSError, match="^lr must be a real number, got True$"):
        check_real("lr", True)
