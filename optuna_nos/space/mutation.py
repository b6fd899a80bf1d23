"""One mutation attempt of a genome or of a decay, structural only.

Genome mutation picks a node uniformly among the active hidden nodes and the root, draws
r ~ U(0, 1) and applies:

====================  =====  ===============================================================
r                     prob.  change
====================  =====  ===============================================================
r >= 0.60             40 %   op (:func:`change_op`)
0.30 <= r < 0.60      30 %   connection (:func:`change_connection`)
0.20 <= r < 0.30      10 %   arity (:func:`change_arity`)
0.10 <= r < 0.20      10 %   momentum type (:func:`change_momentum`)
r < 0.10              10 %   decay on one input edge: add, or delete / mutate 50/50
====================  =====  ===============================================================

An attempt returns ``(mutant, Mutation)``; the mutant is None when the attempt is unusable
(a cycle in the active graph, a failed decay mutation in the project default, or a result
outside the search-space variant), and :attr:`Mutation.rejected` says why. The integrity
check, duplicate strings and flip are :mod:`optuna_nos.optim.evolve`'s business. A mutant keeps its
parent's flip.

Decays are stored per input column, so a decay stays with its input through swaps and
survives the removal of its edge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.space.decays import (
    DECAY_BINARY_OPS,
    DECAY_HIDDEN,
    DECAY_UNARY_OPS,
    N_BASE_SCHEDULES,
    Decay,
    DecayNode,
    decay_phenotype,
    is_valid_decay,
)
from optuna_nos.space.genome import Genome
from optuna_nos.space.node import HIDDEN_COLUMNS, ROOT, Momentum, Node, column_name
from optuna_nos.space.notation import format_decay
from optuna_nos.space.operands import N_OPERANDS, OPERANDS
from optuna_nos.space.random_genome import chance, has_active_cycle, pick, random_decay
from optuna_nos.space.update_ops import BINARY_OPS, IDENTITY, UNARY_OPS
from optuna_nos.space.variants import (
    VariantLike,
    lr_schedule_edge,
    resolve_variant,
    variant_violation,
)

__all__ = [
    "DECAY_MUTATION_KINDS",
    "MUTATION_KINDS",
    "PHENOTYPE_MIN_DISTANCE",
    "DecayMutation",
    "Mutation",
    "change_arity",
    "change_connection",
    "change_decay",
    "change_momentum",
    "change_op",
    "mutate_decay",
    "mutate_once",
]

MUTATION_KINDS: tuple[str, ...] = (
    "op",
    "connection",
    "arity",
    "momentum",
    "decay_add",
    "decay_delete",
    "decay_mutate",
)
DECAY_MUTATION_KINDS: tuple[str, ...] = ("op", "connection", "arity")
#: A mutated decay must move at least this far (L2 over the T = 100 phenotype).
PHENOTYPE_MIN_DISTANCE = 1e-4

SWAP_PROB = 0.2
IDENTITY_ON_CHANGE_PROB = 0.2
DECAY_DELETE_PROB = 0.5


@dataclass(frozen=True)
class Mutation:
    """What one mutation attempt changed, for lineage.

    ``column`` is the mutated node (20..25; None for a momentum change); ``before``/``after``
    describe it: a node signature such as ``max(v hat, n2)`` for op, connection and arity
    changes, the momentum type's name, or a decay in paper notation (``""`` for none).
    ``edge`` is the input column whose decay changed; ``decay_kind``/``decay_node`` say how a
    mutated decay changed (``"op"``/``"connection"``/``"arity"`` on ``"R"`` or ``"D"``) and
    ``decay_check`` whether it passed the decay check (in range and moved). ``rejected`` is why
    the attempt gave no mutant (``""`` when it gave one) and ``attempts`` counts the attempts
    the accepted mutant took (set by :func:`optuna_nos.optim.evolve.mutate`).
    """

    kind: str
    column: int | None
    before: str = ""
    after: str = ""
    edge: int | None = None
    decay_kind: str | None = None
    decay_node: str | None = None
    decay_check: bool | None = None
    rejected: str = ""
    attempts: int = 1

    def __post_init__(self) -> None:
        if self.kind not in MUTATION_KINDS:
            raise NOSError(f"unknown mutation kind {self.kind!r}")

    @property
    def node(self) -> str | None:
        """``n0``..``n4`` or ``root``; None for a momentum change."""
        return None if self.column is None else column_name(self.column)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field plus the node's name."""
        return {**asdict(self), "node": self.node}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mutation:
        fields = {k: v for k, v in data.items() if k != "node"}
        try:
            return cls(**fields)
        except TypeError as exc:
            raise NOSError(f"not a mutation record: {exc}") from None


