"""Genome <-> trial params: gene names, their choice lists, and the codec (encoding 2).

Every gene is a categorical param with a short stable name and a choice list that the name
(and the search-space variant) fixes, and **every combination of choices is a structurally
valid genome**, so any Optuna sampler (Random, TPE) searches the space without drawing
genomes that must be thrown away. Only the genes of the active graph are params, asked
top-down: the root, then each hidden node that an earlier node reads, in label order::

    mom                     none | momentum | nesterov
    root.op                 a unary or binary op name (arity and op in one gene)
    root.ab                 a binary root's inputs "x | y", one of them n0 (a unary root reads n0)
    n2.op                   hidden node n2's op
    n2.a                    a unary n2's input: an operand, or n3 or n4
    n2.ab                   a binary n2's two different inputs "x | y" from n2.a's list
    n2.a.s, n2.ab.s         adam_variants only: the same genes where n2 must lead to s hat
    root.a.d                the decay on the edge of input a (b for the 2nd): none or an op
    root.a.d.a, root.a.d.ab the decay root's input(s): a1..a14 or D
    root.a.d.D              the decay's hidden node D's op, asked when the decay root reads D
    root.a.d.D.a, ...D.ab   D's input(s): a1..a14

Why no choice can be invalid:

* the root reads n0, so it always reads a hidden node;
* node n_i reads only operands and n_j with j > i, so the active graph has no cycle;
* a binary node's two inputs are one gene over ordered pairs of different names, and the op
  gene fixes which of ``.a`` / ``.ab`` is asked, so arity and inputs always agree;
* in ``adam_variants`` the expression under the root's hidden input must read ``s hat``:
  a node that would otherwise close that expression without it (no ``s hat`` read so far
  and no higher node still to come) asks the ``.s`` gene, whose choices read ``s hat`` or a
  higher node, which then comes next.

Any acyclic genome has such a numbering: :func:`genome_params` keeps the genome's own
numbering when it already is one, and otherwise renumbers the active hidden nodes in reverse
depth-first postorder from the root; the renumbered genome prints the same equation.

Encoding 1, before, had one gene per input (``root.a``, ``n3.b``) over all 25 inputs, so a
sampler drew cycles, duplicate inputs and roots without a hidden input; 19 of 20 random draws
were invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from itertools import permutations
from typing import Any, Literal

from optuna.distributions import CategoricalDistribution

from optuna_nos.core.errors import NOSError
from optuna_nos.space import (
    BINARY_OPS,
    DECAY_BINARY_OPS,
    DECAY_HIDDEN,
    DECAY_UNARY_OPS,
    HIDDEN_COLUMNS,
    N_BASE_SCHEDULES,
    N_HIDDEN,
    N_OPERANDS,
    OPERANDS,
    ROOT,
    UNARY_OPS,
    Decay,
    DecayNode,
    Genome,
    Momentum,
    Node,
)
from optuna_nos.space.variants import (
    ADAM_VARIANT_FIRST_INPUT,
    ADAM_VARIANT_OPERANDS,
    Variant,
    VariantLike,
    lr_schedule_template,
    resolve_variant,
    variant_violation,
)

__all__ = [
    "ENCODING_VERSION",
    "PAIR_SEPARATOR",
    "InvalidParams",
    "decode",
    "genome_from_params",
    "genome_params",
    "is_gene_name",
    "param_distribution",
]

#: Version of the param encoding described above; stored with each study.
ENCODING_VERSION = 2
#: Separates the two inputs in the value of a pair gene, e.g. ``"v hat | n1"``.
PAIR_SEPARATOR = " | "

MOMENTUM_CHOICES: tuple[str, ...] = ("none", "momentum", "nesterov")
_UNARY_NAMES = tuple(UNARY_OPS[code].name for code in sorted(UNARY_OPS))
_BINARY_NAMES = tuple(BINARY_OPS[code].name for code in sorted(BINARY_OPS))
NODE_OP_CHOICES: tuple[str, ...] = _UNARY_NAMES + _BINARY_NAMES
_OPERAND_NAMES = tuple(op.name for op in OPERANDS)
_HIDDEN_NAMES = tuple(f"n{i}" for i in range(N_HIDDEN))
_DECAY_UNARY_NAMES = tuple(DECAY_UNARY_OPS[c].name for c in sorted(DECAY_UNARY_OPS))
_DECAY_BINARY_NAMES = tuple(DECAY_BINARY_OPS[c].name for c in sorted(DECAY_BINARY_OPS))
DECAY_OP_CHOICES: tuple[str, ...] = _DECAY_UNARY_NAMES + _DECAY_BINARY_NAMES
NO_DECAY = "none"
DECAY_CHOICES: tuple[str, ...] = (NO_DECAY,) + DECAY_OP_CHOICES
_BASE_NAMES = tuple(f"a{k + 1}" for k in range(N_BASE_SCHEDULES))
DECAY_HIDDEN_NAME = "D"
_DECAY_ROOT_INPUTS = _BASE_NAMES + (DECAY_HIDDEN_NAME,)

_N0 = HIDDEN_COLUMNS[0]
_S_HAT = 4
_COLUMNS = {
    **{op.name: op.index for op in OPERANDS},
    **dict(zip(_HIDDEN_NAMES, HIDDEN_COLUMNS, strict=True)),
    "root": ROOT,
}
_NAMES = {column: name for name, column in _COLUMNS.items()}
_DECAY_INDEX = {name: k for k, name in enumerate(_DECAY_ROOT_INPUTS)}
_UNARY_CODES = {UNARY_OPS[c].name: c for c in UNARY_OPS}
_BINARY_CODES = {BINARY_OPS[c].name: c for c in BINARY_OPS}
_DECAY_UNARY_CODES = {DECAY_UNARY_OPS[c].name: c for c in DECAY_UNARY_OPS}
_DECAY_BINARY_CODES = {DECAY_BINARY_OPS[c].name: c for c in DECAY_BINARY_OPS}
_POSITIONS = ("a", "b")
_PLACEHOLDER = Node(inputs=(0,))


class InvalidParams(Exception):
    """The params describe no genome of the space (a value outside its choices, a missing
    gene); the message says why."""


# -- gene names -----------------------------------------------------------------------------

GeneKind = Literal[
    "mom", "op", "inputs", "decay", "decay_inputs", "decay_hidden", "decay_hidden_inputs"
]


@dataclass(frozen=True)
class _Gene:
    """A parsed gene name: what it chooses, on which node and edge."""

    kind: GeneKind
    column: int = ROOT
    position: int = 0
    binary: bool = False
    leads_to_s_hat: bool = False


def _arity(token: str) -> bool | None:
    """``"a"`` -> unary, ``"ab"`` -> binary, anything else None."""
    return {"a": False, "ab": True}.get(token)


def _parse_decay(column: int, position: int, rest: list[str]) -> _Gene | None:
    if not rest:
        return _Gene("decay", column, position)
    hidden = rest[0] == DECAY_HIDDEN_NAME
    if hidden:
        rest = rest[1:]
        if not rest:
            return _Gene("decay_hidden", column, position)
    binary = _arity(rest[0])
    if len(rest) != 1 or binary is None:
        return None
    return _Gene("decay_hidden_inputs" if hidden else "decay_inputs", column, position, binary)


def _parse(name: str) -> _Gene | None:
    """The gene ``name`` stands for, or None when it is not a gene name of any space."""
    if name == "mom":
        return _Gene("mom")
    node, *rest = name.split(".")
    column = _COLUMNS.get(node, -1)
    if column < N_OPERANDS or not rest:
        return None
    if rest == ["op"]:
        return _Gene("op", column)
    binary = _arity(rest[0])
    if binary is not None and (rest[1:] in ([], ["s"])):
        if column == ROOT and (not binary or rest[1:]):
            return None  # a unary root reads n0: no gene; the root has no ".s" gene
        return _Gene("inputs", column, binary=binary, leads_to_s_hat=bool(rest[1:]))
    if rest[0] in _POSITIONS and rest[1:2] == ["d"]:
        return _parse_decay(column, _POSITIONS.index(rest[0]), rest[2:])
    return None


def is_gene_name(name: str) -> bool:
    """True when ``name`` has the form of a genome param (``mom``, ``root.*``, ``n0.*``..)."""
    return name == "mom" or name.split(".")[0] in ("root", *_HIDDEN_NAMES)


# -- spaces and choice lists ----------------------------------------------------------------


@dataclass(frozen=True)
class _Space:
    """A variant as the codec sees it.

    ``fixed`` genes are not params; ``restricted`` replaces single genes' choice lists;
    ``operands`` are the operands a hidden node may read; ``needs_s_hat`` turns on the
    ``.s`` genes (the hidden expression must read ``s hat``).
    """

    fixed: Mapping[str, str] = field(default_factory=dict)
    restricted: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    operands: tuple[str, ...] = _OPERAND_NAMES
    needs_s_hat: bool = False


@cache
def _space(variant: Variant) -> _Space:
    if variant.name == "adam_variants":
        first = OPERANDS[ADAM_VARIANT_FIRST_INPUT].name
        return _Space(
            fixed={
                "mom": MOMENTUM_CHOICES[Momentum.NONE],
                "root.ab": PAIR_SEPARATOR.join((first, _HIDDEN_NAMES[0])),
            },
            restricted={"root.op": _BINARY_NAMES},
            operands=tuple(OPERANDS[c].name for c in ADAM_VARIANT_OPERANDS),
            needs_s_hat=True,
        )
    if variant.name == "lr_schedule":
        decay_gene = "root.a.d"
        template = genome_params(lr_schedule_template(variant.lr_base))
        return _Space(
            fixed={k: v for k, v in template.items() if k != decay_gene},
            restricted={decay_gene: DECAY_OP_CHOICES},
        )
    return _Space()


def _pairs(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(PAIR_SEPARATOR.join(pair) for pair in permutations(items, 2))


def _input_choices(space: _Space, gene: _Gene) -> tuple[str, ...]:
    if gene.column == ROOT:
        others = _OPERAND_NAMES + _HIDDEN_NAMES[1:]
        n0 = _HIDDEN_NAMES[0]
        return tuple(f"{n0}{PAIR_SEPARATOR}{x}" for x in others) + tuple(
            f"{x}{PAIR_SEPARATOR}{n0}" for x in others
        )
    label = gene.column - N_OPERANDS
    items = space.operands + _HIDDEN_NAMES[label + 1 :]
    choices = _pairs(items) if gene.binary else items
    if gene.leads_to_s_hat:
        wanted = {OPERANDS[_S_HAT].name, *_HIDDEN_NAMES}
        choices = tuple(c for c in choices if wanted & set(c.split(PAIR_SEPARATOR)))
    return choices


@cache
def _choices(variant: Variant, name: str) -> tuple[str, ...]:
    space = _space(variant)
    gene = _parse(name)
    if gene is None or (gene.leads_to_s_hat and not space.needs_s_hat):
        raise NOSError(f"{name!r} is not a genome param name of the {variant} space")
    if name in space.restricted:
        return space.restricted[name]
    if gene.kind == "inputs":
        return _input_choices(space, gene)
    if gene.kind in ("decay_inputs", "decay_hidden_inputs"):
        items = _DECAY_ROOT_INPUTS if gene.kind == "decay_inputs" else _BASE_NAMES
        return _pairs(items) if gene.binary else items
    return {
        "mom": MOMENTUM_CHOICES,
        "op": NODE_OP_CHOICES,
        "decay": DECAY_CHOICES,
        "decay_hidden": DECAY_OP_CHOICES,
    }[gene.kind]


def param_distribution(name: str, space: VariantLike = "paper") -> CategoricalDistribution:
    """The categorical distribution of gene ``name`` in ``space`` (same for every trial)."""
    return CategoricalDistribution(_choices(resolve_variant(space), name))


# -- the decoder: one walk for params -> genome and genome -> params ------------------------

Ask = Callable[[str], str]


def _decay_node(ask: Ask, prefix: str, op: str) -> DecayNode:
    binary = op in _DECAY_BINARY_CODES
    value = ask(f"{prefix}.ab" if binary else f"{prefix}.a")
    inputs = tuple(_DECAY_INDEX[n] for n in value.split(PAIR_SEPARATOR))
    if binary:
        return DecayNode(inputs=inputs, binary_op=_DECAY_BINARY_CODES[op])
    return DecayNode(inputs=inputs, unary_op=_DECAY_UNARY_CODES[op])


def _decode_decay(ask: Ask, prefix: str) -> Decay | None:
    op = ask(prefix)
    if op == NO_DECAY:
        return None
    root = _decay_node(ask, prefix, op)
    if DECAY_HIDDEN not in root.inputs:
        return Decay(root=root)
    hidden_prefix = f"{prefix}.{DECAY_HIDDEN_NAME}"
    hidden = _decay_node(ask, hidden_prefix, ask(hidden_prefix))
    return Decay(root=root, hidden=hidden, hidden_flag=True)


def _input_gene(space: _Space, column: int, binary: bool, s_hat_read: bool, read: set[int]) -> str:
    if column == ROOT:
        return "root.ab"
    gene = f"{_NAMES[column]}.{'ab' if binary else 'a'}"
    if space.needs_s_hat and not s_hat_read and not any(c > column for c in read):
        gene += ".s"
    return gene


def decode(ask: Ask, space: VariantLike = "paper") -> Genome:
    """Build a genome by asking for its active genes top-down (see the module docstring).

    ``ask(name)`` returns a value of ``name``'s choice list; inactive nodes get defaults.
    """
    spec = _space(resolve_variant(space))
    momentum = Momentum(MOMENTUM_CHOICES.index(ask("mom")))
    nodes: dict[int, Node] = {}
    read: set[int] = set()
    s_hat_read = False
    for column in (ROOT, *HIDDEN_COLUMNS):
        if column != ROOT and column not in read:
            continue
        op = ask(f"{_NAMES[column]}.op")
        binary = op in _BINARY_CODES
        if column == ROOT and not binary:
            inputs: tuple[int, ...] = (_N0,)
        else:
            value = ask(_input_gene(spec, column, binary, s_hat_read, read))
            inputs = tuple(_COLUMNS[n] for n in value.split(PAIR_SEPARATOR))
            s_hat_read = s_hat_read or (column != ROOT and _S_HAT in inputs)
        read.update(inputs)
        decays: dict[int, Decay] = {}
        for position, child in zip(_POSITIONS, inputs, strict=False):
            decay = _decode_decay(ask, f"{_NAMES[column]}.{position}.d")
            if decay is not None:
                decays[child] = decay
        if binary:
            nodes[column] = Node(inputs=inputs, binary_op=_BINARY_CODES[op], decays=decays)
        else:
            nodes[column] = Node(inputs=inputs, unary_op=_UNARY_CODES[op], decays=decays)
    hidden = tuple(nodes.get(column, _PLACEHOLDER) for column in HIDDEN_COLUMNS)
    return Genome(hidden, nodes[ROOT], momentum)


def asker(space: VariantLike, source: Callable[[str, tuple[str, ...]], Any]) -> Ask:
    """An ``ask`` for :func:`decode` that answers fixed genes itself and the others from
    ``source(name, choices)``; a value outside the choices raises :class:`InvalidParams`."""
    variant = resolve_variant(space)
    spec = _space(variant)

    def ask(name: str) -> str:
        if name in spec.fixed:
            return spec.fixed[name]
        choices = _choices(variant, name)
        value = source(name, choices)
        if value not in choices:
            raise InvalidParams(f"param {name} = {value!r} is not one of its choices")
        return str(value)

    return ask


# -- genome -> params ------------------------------------------------------------------------


def _is_top_down(genome: Genome) -> bool:
    """The root reads n0 and every active hidden node reads only higher-numbered ones."""
    return _N0 in genome.root.inputs and all(
        child > column
        for column in genome.active_hidden()
        for child in genome.node(column).inputs
        if child >= N_OPERANDS
    )


def _renumbered(genome: Genome) -> Genome:
    """The same update with the active hidden nodes numbered in reverse DFS postorder.

    Reverse postorder puts every node before the nodes it reads, and first a root input.
    """
    postorder: list[int] = []

    def visit(column: int) -> None:
        for child in genome.node(column).inputs:
            if child >= N_OPERANDS and child not in postorder:
                visit(child)
        postorder.append(column)

    visit(ROOT)
    label = {old: HIDDEN_COLUMNS[k] for k, old in enumerate(reversed(postorder[:-1]))}

    def moved(node: Node) -> Node:
        return node.replace(
            inputs=tuple(label.get(c, c) for c in node.inputs),
            decays={label.get(c, c): node.decays[c] for c in node.inputs if c in node.decays},
        )

    hidden = [_PLACEHOLDER] * N_HIDDEN
    for old, new in label.items():
        hidden[new - N_OPERANDS] = moved(genome.node(old))
    return Genome(tuple(hidden), moved(genome.root), genome.momentum)


def _gene_value(genome: Genome, name: str) -> str:
    """The value of gene ``name`` in a top-down numbered ``genome``."""
    gene = _parse(name)
    if gene is None:
        raise NOSError(f"{name!r} is not a genome param name")
    if gene.kind == "mom":
        return MOMENTUM_CHOICES[genome.momentum]
    node = genome.node(gene.column)
    if gene.kind == "op":
        return (BINARY_OPS[node.binary_op] if node.binary else UNARY_OPS[node.unary_op]).name
    if gene.kind == "inputs":
        return PAIR_SEPARATOR.join(_NAMES[c] for c in node.inputs)
    decay = node.decay_on(node.inputs[gene.position])
    if decay is None:
        return NO_DECAY
    decay_node = decay.hidden if gene.kind.startswith("decay_hidden") else decay.root
    if gene.kind in ("decay", "decay_hidden"):
        return decay_node.op.name
    return PAIR_SEPARATOR.join(_DECAY_ROOT_INPUTS[i] for i in decay_node.inputs)


def _params_of(genome: Genome, variant: Variant) -> dict[str, str]:
    spec = _space(variant)
    params: dict[str, str] = {}

    def ask(name: str) -> str:
        value = _gene_value(genome, name)
        if name in spec.fixed:
            if value != spec.fixed[name]:
                raise NOSError(
                    f"gene {name} = {value!r} but the {variant} space fixes it to "
                    f"{spec.fixed[name]!r}"
                )
        elif value not in _choices(variant, name):
            raise NOSError(f"gene {name} = {value!r} is not a choice of the {variant} space")
        else:
            params[name] = value
        return value

    decode(ask, variant)
    return params


def genome_params(genome: Genome, space: VariantLike = "paper") -> dict[str, str]:
    """The trial params of ``genome``'s active genes in ``space`` (fixed genes left out).

    ``study.enqueue_trial(genome_params(g))`` queues ``g``. A genome not numbered top-down is
    renumbered first (same equation). Raises :class:`NOSError` when the genome is not in
    ``space`` or a gene takes a value outside its choice list there.
    """
    variant = resolve_variant(space)
    reason = variant_violation(genome, variant)
    if reason is not None:
        raise NOSError(f"the genome is outside the {variant} space: {reason}")
    if _is_top_down(genome):
        try:
            return _params_of(genome, variant)
        except NOSError:
            pass  # numbered top-down, but not as the space's fixed genes are
    return _params_of(_renumbered(genome), variant)


# -- params -> genome ------------------------------------------------------------------------


def genome_from_params(params: Mapping[str, Any], space: VariantLike = "paper") -> Genome:
    """The genome that trial params describe (inactive nodes and latent ops get defaults).

    Raises :class:`NOSError` when a needed gene is missing or takes a value outside its
    choice list. No integrity check is run here.
    """
    variant = resolve_variant(space)

    def source(name: str, choices: tuple[str, ...]) -> Any:
        if name not in params:
            raise InvalidParams(f"gene {name} is missing from the params")
        return params[name]

    try:
        genome = decode(asker(variant, source), variant)
    except InvalidParams as exc:
        raise NOSError(str(exc)) from None
    reason = variant_violation(genome, variant)
    if reason is not None:  # unreachable by construction; kept as a guard
        raise NOSError(f"the params lie outside the {variant} space: {reason}")
    return genome
