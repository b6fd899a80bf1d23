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

from optuna_nos.errors import NOSError

__all__ = [
    "FAULT_ATTR",
    "GA_ATTR",
    "GA_CONFIG_ATTR",
    "SLOT_ATTR",
    "WORKER_ATTR",
    "INFRASTRUCTURE",
    "GASizes",
    "Slot",
    "SlotKind",
]

#: Trial system attr: the slot a trial claims or holds (its name), None when it holds none.
SLOT_ATTR = "nos:slot"
#: Trial system attr: a dict with the trial's lineage (slot, particle, step, child, parent,
#: equation, behaviour key, mutation).
GA_ATTR = "nos:ga"
#: Trial system attr: ``host:pid:token`` of the worker that runs the trial.
WORKER_ATTR = "nos:worker"
#: Trial system attr: ``"infrastructure"`` on a trial that failed for its worker's
#: environment (missing data, lost device, ...), not for its genome; such a failure never
#: counts towards deciding the slot.
FAULT_ATTR = "nos:fault"
INFRASTRUCTURE = "infrastructure"
#: Study system attr: the GA sizes and space of the study, so that workers cannot disagree.
GA_CONFIG_ATTR = "nos:ga_config"

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


def _positive_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NOSError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class GASizes:
    """The GA's shape: n particles from ``init_factor * n`` random genomes, each
    taking ``steps`` steps of ``mutations`` children, a child redrawn up to ``max_redraws``
    attempts; with ``elitism`` a particle keeps its genome when it beats all its children.
    """

    n_particles: int = 50
    init_factor: int = 10
    steps: int = 5
    mutations: int = 7
    max_redraws: int = 4
    elitism: bool = False

    def __post_init__(self) -> None:
        _positive_int("n_particles", self.n_particles, 1)
        _positive_int("init_factor", self.init_factor, 1)
        _positive_int("steps", self.steps, 0)
        _positive_int("mutations", self.mutations, 1)
        _positive_int("max_redraws", self.max_redraws, 1)
        if not isinstance(self.elitism, bool):
            raise NOSError(f"elitism must be True or False, got {self.elitism!r}")

    @property
    def n_init(self) -> int:
        """Size of the initial population."""
        return self.init_factor * self.n_particles

    @property
    def n_slots(self) -> int:
        """All slots: n_init + n * (1 + steps * mutations) (500 + 1,800 in the paper)."""
        return self.n_init + self.n_particles * (1 + self.steps * self.mutations)

    def contains(self, slot: Slot) -> bool:
        """True when ``slot`` is one of this GA's slots."""
        if slot.kind == "init":
            return 0 <= slot.index < self.n_init
        if not 0 <= slot.index < self.n_particles:
            return False
        if slot.kind == "reeval":
            return True
        return 1 <= slot.step <= self.steps and 0 <= slot.child < self.mutations

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "n_particles": self.n_particles,
            "init_factor": self.init_factor,
            "steps": self.steps,
            "mutations": self.mutations,
            "max_redraws": self.max_redraws,
            "elitism": self.elitism,
        }
