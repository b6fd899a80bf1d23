"""Argument types of the ``optuna-nos`` command: counts and study names, checked on parsing."""

from __future__ import annotations

import argparse

__all__ = ["MAX_STUDY_NAME", "count", "study_name"]

#: Optuna stores study names in a 512-character column.
MAX_STUDY_NAME = 512


def count(text: str) -> int:
    """A count of trials or rows: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def study_name(text: str) -> str:
    """A study name Optuna can store: 1 to :data:`MAX_STUDY_NAME` characters."""
    if not text or len(text) > MAX_STUDY_NAME:
        raise argparse.ArgumentTypeError(
            f"a study name must have 1 to {MAX_STUDY_NAME} characters, got {len(text)}"
        )
    return text
