"""Search-space variants: the full space and two restricted ones.

The released material does not fix how the paper searched Adam variants and LR schedules on
their own, so the project defines the variants exactly as follows.

``"paper"``
    The full dual-joint space of the paper; no constraint.

``"adam_variants"``
    * momentum type none;
    * the root is binary; its 1st input is ``v hat`` (operand 3) and its 2nd input a hidden
      node H; its binary op is free;
    * every operand read by an active hidden node (that is, by the expression under H, the
      root's only hidden input) is ``s hat`` (4) or a constant, ``1`` (6) or ``2`` (7), and
      ``s hat`` is read at least once, so U = op(v hat, f(s hat));
    * decays are allowed on every edge, the root's two included; flip is free.

    The published AdamClip family ``clip(v hat, f(s hat))`` lives here, and so does
    Adam itself as ``None ~ (v hat) / (sqrt(|s hat|))``.

``"lr_schedule"``
    A fixed base update under an identity root whose single edge carries a decay d, so that
    U = d(t) * base and d is a learning-rate-schedule factor like the paper's
    evolved LR schedules. Two bases:

    * ``"adam"`` (the default): n0 = ``sqrt(|s hat|)``, n1 = ``(v hat) / (n0)``, root =
      ``id(n1)``, momentum none: ``None ~ id([d][(v hat) / (sqrt(|s hat|))])``;
    * ``"nesterov"``: n0 = ``id(g)``, root = ``id(n0)``, Nesterov momentum (search form):
      ``Nest ~ id([d][id(g)])``.

    A genome conforms when, with the root's decays removed, it prints exactly the base
    update, and the root's edge carries a decay. Inactive nodes and flip are free. Only the
    decay changes under mutation.

A variant is named by a string: ``"paper"``, ``"adam_variants"``, ``"lr_schedule"`` (Adam
base) or ``"lr_schedule:<base>"``; :class:`Variant` is the parsed form.
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna_nos.core.errors import NOSError
from optuna_nos.space.decays import Decay
from optuna_nos.space.genome import HIDDEN_COLUMNS, ROOT, Genome, Momentum, Node
from optuna_nos.space.operands import N_OPERANDS, OPERANDS

__all__ = [
    "ADAM_VARIANT_FIRST_INPUT",
    "ADAM_VARIANT_OPERANDS",
    "LR_SCHEDULE_BASES",
    "VARIANTS",
    "Variant",
    "VariantLike",
    "conforms",
    "lr_schedule_edge",
    "lr_schedule_genome",
    "lr_schedule_template",
    "resolve_variant",
    "variant_violation",
]

VARIANTS: tuple[str, ...] = ("paper", "adam_variants", "lr_schedule")
LR_SCHEDULE_BASES: tuple[str, ...] = ("adam", "nesterov")

#: ``v hat``: the 1st input of an Adam variant's root.
ADAM_VARIANT_FIRST_INPUT = 3
#: Operands the hidden expression of an Adam variant may read: ``s hat``, ``1`` and ``2``.
ADAM_VARIANT_OPERANDS: tuple[int, ...] = (4, 6, 7)
_S_HAT = 4

_IDENTITY = -1
_SQRT_ABS = 2
_DIVIDE = 5
_G, _V_HAT = 0, 3


@dataclass(frozen=True)
class Variant:
    """A parsed search-space variant; ``lr_base`` matters only for ``"lr_schedule"``."""

    name: str = "paper"
    lr_base: str = "adam"

    def __post_init__(self) -> None:
        if self.name not in VARIANTS:
            raise NOSError(
                f"unknown search-space variant {self.name!r}; choose one of {', '.join(VARIANTS)}"
            )
        if self.lr_base not in LR_SCHEDULE_BASES:
            raise NOSError(
                f"unknown lr_schedule base {self.lr_base!r}; "
                f"choose one of {', '.join(LR_SCHEDULE_BASES)}"
            )

    def __str__(self) -> str:
        if self.name == "lr_schedule" and self.lr_base != "adam":
            return f"lr_schedule:{self.lr_base}"
        return self.name


VariantLike = str | Variant


def resolve_variant(variant: VariantLike) -> Variant:
    """``"paper"``, ``"adam_variants"``, ``"lr_schedule"`` or ``"lr_schedule:nesterov"`` ->
    :class:`Variant`; a :class:`Variant` passes through."""
    if isinstance(variant, Variant):
        return variant
    if not isinstance(variant, str):
        raise NOSError(f"a search-space variant is a string, got {variant!r}")
    name, sep, base = variant.partition(":")
    if sep and name != "lr_schedule":
        raise NOSError(f"only lr_schedule takes a base (as 'lr_schedule:<base>'), got {variant!r}")
    return Variant(name, base) if sep else Variant(name)


def lr_schedule_template(base: str = "adam") -> Genome:
    """The fixed base update of the ``"lr_schedule"`` variant, without the root-edge decay."""
    if base not in LR_SCHEDULE_BASES:
        raise NOSError(
            f"unknown lr_schedule base {base!r}; choose one of {', '.join(LR_SCHEDULE_BASES)}"
        )
    spare = Node(inputs=(_G,), unary_op=_IDENTITY)
    first, second = HIDDEN_COLUMNS[0], HIDDEN_COLUMNS[1]
    if base == "adam":
        sqrt_s = Node(inputs=(_S_HAT,), unary_op=_SQRT_ABS)
        ratio = Node(inputs=(_V_HAT, first), binary_op=_DIVIDE)
        hidden = (sqrt_s, ratio, spare, spare, spare)
        return Genome(hidden, Node(inputs=(second,), unary_op=_IDENTITY), Momentum.NONE)
    hidden = (Node(inputs=(_G,), unary_op=_IDENTITY), spare, spare, spare, spare)
    return Genome(hidden, Node(inputs=(first,), unary_op=_IDENTITY), Momentum.NESTEROV)


def lr_schedule_edge(base: str = "adam") -> int:
    """The input column of the root edge that carries the evolved decay."""
    return lr_schedule_template(base).root.inputs[0]


def lr_schedule_genome(decay: Decay, base: str = "adam") -> Genome:
    """The ``"lr_schedule"`` genome: the base update with ``decay`` on the root's edge."""
    template = lr_schedule_template(base)
    edge = template.root.inputs[0]
    return template.with_node(ROOT, template.root.replace(decays={edge: decay}))


