"""Hypothesis strategies for the search space, built directly from the op tables.

``genomes()`` draws any structurally valid :class:`Genome`: random arities, active and latent
ops, inputs, per-edge decays (also stored on absent edges), momentum type and flip. Active
hidden nodes read only operands and nodes earlier in a random order, so the active graph is
acyclic; some are twins of earlier nodes (identical genes, so they print alike); inactive nodes
may then read anything, self-loops and cycles included. Decay ranges are not constrained
(``Genome.validate`` checks them separately).

Import it from a test module as ``from strategies import genomes, decays``.
"""

from __future__ import annotations

from hypothesis import strategies as st

from optuna_nos.space import (
    BINARY_OPS,
    DECAY_BINARY_OPS,
    DECAY_HIDDEN,
    DECAY_UNARY_OPS,
    HIDDEN_COLUMNS,
    N_BASE_SCHEDULES,
    N_OPERANDS,
    ROOT,
    UNARY_OPS,
    Decay,
    DecayNode,
    Genome,
    Momentum,
    Node,
)

__all__ = ["decay_nodes", "decays", "genomes", "nodes"]

_UNARY_CODES = sorted(UNARY_OPS)
_BINARY_CODES = sorted(BINARY_OPS)
_DECAY_UNARY_CODES = sorted(DECAY_UNARY_OPS)
_DECAY_BINARY_CODES = sorted(DECAY_BINARY_OPS)


def _two_distinct(first: int, other: int) -> tuple[int, int]:
    """Map ``other`` drawn from one value fewer than ``first``'s range onto a distinct value."""
    return first, other if other < first else other + 1


def decay_nodes(*, allow_hidden: bool) -> st.SearchStrategy[DecayNode]:
    """A decay node over a1..a14 (and the hidden decay node D when ``allow_hidden``)."""
    top = DECAY_HIDDEN if allow_hidden else N_BASE_SCHEDULES - 1

    def build(binary: int, first: int, other: int, unary_op: int, binary_op: int) -> DecayNode:
        inputs = _two_distinct(first, other) if binary == 0 else (first,)
        return DecayNode(inputs=inputs, unary_op=unary_op, binary_op=binary_op)

    return st.builds(
        build,
        st.integers(0, 3),  # binary with p = 1/4
        st.integers(0, top),
        st.integers(0, top - 1),
        st.sampled_from(_DECAY_UNARY_CODES),
        st.sampled_from(_DECAY_BINARY_CODES),
    )


def decays() -> st.SearchStrategy[Decay]:
    """A decay graph: root R, hidden node D (used or not) and D's sticky flag."""
    return _DECAYS


_DECAYS = st.builds(
    Decay,
    root=decay_nodes(allow_hidden=True),
    hidden=decay_nodes(allow_hidden=False),
    hidden_flag=st.booleans(),
)
_BOOLEANS = st.booleans()
#: _BELOW[n] draws an index 0..n-1 (built once: strategies made inside draws are slow).
_BELOW = {n: st.integers(0, n - 1) for n in range(1, ROOT + 2)}
_UNARY = st.sampled_from(_UNARY_CODES)
_BINARY = st.sampled_from(_BINARY_CODES)
_MOMENTUM = st.sampled_from(list(Momentum))
_PERMUTATIONS = st.permutations(HIDDEN_COLUMNS)


def _pick(draw: st.DrawFn, options: list[int]) -> int:
    return options[draw(_BELOW[len(options)])]


def _column(
    draw: st.DrawFn, hidden_choices: list[int], *, hidden_only: bool, exclude: int | None
) -> int:
    hidden = [c for c in hidden_choices if c != exclude]
    if hidden and (hidden_only or draw(_BOOLEANS)):
        return _pick(draw, hidden)
    return _pick(draw, [c for c in range(N_OPERANDS) if c != exclude])


@st.composite
def nodes(draw: st.DrawFn, hidden_choices: list[int], *, must_read_hidden: bool = False) -> Node:
    """A node reading operands or the given hidden columns, with latent ops and decays.

    With ``must_read_hidden`` (the root) one input is a hidden node. Decays go on a random
    subset of its edges, and sometimes on a column it does not read.
    """
    inputs = [_column(draw, hidden_choices, hidden_only=must_read_hidden, exclude=None)]
    if draw(_BELOW[3]) == 0:  # binary with p = 1/3
        second = _column(draw, hidden_choices, hidden_only=False, exclude=inputs[0])
        inputs.insert(draw(_BELOW[2]), second)
    decay_columns = [c for c in inputs if draw(_BELOW[3]) == 0]
    if draw(_BELOW[5]) == 0:
        decay_columns.append(draw(_BELOW[ROOT]))
    return Node(
        inputs=tuple(inputs),
        unary_op=draw(_UNARY),
        binary_op=draw(_BINARY),
        decays={c: draw(_DECAYS) for c in decay_columns},
    )


@st.composite
def genomes(draw: st.DrawFn) -> Genome:
    """Any structurally valid genome (see the module docstring)."""
    order = draw(_PERMUTATIONS)
    hidden: dict[int, Node] = {}
    for rank, column in enumerate(order):
        if rank and draw(_BELOW[4]) == 0:  # a twin of an earlier node: they print alike
            hidden[column] = hidden[order[draw(_BELOW[rank])]]
        else:
            hidden[column] = draw(nodes(list(order[:rank])))
    root = draw(nodes(list(HIDDEN_COLUMNS), must_read_hidden=True))
    genome = Genome(
        hidden=tuple(hidden[c] for c in HIDDEN_COLUMNS),
        root=root,
        momentum=draw(_MOMENTUM),
        flip=draw(_BOOLEANS),
    )
    for column in HIDDEN_COLUMNS:
        if column not in genome.active_columns and draw(_BOOLEANS):
            # inactive nodes may read anything, self-loops and cycles included
            genome = genome.with_node(column, draw(nodes(list(HIDDEN_COLUMNS))))
    return genome
