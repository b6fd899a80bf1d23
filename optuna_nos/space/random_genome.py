"""Random decays and random genomes, one draw each.

Everything here is structural: no integrity check runs. :func:`random_decay` is the only loop
(a decay is redrawn until it lies in [0, 1]); :func:`draw_genome` makes one draw of
a whole genome and returns None when that draw is unusable, and
:func:`optuna_nos.optim.evolve.random_genome` repeats it until the integrity check passes.

All randomness comes from a :class:`numpy.random.Generator`.

Probabilities, hidden node i: binary 0.25; latent unary op the identity with 0.2,
else uniform over 0..24; latent binary op uniform over 0..9; input 1 an operand (uniform over
the allowed operands) with 0.8, else one of the other four hidden nodes; input 2 an operand
with 0.8 (not input 1), else a hidden node (the other four if input 1 is an operand; else
any but input 1, and in the project default also not node i itself); each edge carries a
random decay with 0.15. Root: binary 0.75; a unary root reads a uniform hidden node and its
edge carries a decay with ``settings.unary_root_decay_prob`` (0.85); a binary root's input 1
is an operand with 0.8, else a hidden node; input 2 is a hidden node if input 1 is an
operand, else an operand with 0.8 or one of the other four hidden nodes; 0.15 per edge.
Momentum type uniform; flip false. Decays are drawn for inactive nodes' edges too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.space.decays import (
    DECAY_BINARY_OPS,
    DECAY_HIDDEN,
    DECAY_UNARY_OPS,
    N_BASE_SCHEDULES,
    Decay,
    DecayNode,
    is_valid_decay,
)
from optuna_nos.space.genome import Genome
from optuna_nos.space.node import HIDDEN_COLUMNS, ROOT, Momentum, Node
from optuna_nos.space.operands import N_OPERANDS
from optuna_nos.space.update_ops import BINARY_OPS, IDENTITY, UNARY_OPS
from optuna_nos.space.variants import (
    ADAM_VARIANT_FIRST_INPUT,
    ADAM_VARIANT_OPERANDS,
    VariantLike,
    lr_schedule_genome,
    resolve_variant,
    variant_violation,
)

__all__ = [
    "DECAY_BINARY_PROB",
    "DECAY_ROOT_READS_HIDDEN_PROB",
    "EDGE_DECAY_PROB",
    "HIDDEN_BINARY_PROB",
    "IDENTITY_PROB",
    "OPERAND_INPUT_PROB",
    "ROOT_BINARY_PROB",
    "chance",
    "draw_decay",
    "draw_genome",
    "draw_hidden_node",
    "draw_root",
    "has_active_cycle",
    "pick",
    "random_decay",
]

HIDDEN_BINARY_PROB = 0.25
ROOT_BINARY_PROB = 0.75
IDENTITY_PROB = 0.2
OPERAND_INPUT_PROB = 0.8
EDGE_DECAY_PROB = 0.15
DECAY_BINARY_PROB = 0.2
#: A decay root reads D "for sure" with this probability before its ordinary draw.
DECAY_ROOT_READS_HIDDEN_PROB = 0.2

_MAX_DECAY_DRAWS = 100_000
_ALL_OPERANDS: tuple[int, ...] = tuple(range(N_OPERANDS))
_SCHEDULES: tuple[int, ...] = tuple(range(N_BASE_SCHEDULES))
_SCHEDULES_AND_D: tuple[int, ...] = (*_SCHEDULES, DECAY_HIDDEN)
_N_UNARY = len(UNARY_OPS) - 1  # 0..24; the identity (-1) is drawn separately


def pick(rng: np.random.Generator, options: Sequence[int]) -> int:
    """One element of ``options``, uniformly, as a Python int."""
    if len(options) == 0:
        raise NOSError("cannot pick from an empty set of choices")
    return int(options[int(rng.integers(len(options)))])


def chance(rng: np.random.Generator, probability: float) -> bool:
    """True with the given probability (one uniform draw u, true iff u < probability)."""
    return bool(rng.random() < probability)


# -- decays -----------------------------------------------------------------------------------


def _latent_decay_ops(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(len(DECAY_UNARY_OPS))), int(rng.integers(len(DECAY_BINARY_OPS)))


def _other_schedule(rng: np.random.Generator, first: int) -> int:
    return pick(rng, [k for k in _SCHEDULES if k != first])


def draw_decay(rng: np.random.Generator) -> Decay:
    """One draw of a decay graph by the rules below, not yet checked for validity.

    D and R are unary with 0.8 (latent unary op uniform over 0..12, binary over 0..6). D reads
    one schedule, or two distinct ones. A unary R reads D with 0.2, else a uniform choice of
    {a1..a14, D}. A binary R reads D and a schedule in random order with 0.2, else a uniform
    first input from {a1..a14, D} and a different schedule second.
    """
    hidden_binary = chance(rng, DECAY_BINARY_PROB)
    hidden_ops = _latent_decay_ops(rng)
    first = pick(rng, _SCHEDULES)
    hidden_inputs = (first, _other_schedule(rng, first)) if hidden_binary else (first,)

    root_binary = chance(rng, DECAY_BINARY_PROB)
    root_ops = _latent_decay_ops(rng)
    root_inputs: tuple[int, ...]
    if not root_binary:
        if chance(rng, DECAY_ROOT_READS_HIDDEN_PROB):
            root_inputs = (DECAY_HIDDEN,)
        else:
            root_inputs = (pick(rng, _SCHEDULES_AND_D),)
    elif chance(rng, DECAY_ROOT_READS_HIDDEN_PROB):
        schedule = pick(rng, _SCHEDULES)
        root_inputs = (DECAY_HIDDEN, schedule) if chance(rng, 0.5) else (schedule, DECAY_HIDDEN)
    else:
        first = pick(rng, _SCHEDULES_AND_D)
        root_inputs = (first, _other_schedule(rng, first))

    return Decay(
        root=DecayNode(root_inputs, *root_ops),
        hidden=DecayNode(hidden_inputs, *hidden_ops),
        hidden_flag=DECAY_HIDDEN in root_inputs,
    )


def random_decay(rng: np.random.Generator, settings: Settings = DEFAULT_SETTINGS) -> Decay:
    """A random decay, redrawn until valid: all values in [0, 1] at T = 100.

    In paper mode (``settings.nan_decays_valid``) NaN values pass, as in the released code.
    """
    for _ in range(_MAX_DECAY_DRAWS):
        decay = draw_decay(rng)
        if is_valid_decay(decay, nan_valid=settings.nan_decays_valid):
            return decay
    raise NOSError(f"no valid decay in {_MAX_DECAY_DRAWS} draws")


def _edge_decays(
    rng: np.random.Generator,
    inputs: tuple[int, ...],
    probability: float,
    settings: Settings,
) -> dict[int, Decay]:
    decays: dict[int, Decay] = {}
    for column in inputs:
        if chance(rng, probability):
            decays[column] = random_decay(rng, settings)
    return decays


# -- genome nodes -----------------------------------------------------------------------------


def _latent_ops(rng: np.random.Generator) -> tuple[int, int]:
    unary = IDENTITY if chance(rng, IDENTITY_PROB) else int(rng.integers(_N_UNARY))
    return unary, int(rng.integers(len(BINARY_OPS)))


def draw_hidden_node(
    rng: np.random.Generator,
    column: int,
    settings: Settings = DEFAULT_SETTINGS,
    operands: Sequence[int] = _ALL_OPERANDS,
) -> Node:
    """One random hidden node at ``column`` (20..24); ``operands`` narrows the
    operand choices (the ``"adam_variants"`` space uses ``s hat``, ``1`` and ``2``)."""
    if column not in HIDDEN_COLUMNS:
        raise NOSError(f"column {column} is not a hidden node (20..24)")
    binary = chance(rng, HIDDEN_BINARY_PROB)
    unary_op, binary_op = _latent_ops(rng)
    others = [h for h in HIDDEN_COLUMNS if h != column]
    first = pick(rng, operands) if chance(rng, OPERAND_INPUT_PROB) else pick(rng, others)
    inputs: tuple[int, ...] = (first,)
    if binary:
        if chance(rng, OPERAND_INPUT_PROB):
            pool = [o for o in operands if o != first]
        elif first < N_OPERANDS:
            pool = others
        else:
            pool = [
                h
                for h in HIDDEN_COLUMNS
                if h != first and (h != column or settings.hidden_init_allows_self_loop)
            ]
        inputs = (first, pick(rng, pool))
    decays = _edge_decays(rng, inputs, EDGE_DECAY_PROB, settings)
    return Node(inputs, unary_op, binary_op, decays)


def draw_root(rng: np.random.Generator, settings: Settings = DEFAULT_SETTINGS) -> Node:
    """One random root. A unary root's edge gets a decay with
    ``settings.unary_root_decay_prob``; a binary root's edges with 0.15 each."""
    binary = chance(rng, ROOT_BINARY_PROB)
    unary_op, binary_op = _latent_ops(rng)
    if not binary:
        inputs: tuple[int, ...] = (pick(rng, HIDDEN_COLUMNS),)
        decays = _edge_decays(rng, inputs, settings.unary_root_decay_prob, settings)
        return Node(inputs, unary_op, binary_op, decays)
    if chance(rng, OPERAND_INPUT_PROB):
        first = pick(rng, _ALL_OPERANDS)
    else:
        first = pick(rng, HIDDEN_COLUMNS)
    if first < N_OPERANDS:
        second = pick(rng, HIDDEN_COLUMNS)
    elif chance(rng, OPERAND_INPUT_PROB):
        second = pick(rng, _ALL_OPERANDS)
    else:
        second = pick(rng, [h for h in HIDDEN_COLUMNS if h != first])
    inputs = (first, second)
    return Node(inputs, unary_op, binary_op, _edge_decays(rng, inputs, EDGE_DECAY_PROB, settings))