def _operand_names(columns: set[int]) -> str:
    return ", ".join(OPERANDS[c].name for c in sorted(columns))


def _adam_violation(genome: Genome) -> str | None:
    root = genome.root
    if genome.momentum != Momentum.NONE:
        return f"momentum must be none, got {genome.momentum.name.lower()}"
    if not root.binary:
        return "the root must be binary"
    if root.inputs[0] != ADAM_VARIANT_FIRST_INPUT:
        return "the root's 1st input must be v hat"  # so the 2nd is a hidden node
    active_hidden = genome.topological_order()[:-1]  # the root comes last
    read = {c for h in active_hidden for c in genome.node(h).inputs if c < N_OPERANDS}
    extra = read - set(ADAM_VARIANT_OPERANDS)
    if extra:
        return f"the hidden expression reads {_operand_names(extra)}; only s hat, 1 and 2 allowed"
    if _S_HAT not in read:
        return "the hidden expression must read s hat"
    return None


def _lr_schedule_violation(genome: Genome, base: str) -> str | None:
    edge = genome.root.inputs[0]
    if genome.root.binary or genome.root.decay_on(edge) is None:
        return "the root's single edge must carry a decay"
    bare = genome.with_node(ROOT, genome.root.replace(decays={}))
    expected = lr_schedule_template(base).equation()
    if bare.equation() != expected:
        return f"without its decay the genome prints {bare.equation()!r}, not {expected!r}"
    return None


def variant_violation(genome: Genome, variant: VariantLike) -> str | None:
    """Why ``genome`` is outside ``variant``'s space, or None when it conforms."""
    resolved = resolve_variant(variant)
    if resolved.name == "adam_variants":
        return _adam_violation(genome)
    if resolved.name == "lr_schedule":
        return _lr_schedule_violation(genome, resolved.lr_base)
    return None


def conforms(genome: Genome, variant: VariantLike) -> bool:
    """True when ``genome`` lies in ``variant``'s space (see :func:`variant_violation`)."""
    return variant_violation(genome, variant) is None