@dataclass(frozen=True)
class DecayMutation:
    """One decay mutation: the mutated decay and the outcome of its check.

    ``valid``: all values in [0, 1] at T = 100 (NaN passes in paper mode). ``changed``: the
    text differs from the old decay's and the phenotypes are more than 1e-4 apart (L2).
    """

    decay: Decay
    kind: str
    node: str
    valid: bool
    changed: bool

    @property
    def passed(self) -> bool:
        return self.valid and self.changed

    @property
    def failure(self) -> str:
        """Why the check failed, or ``""``."""
        if not self.valid:
            return "the mutated decay leaves [0, 1]"
        if not self.changed:
            return "the mutated decay equals the old one"
        return ""


# -- decays -----------------------------------------------------------------------------------

#: Phenotypes of recently seen decays: a parent's decay is mutated many times over. The
#: tensors are shared, so they are only read.
_phenotype = lru_cache(maxsize=4096)(decay_phenotype)


def _other(rng: np.random.Generator, current: int, count: int) -> int:
    return pick(rng, [k for k in range(count) if k != current])


def _mutate_decay_node(
    node: DecayNode, candidates: tuple[int, ...], rng: np.random.Generator
) -> tuple[DecayNode, str]:
    unused = [k for k in candidates if k not in node.inputs]
    c = pick(rng, unused)
    r = float(rng.random())
    if r >= 0.40:
        if node.binary:
            op = _other(rng, node.binary_op, len(DECAY_BINARY_OPS))
            return replace(node, binary_op=op), "op"
        return replace(node, unary_op=_other(rng, node.unary_op, len(DECAY_UNARY_OPS))), "op"
    if r >= 0.15:
        if not node.binary:
            inputs: tuple[int, ...] = (c,)
        elif chance(rng, SWAP_PROB):
            inputs = (node.inputs[1], node.inputs[0])
        elif chance(rng, 0.5):
            inputs = (c, node.inputs[1])
        else:
            inputs = (node.inputs[0], c)
        return replace(node, inputs=inputs), "connection"
    if not node.binary:
        inputs = (node.inputs[0], c) if chance(rng, 0.5) else (c, node.inputs[0])
    else:
        inputs = (node.inputs[0],) if chance(rng, 0.5) else (node.inputs[1],)
    return replace(node, inputs=inputs), "arity"


def mutate_decay(
    decay: Decay, rng: np.random.Generator, settings: Settings = DEFAULT_SETTINGS
) -> DecayMutation:
    """Mutate one node of ``decay`` and check the result.

    The node is R or D 50/50 when D is active, else R. D counts as active when R reads it;
    in paper mode also when its sticky flag is set (:attr:`Decay.hidden_flag`). With c a
    uniform unused input ({a1..a14, D} for R, a1..a14 for D) and r ~ U(0, 1): r >= 0.4 a
    different op of the same arity; 0.15 <= r < 0.4 change connection (unary: the input
    becomes c; binary: swap with 0.2, else input 1 or 2 becomes c); r < 0.15 change arity
    (unary -> binary: c second, or c first with the old input second; binary -> unary: drop
    input 2, or drop input 1). The result is always returned; whether a failed check matters
    is the caller's decision.
    """
    hidden_active = decay.uses_hidden or (settings.sticky_decay_hidden_flag and decay.hidden_flag)
    on_hidden = hidden_active and chance(rng, 0.5)
    if on_hidden:
        hidden, kind = _mutate_decay_node(decay.hidden, tuple(range(N_BASE_SCHEDULES)), rng)
        root = decay.root
    else:
        root, kind = _mutate_decay_node(decay.root, tuple(range(N_BASE_SCHEDULES + 1)), rng)
        hidden = decay.hidden
    flag = DECAY_HIDDEN in root.inputs
    if settings.sticky_decay_hidden_flag:
        flag = flag or decay.hidden_flag
    mutated = Decay(root=root, hidden=hidden, hidden_flag=flag)

    valid = is_valid_decay(mutated, nan_valid=settings.nan_decays_valid)
    distance = float(torch.linalg.vector_norm(_phenotype(mutated) - _phenotype(decay)))
    # A NaN distance is not "within 1e-4", as in the released code's comparison.
    moved = not distance <= PHENOTYPE_MIN_DISTANCE
    changed = format_decay(mutated) != format_decay(decay) and moved
    return DecayMutation(mutated, kind, "D" if on_hidden else "R", valid, changed)


# -- genome mutation --------------------------------------------------------------------------


def _input_name(column: int) -> str:
    return OPERANDS[column].name if column < N_OPERANDS else column_name(column)


def _signature(node: Node) -> str:
    """The node's active op and inputs, e.g. ``max(v hat, n2)``."""
    op = BINARY_OPS[node.binary_op] if node.binary else UNARY_OPS[node.unary_op]
    return f"{op.name}({', '.join(_input_name(c) for c in node.inputs)})"


