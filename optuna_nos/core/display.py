"""Stored text made safe to print: trial attrs and study attrs come from any worker.

A trial attr (slot, equation, reason, mutation) could hold terminal control sequences or
line breaks; :func:`printable` escapes every non-printable character the way ``repr`` does,
so one attr stays one line and cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

from typing import Any

__all__ = ["printable"]


def printable(value: Any) -> str:
    """``str(value)`` with each non-printable character (controls, line and paragraph
    separators, format characters) replaced by its ``repr`` escape, e.g. ``\\x1b``."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
