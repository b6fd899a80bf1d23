"""The genome: update graph, momentum type, per-edge decays and flip.

The nodes and the column layout live in :mod:`optuna_nos.space.node`. Everything mutation may
revive (latent ops, inactive nodes, decays on absent edges) is stored, even though it is not
printed. Printing (:mod:`~optuna_nos.space.notation`) and JSON
(:mod:`~optuna_nos.space.serialize`) read nodes only, so neither imports this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

from optuna_nos.core.errors import NOSError
from optuna_nos.space.decays import Decay, is_valid_decay
from optuna_nos.space.node import HIDDEN_COLUMNS, N_HIDDEN, ROOT, Momentum, Node, column_name
from optuna_nos.space.notation import format_equation
from optuna_nos.space.operands import N_OPERANDS
from optuna_nos.space.serialize import decode_genome, encode_genome
from optuna_nos.space.update_ops import BINARY_OPS, UNARY_OPS

__all__ = [
    "HIDDEN_COLUMNS",
    "N_HIDDEN",
    "ROOT",
    "Genome",
    "Momentum",
    "Node",
    "column_name",
    "genome_from_json",
    "genome_to_json",
]


@dataclass(frozen=True, eq=True)
class Genome:
    """An immutable candidate optimizer: 5 hidden nodes, a root, momentum type and flip.

    The constructor checks the structure (ops, arities, input ranges, an acyclic active graph,
    a root with a hidden-node input). Decay ranges are a search rule rather than a structural
    one, since the released log holds a few out-of-range decays: :meth:`validate` checks them.
    """

    hidden: tuple[Node, ...]
    root: Node
    momentum: Momentum = Momentum.NONE
    flip: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if isinstance(self.momentum, bool) or self.momentum not in (0, 1, 2):
            raise NOSError(
                f"momentum type must be 0, 1 or 2 (none/momentum/nesterov), got {self.momentum!r}"
            )
        object.__setattr__(self, "momentum", Momentum(self.momentum))
        if not isinstance(self.flip, bool):
            raise NOSError(f"flip must be a bool, got {self.flip!r}")
        if len(self.hidden) != N_HIDDEN:
            raise NOSError(f"a genome has exactly {N_HIDDEN} hidden nodes, got {len(self.hidden)}")
        for column in (*HIDDEN_COLUMNS, ROOT):
            _check_node(self.node(column), column_name(column))
        if not any(c in HIDDEN_COLUMNS for c in self.root.inputs):
            raise NOSError("the root must read at least one hidden node (n0..n4)")
        self.topological_order()  # raises on a cycle among active nodes

    # -- structure ---------------------------------------------------------------------------

    def node(self, column: int) -> Node:
        """The node at ``column`` (20..24 hidden, 25 root)."""
        if column == ROOT:
            return self.root
        if column in HIDDEN_COLUMNS:
            return self.hidden[column - N_OPERANDS]
        raise NOSError(f"column {column} is not a node (nodes are 20..25)")

    def with_node(self, column: int, node: Node) -> Genome:
        """A copy with the node at ``column`` replaced (validated like any genome)."""
        if column == ROOT:
            return replace(self, root=node)
        hidden = list(self.hidden)
        hidden[column - N_OPERANDS] = node
        return replace(self, hidden=tuple(hidden))

    def replace(self, **changes: object) -> Genome:
        return replace(self, **changes)  # type: ignore[arg-type]

    def topological_order(self) -> tuple[int, ...]:
        """Active node columns, each after all nodes it reads; the root is last.

        Raises :class:`NOSError` naming the node where a cycle among active nodes closes.
        """
        order: list[int] = []
        state: dict[int, int] = {}  # 1 = on the DFS path, 2 = done

        def visit(column: int) -> None:
            if state.get(column) == 2:
                return
            if state.get(column) == 1:
                raise NOSError(f"the active graph has a cycle through {column_name(column)}")
            state[column] = 1
            for child in self.node(column).inputs:
                if child >= N_OPERANDS:
                    visit(child)
            state[column] = 2
            order.append(column)

        visit(ROOT)
        return tuple(order)

    @property
    def active_columns(self) -> frozenset[int]:
        """Hidden nodes reachable from the root, plus the root."""
        return frozenset(self.topological_order())

    def active_hidden(self) -> tuple[int, ...]:
        """Active hidden-node columns in ascending order."""
        active = self.active_columns
        return tuple(c for c in HIDDEN_COLUMNS if c in active)

    def active_edges(self) -> Iterator[tuple[int, int, Decay | None]]:
        """(consumer column, input column, decay or None) for every edge of the active graph."""
        for column in self.topological_order():
            node = self.node(column)
            for child in node.inputs:
                yield column, child, node.decay_on(child)

    def active_decays(self) -> tuple[Decay, ...]:
        return tuple(d for _, _, d in self.active_edges() if d is not None)

    # -- checks and identity -----------------------------------------------------------------

    def validate(self, *, nan_decays_valid: bool = False) -> Genome:
        """Check the search rules on top of the structure: every active decay in [0, 1].

        Returns the genome so calls can chain; raises :class:`NOSError` naming the edge.
        """
        for consumer, child, decay in self.active_edges():
            if decay is not None and not is_valid_decay(decay, nan_valid=nan_decays_valid):
                raise NOSError(
                    f"the decay on the edge {column_name(child)} -> {column_name(consumer)} "
                    "leaves [0, 1] on the T = 100 grid"
                )
        return self

    def equation(self) -> str:
        """The paper notation of this genome (see :func:`optuna_nos.format_equation`)."""
        return format_equation(self)

    def key(self) -> str:
        """A canonical key of what the genome computes.

        Genomes that print the same equation have the same key whatever their node numbering,
        latent genes or inactive nodes. Flip is excluded: it is an outcome of the integrity
        check, not a gene.
        """
        return hashlib.sha256(self.equation().encode()).hexdigest()[:24]

    def to_json(self) -> str:
        """This genome as versioned JSON (see :mod:`optuna_nos.space.serialize`)."""
        return encode_genome(self.hidden, self.root, self.momentum, self.flip)

    @classmethod
    def from_json(cls, text: str | bytes) -> Genome:
        """Read a genome written by :meth:`to_json`; any problem raises :class:`NOSError`."""
        hidden, root, momentum, flip = decode_genome(text)
        try:
            return cls(hidden=hidden, root=root, momentum=momentum, flip=flip)
        except NOSError as exc:
            raise NOSError(f"genome JSON describes an invalid genome: {exc}") from None

    def __str__(self) -> str:
        return self.equation()


def _check_node(node: Node, name: str) -> None:
    if not isinstance(node, Node):
        raise NOSError(f"{name} must be a Node, got {type(node).__name__}")
    if len(node.inputs) not in (1, 2):
        raise NOSError(f"{name} must have 1 or 2 inputs, got {len(node.inputs)}")
    if isinstance(node.unary_op, bool) or node.unary_op not in UNARY_OPS:
        raise NOSError(f"{name} has unknown unary op {node.unary_op!r} (allowed -1..24)")
    if isinstance(node.binary_op, bool) or node.binary_op not in BINARY_OPS:
        raise NOSError(f"{name} has unknown binary op {node.binary_op!r} (allowed 0..9)")
    for column in node.inputs:
        if isinstance(column, bool) or not isinstance(column, int) or not 0 <= column < ROOT:
            raise NOSError(f"{name} has input {column!r} outside 0..{ROOT - 1}")
    if len(set(node.inputs)) != len(node.inputs):
        raise NOSError(f"{name} reads {column_name(node.inputs[0])} twice")
    for column, decay in node.decays.items():
        if isinstance(column, bool) or not isinstance(column, int) or not 0 <= column < ROOT:
            raise NOSError(f"{name} stores a decay for input {column!r} outside 0..{ROOT - 1}")
        if not isinstance(decay, Decay):
            raise NOSError(f"{name} stores a non-decay for input {column}")


def genome_to_json(genome: Genome) -> str:
    """The genome as compact, versioned JSON (see :mod:`optuna_nos.space.serialize`)."""
    if not isinstance(genome, Genome):
        raise NOSError(f"expected a Genome, got {type(genome).__name__}")
    return genome.to_json()


def genome_from_json(text: str | bytes) -> Genome:
    """Read a genome written by :func:`genome_to_json`; any problem raises :class:`NOSError`."""
    return Genome.from_json(text)
