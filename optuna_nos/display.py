"""Stored text made safe to print: trial attrs and study attrs come from any worker.

A trial attr (slot, equation, reason, mutation) could hold terminal control sequences or
line breaks; :func:`printable` escapes every non-printable character the way ``repr`` does,
so one attr stays one line and cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

from typing import Any

__all__ = ["baseline_lines", "printable"]


def printable(value: Any) -> str:
    """``str(value)`` with each non-printable character (controls, line and paragraph
    separators, format characters) replaced by its ``repr`` escape, e.g. ``\\x1b``."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def baseline_lines(baselines: Any) -> list[str]:
    """``baseline NAME: evolution 0.61, init 0.55`` for each well-formed entry of the study
    attr ``nos.baselines`` ({name: {fidelity: accuracy}}); malformed entries are skipped."""
    if not isinstance(baselines, dict):
        return []
    lines = []
    for name, by_fidelity in sorted(baselines.items(), key=lambda item: str(item[0])):
        if not isinstance(by_fidelity, dict):
            continue
        scores = [f"{printable(fidelity)} {accuracy:.4f}" for fidelity, accuracy
                  in sorted(by_fidelity.items(), key=lambda item: str(item[0]), reverse=True)
                  if isinstance(accuracy, int | float) and not isinstance(accuracy, bool)]
        if scores:
            lines.append(f"baseline {printable(name)}: {', '.join(scores)}")
    return lines