def _draw_adam_root(rng: np.random.Generator, settings: Settings) -> Node:
    unary_op, binary_op = _latent_ops(rng)
    inputs = (ADAM_VARIANT_FIRST_INPUT, pick(rng, HIDDEN_COLUMNS))
    return Node(inputs, unary_op, binary_op, _edge_decays(rng, inputs, EDGE_DECAY_PROB, settings))


def has_active_cycle(hidden: Sequence[Node], root: Node) -> bool:
    """True when the nodes reachable from the root form a cycle (a read of the root counts)."""
    state: dict[int, int] = {}  # 1 = on the current path, 2 = finished

    def node(column: int) -> Node:
        return root if column == ROOT else hidden[column - N_OPERANDS]

    def cyclic(column: int) -> bool:
        if state.get(column) == 2:
            return False
        if state.get(column) == 1:
            return True
        state[column] = 1
        if any(c >= N_OPERANDS and cyclic(c) for c in node(column).inputs):
            return True
        state[column] = 2
        return False

    return cyclic(ROOT)


def draw_genome(
    rng: np.random.Generator,
    settings: Settings = DEFAULT_SETTINGS,
    variant: VariantLike = "paper",
) -> Genome | None:
    """One draw of a whole genome, or None when the draw is unusable.

    ``"paper"``: hidden nodes, root, momentum type; None when the active graph has a cycle.
    ``"adam_variants"``: the same hidden-node rules with operands limited to ``s hat``, ``1``
    and ``2``; root binary on (``v hat``, a uniform hidden node) with the paper space's latent ops
    and 0.15 decays; momentum none; None on a cycle or when the expression misses ``s hat``.
    ``"lr_schedule"``: the variant's base update with a random decay on the root's edge.
    Flip is false; the integrity check sets it.
    """
    resolved = resolve_variant(variant)
    if resolved.name == "lr_schedule":
        return lr_schedule_genome(random_decay(rng, settings), resolved.lr_base)
    operands = ADAM_VARIANT_OPERANDS if resolved.name == "adam_variants" else _ALL_OPERANDS
    hidden = tuple(draw_hidden_node(rng, c, settings, operands) for c in HIDDEN_COLUMNS)
    if resolved.name == "adam_variants":
        root = _draw_adam_root(rng, settings)
        momentum = Momentum.NONE
    else:
        root = draw_root(rng, settings)
        momentum = Momentum(int(rng.integers(len(Momentum))))
    if has_active_cycle(hidden, root):
        return None
    genome = Genome(hidden, root, momentum)
    if variant_violation(genome, resolved) is not None:
        return None
    return genome
