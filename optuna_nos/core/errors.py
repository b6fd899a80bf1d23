"""The package's error family: every bad input raises a subclass of :class:`NOSError`."""

from __future__ import annotations

__all__ = ["NOSError"]


class NOSError(ValueError):
    """A genome, equation, config, storage URL or optimizer argument is not valid.

    The message names the bad part, in one line.
    """
