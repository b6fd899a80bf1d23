"""The nodes of a genome's update graph and the column layout they live in.

Column indices follow the released code's adjacency layout: operands 0..19, hidden nodes
20..24, root 25. A node's arity is the number of its inputs; both latent ops are kept so an
arity switch can bring the other one back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from optuna_nos.space.decays import Decay
from optuna_nos.space.operands import N_OPERANDS

__all__ = [
    "HIDDEN_COLUMNS",
    "N_HIDDEN",
    "ROOT",
    "Momentum",
    "Node",
    "column_name",
]

N_HIDDEN = 5
HIDDEN_COLUMNS: tuple[int, ...] = tuple(range(N_OPERANDS, N_OPERANDS + N_HIDDEN))
ROOT = N_OPERANDS + N_HIDDEN


class Momentum(enum.IntEnum):
    """How the update U reaches the parameters."""

    NONE = 0
    MOMENTUM = 1
    NESTEROV = 2

    @property
    def prefix(self) -> str:
        """The paper notation's prefix, e.g. ``"Nest ~ "``."""
        return ("None ~ ", "Mom ~ ", "Nest ~ ")[self.value]


def column_name(column: int) -> str:
    """``n0``..``n4`` for hidden nodes, ``root`` for the root, ``operand k`` otherwise."""
    if column == ROOT:
        return "root"
    if column in HIDDEN_COLUMNS:
        return f"n{column - N_OPERANDS}"
    return f"operand {column}"


def _frozen(mapping: Mapping[int, Decay] | None) -> Mapping[int, Decay]:
    return MappingProxyType(dict(sorted((mapping or {}).items())))


@dataclass(frozen=True)
class Node:
    """A hidden node or the root.

    ``inputs`` holds one or two columns (operand 0..19 or hidden node 20..24); the active op is
    ``unary_op`` (-1..24) for one input and ``binary_op`` (0..9) for two. ``decays`` maps an
    input column to the decay on that edge; it may hold decays for columns the node no longer
    reads, which come back into effect if the edge is recreated.
    """

    inputs: tuple[int, ...]
    unary_op: int = -1
    binary_op: int = 0
    decays: Mapping[int, Decay] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "decays", _frozen(self.decays))

    @property
    def binary(self) -> bool:
        return len(self.inputs) == 2

    @property
    def op_code(self) -> int:
        """The active op: ``binary_op`` for a binary node, ``unary_op`` otherwise."""
        return self.binary_op if self.binary else self.unary_op

    def decay_on(self, column: int) -> Decay | None:
        """The decay on the edge from ``column``, if this node reads it and one is stored."""
        return self.decays.get(column) if column in self.inputs else None

    def replace(self, **changes: object) -> Node:
        return replace(self, **changes)  # type: ignore[arg-type]

    def __reduce__(self) -> tuple[type[Node], tuple[object, ...]]:
        """Rebuilt from its fields, for copy.deepcopy and pickle (``decays`` is read-only)."""
        return Node, (self.inputs, self.unary_op, self.binary_op, dict(self.decays))

    def __hash__(self) -> int:
        return hash((self.inputs, self.unary_op, self.binary_op, tuple(self.decays.items())))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return (self.inputs, self.unary_op, self.binary_op, dict(self.decays)) == (
            other.inputs,
            other.unary_op,
            other.binary_op,
            dict(other.decays),
        )