def _with_node(
    genome: Genome, column: int, node: Node, mutation: Mutation
) -> tuple[Genome | None, Mutation]:
    if ROOT in node.inputs:  # only an active node is mutated, so this closes a cycle
        return None, replace(mutation, rejected="the active graph has a cycle through the root")
    hidden = list(genome.hidden)
    root = genome.root
    if column == ROOT:
        root = node
    else:
        hidden[column - N_OPERANDS] = node
    if has_active_cycle(hidden, root):
        return None, replace(mutation, rejected="the active graph has a cycle")
    return genome.with_node(column, node), mutation


def _node_change(
    genome: Genome, column: int, node: Node, kind: str
) -> tuple[Genome | None, Mutation]:
    before = genome.node(column)
    mutation = Mutation(kind, column, _signature(before), _signature(node))
    return _with_node(genome, column, node, mutation)


def _unused_columns(node: Node) -> list[int]:
    """Columns 0..25 the node does not read, itself and the root included."""
    return [c for c in range(ROOT + 1) if c not in node.inputs]


def change_op(
    genome: Genome, column: int, rng: np.random.Generator, settings: Settings = DEFAULT_SETTINGS
) -> tuple[Genome | None, Mutation]:
    """Change the node's active op.

    Unary: from the identity, a uniform op of 0..``settings.change_op_max_unary``; otherwise
    the identity with 0.2, else a uniform op of that range other than the current one (the
    identity when the range holds no other). Binary: a uniform other op of 0..9.
    """
    node = genome.node(column)
    if node.binary:
        new = node.replace(binary_op=_other(rng, node.binary_op, len(BINARY_OPS)))
        return _node_change(genome, column, new, "op")
    allowed = range(settings.change_op_max_unary + 1)
    if node.unary_op == IDENTITY:
        unary_op = pick(rng, allowed)
    elif chance(rng, IDENTITY_ON_CHANGE_PROB):
        unary_op = IDENTITY
    else:
        others = [k for k in allowed if k != node.unary_op]
        unary_op = pick(rng, others) if others else IDENTITY
    return _node_change(genome, column, node.replace(unary_op=unary_op), "op")


def _rewire_root_hidden(node: Node, rng: np.random.Generator, settings: Settings) -> int:
    unused = [h for h in HIDDEN_COLUMNS if h not in node.inputs]
    if settings.root_rewire_skips_lowest:
        unused = unused[1:]
    return pick(rng, unused)


def change_connection(
    genome: Genome, column: int, rng: np.random.Generator, settings: Settings = DEFAULT_SETTINGS
) -> tuple[Genome | None, Mutation]:
    """Re-wire one input of the node, c uniform over the columns it does not read.

    Hidden node, or root with two hidden inputs: unary -> the input becomes c; binary -> swap
    with 0.2, else input 1 or 2 (50/50) becomes c. Unary root: another hidden node. Root with
    one operand input: swap with 0.2, else one slot 50/50; an operand slot becomes c, the
    hidden slot another hidden node (paper mode skips the lowest unused one).
    """
    node = genome.node(column)
    c = pick(rng, _unused_columns(node))
    first = node.inputs[0]
    hidden_inputs = [i for i in node.inputs if i in HIDDEN_COLUMNS]
    inputs: tuple[int, ...]
    if column == ROOT and not node.binary:
        inputs = (pick(rng, [h for h in HIDDEN_COLUMNS if h != first]),)
    elif not node.binary:
        inputs = (c,)
    elif chance(rng, SWAP_PROB):
        inputs = (node.inputs[1], first)
    else:
        slot = 0 if chance(rng, 0.5) else 1
        new_input = c
        if column == ROOT and len(hidden_inputs) == 1 and node.inputs[slot] >= N_OPERANDS:
            new_input = _rewire_root_hidden(node, rng, settings)
        inputs = (new_input, node.inputs[1]) if slot == 0 else (first, new_input)
    return _node_change(genome, column, node.replace(inputs=inputs), "connection")


def change_arity(
    genome: Genome, column: int, rng: np.random.Generator, settings: Settings = DEFAULT_SETTINGS
) -> tuple[Genome | None, Mutation]:
    """Switch the node between unary and binary; the latent op of the new arity
    becomes active. Unary -> binary: c (uniform unused column) second, or first with the old
    input second, 50/50. Binary -> unary: drop input 2 or input 1, 50/50, except that a root
    with one operand input always drops the operand."""
    del settings  # the same in both modes
    node = genome.node(column)
    c = pick(rng, _unused_columns(node))
    inputs: tuple[int, ...]
    if not node.binary:
        inputs = (node.inputs[0], c) if chance(rng, 0.5) else (c, node.inputs[0])
    elif column == ROOT and any(i < N_OPERANDS for i in node.inputs):
        inputs = tuple(i for i in node.inputs if i >= N_OPERANDS)
    else:
        inputs = (node.inputs[0],) if chance(rng, 0.5) else (node.inputs[1],)
    return _node_change(genome, column, node.replace(inputs=inputs), "arity")


