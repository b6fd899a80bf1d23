"""Argument checks shared by every constructor: a bool is never accepted as a number.

Each ``check_*`` returns the value it accepted, so a constructor can write
``self.steps = check_int("steps", steps, minimum=0)``, and raises :class:`NOSError`
with a message that names the argument and the bad value.
"""

from __future__ import annotations

import math
import numbers

from optuna_nos.core.errors import NOSError

__all__ = ["check_int", "check_real", "is_int", "is_real"]


def is_int(value: object) -> bool:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """True for a real number (int, float, numpy scalar) that is not a ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(
    name: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` if it is an int in ``[minimum, maximum]`` (open where None)."""
    if not is_int(value):
        raise NOSError(f"{name} must be an integer{_range(minimum, maximum)}, got {value!r}")
    assert isinstance(value, int)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise NOSError(f"{name} must be an integer{_range(minimum, maximum)}, got {value!r}")
    return value


def check_real(
    name: str, value: object, *, minimum: float | None = None, finite: bool = True
) -> float:
    """Return ``float(value)`` if it is a real number, finite unless ``finite=False``,
    and at least ``minimum`` where one is given."""
    if not is_real(value):
        raise NOSError(f"{name} must be a real number, got {value!r}")
    as_float = float(value)  # type: ignore[arg-type]
    if finite and not math.isfinite(as_float):
        raise NOSError(f"{name} must be finite, got {value!r}")
    if minimum is not None and not as_float >= minimum:
        raise NOSError(f"{name} must be >= {minimum}, got {value!r}")
    return as_float


def _range(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in {minimum}..{maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
