"""Slots of the particle GA and the sizes that define them.

A *slot* is one unit of GA work that ends with one decided fitness:

* ``init j`` (``j < init_factor * n_particles``): random genome j at the *init* fidelity;
* ``p{i} s0``: particle i's genome re-evaluated at the *evolution* fidelity;
* ``p{i} s{s} c{m}`` (``1 <= s <= steps``, ``m < mutations``): child m of particle i at step
  s, a mutant of the particle's genome after step s - 1, at the evolution fidelity.

A slot may take several trials (*attempts*): a child is redrawn after a failure, and a crashed
attempt reopens its slot. Slot names are what the trials carry in the system attr
``nos:slot``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from optuna_nos.study.config import GAConfig

__all__ = [
    "GASizes",
    "Slot",
    "SlotKind",
]

SlotKind = Literal["init", "reeval", "child"]
_PATTERNS = (
    (re.compile(r"init (\d+)"), "init"),
    (re.compile(r"p(\d+) s0"), "reeval"),
    (re.compile(r"p(\d+) s([1-9]\d*) c(\d+)"), "child"),
)


@dataclass(frozen=True, order=True)
class Slot:
    """One slot. ``index`` is j for ``init j`` and the particle otherwise (0-based)."""

    kind: SlotKind
    index: int
    step: int = 0
    child: int = 0

    @property
    def name(self) -> str:
        """``init 7``, ``p3 s0`` or ``p3 s2 c4``."""
        if self.kind == "init":
            return f"init {self.index}"
        if self.kind == "reeval":
            return f"p{self.index} s0"
        return f"p{self.index} s{self.step} c{self.child}"

    @property
    def particle(self) -> int | None:
        return None if self.kind == "init" else self.index

    @property
    def fidelity(self) -> Literal["init", "evolution"]:
        return "init" if self.kind == "init" else "evolution"

    @property
    def preference(self) -> tuple[int, int]:
        """Lower runs first: the initial population, then particle slots by step."""
        return (0, 0) if self.kind == "init" else (1, self.step)

    @classmethod
    def parse(cls, name: object) -> Slot | None:
        """The slot named ``name``, or None when ``name`` names no slot."""
        if not isinstance(name, str):
            return None
        for pattern, kind in _PATTERNS:
            match = pattern.fullmatch(name)
            if match is None:
                continue
            numbers = [int(g) for g in match.groups()]
            if kind == "init":
                return cls("init", numbers[0])
            if kind == "reeval":
                return cls("reeval", numbers[0])
            return cls("child", numbers[0], numbers[1], numbers[2])
        return None

    def __str__(self) -> str:
        return self.name

    def within(self, sizes: GAConfig) -> bool:
        """True when this slot is one of the slots of a GA of ``sizes``."""
        if self.kind == "init":
            return 0 <= self.index < sizes.n_init
        if not 0 <= self.index < sizes.n_particles:
            return False
        if self.kind == "reeval":
            return True
        return 1 <= self.step <= sizes.steps and 0 <= self.child < sizes.mutations


#: The GA's shape; the same type as a study config's ``[ga]`` table.
GASizes = GAConfig