def change_momentum(genome: Genome, rng: np.random.Generator) -> tuple[Genome, Mutation]:
    """A uniform choice of the other two momentum types."""
    momentum = Momentum(_other(rng, int(genome.momentum), len(Momentum)))
    mutation = Mutation("momentum", None, genome.momentum.name.lower(), momentum.name.lower())
    return genome.replace(momentum=momentum), mutation


def change_decay(
    genome: Genome, column: int, rng: np.random.Generator, settings: Settings = DEFAULT_SETTINGS
) -> tuple[Genome | None, Mutation]:
    """Add, delete or mutate the decay on one of the node's input edges (uniform).

    An undecayed edge gets a random decay; a decayed one loses it (0.5) or has it
    mutated (0.5, :func:`mutate_decay`). A mutated decay that fails its check fails the
    attempt, unless ``settings.ignore_decay_mutation_checks`` (paper mode).
    """
    node = genome.node(column)
    edge = pick(rng, node.inputs)
    decays = dict(node.decays)
    current = decays.get(edge)
    if current is None:
        decays[edge] = random_decay(rng, settings)
        mutation = Mutation("decay_add", column, "", format_decay(decays[edge]), edge=edge)
    elif chance(rng, DECAY_DELETE_PROB):
        del decays[edge]
        mutation = Mutation("decay_delete", column, format_decay(current), "", edge=edge)
    else:
        changed, mutation = _mutate_edge_decay(current, rng, settings, column, edge)
        if changed is None:
            return None, mutation
        decays[edge] = changed
    return genome.with_node(column, node.replace(decays=decays)), mutation


def _mutate_edge_decay(
    current: Decay, rng: np.random.Generator, settings: Settings, column: int, edge: int
) -> tuple[Decay | None, Mutation]:
    """:func:`mutate_decay` on the decay ``current`` of ``column``'s edge ``edge``, and its
    "decay_mutate" record; the decay is None when the mutated decay fails its check and
    checks are not ignored (the record then says why)."""
    result = mutate_decay(current, rng, settings)
    mutation = Mutation(
        "decay_mutate",
        column,
        format_decay(current),
        format_decay(result.decay),
        edge=edge,
        decay_kind=result.kind,
        decay_node=result.node,
        decay_check=result.passed,
    )
    if not result.passed and not settings.ignore_decay_mutation_checks:
        return None, replace(mutation, rejected=result.failure)
    return result.decay, mutation


def _mutate_lr_schedule(
    genome: Genome, rng: np.random.Generator, settings: Settings, base: str
) -> tuple[Genome | None, Mutation]:
    edge = lr_schedule_edge(base)
    current = genome.root.decay_on(edge)
    if current is None:
        raise NOSError(
            f"an lr_schedule genome needs a decay on the root's edge from {column_name(edge)}"
        )
    changed, mutation = _mutate_edge_decay(current, rng, settings, ROOT, edge)
    if changed is None:
        return None, mutation
    decays = {**genome.root.decays, edge: changed}
    return genome.with_node(ROOT, genome.root.replace(decays=decays)), mutation


def mutate_once(
    genome: Genome,
    rng: np.random.Generator,
    settings: Settings = DEFAULT_SETTINGS,
    *,
    variant: VariantLike = "paper",
) -> tuple[Genome | None, Mutation]:
    """One mutation attempt of ``genome``, kept inside ``variant``'s space.

    ``"adam_variants"`` applies the paper's operator and rejects results outside the variant
    (so a momentum change is always rejected); ``"lr_schedule"`` only mutates the decay on
    the root's edge (:func:`mutate_decay`).
    """
    resolved = resolve_variant(variant)
    if resolved.name == "lr_schedule":
        return _mutate_lr_schedule(genome, rng, settings, resolved.lr_base)
    order = genome.topological_order()  # active hidden nodes, then the root
    column = pick(rng, sorted(order))
    r = float(rng.random())
    mutant: Genome | None
    if r >= 0.60:
        mutant, mutation = change_op(genome, column, rng, settings)
    elif r >= 0.30:
        mutant, mutation = change_connection(genome, column, rng, settings)
    elif r >= 0.20:
        mutant, mutation = change_arity(genome, column, rng, settings)
    elif r >= 0.10:
        mutant, mutation = change_momentum(genome, rng)
    else:
        mutant, mutation = change_decay(genome, column, rng, settings)
    if mutant is not None and resolved.name != "paper":
        reason = variant_violation(mutant, resolved)
        if reason is not None:
            return None, replace(mutation, rejected=f"outside {resolved}: {reason}")
    return mutant, mutation
