"""Printing genomes: the paper's notation and two conventional dialects.

The ``"paper"`` dialect is the exact text of the released search log, quirks included: the
sigmoid decay's missing parenthesis, softsign repeating its argument, hidden nodes inlined
wherever they are read. ``"readable"`` prints conventional math; ``"latex"`` is for the
dashboard and docs. Parsing the paper dialect lives in :mod:`optuna_nos.space.parse`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from optuna_nos.core.errors import NOSError
from optuna_nos.space.decays import (
    DECAY_BINARY_OPS,
    DECAY_HIDDEN,
    DECAY_UNARY_OPS,
    Decay,
    DecayNode,
)
from optuna_nos.space.node import ROOT, Momentum
from optuna_nos.space.operands import N_OPERANDS, OPERANDS
from optuna_nos.space.update_ops import BINARY_OPS, UNARY_OPS

if TYPE_CHECKING:
    from optuna_nos.space.genome import Genome

__all__ = ["DIALECTS", "Dialect", "format_decay", "format_equation"]

Dialect = Literal["paper", "readable", "latex"]
DIALECTS: tuple[str, ...] = ("paper", "readable", "latex")

_READABLE_PREFIX = {
    Momentum.NONE: "U = ",
    Momentum.MOMENTUM: "momentum: U = ",
    Momentum.NESTEROV: "nesterov: U = ",
}
_LATEX_PREFIX = {
    Momentum.NONE: "U = ",
    Momentum.MOMENTUM: r"\text{momentum: } U = ",
    Momentum.NESTEROV: r"\text{Nesterov: } U = ",
}


def _fill(fmt: str, x: str, y: str = "") -> str:
    return fmt.replace("{x}", x).replace("{y}", y)


def _is_factor(text: str) -> bool:
    """True when readable ``text`` reads as one factor: no '/', '·', ' + ', ' - ' outside ()."""
    depth = 0
    for at, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and (char in "/·" or text.startswith((" + ", " - "), at)):
            return False
    return True


def _group(text: str) -> str:
    return text if _is_factor(text) else f"({text})"


def _fill_readable(fmt: str, x: str, y: str = "") -> str:
    """Readable formats put no brackets around their slots; a divisor needs them."""
    if "/ {y}" in fmt:
        y = _group(y)
    return _fill(fmt, x, y)


def _base_name(index: int, dialect: str) -> str:
    return f"a_{{{index + 1}}}" if dialect == "latex" else f"a{index + 1}"


def _format_decay_node(decay: Decay, node: DecayNode, dialect: str) -> str:
    def arg(index: int) -> str:
        if index == DECAY_HIDDEN:
            return _format_decay_node(decay, decay.hidden, dialect)
        return _base_name(index, dialect)

    table = DECAY_BINARY_OPS if node.binary else DECAY_UNARY_OPS
    op = table[node.binary_op if node.binary else node.unary_op]
    fmt = getattr(op, dialect)
    args = [arg(i) for i in node.inputs]
    return _fill_readable(fmt, *args) if dialect == "readable" else _fill(fmt, *args)


def format_decay(decay: Decay, dialect: Dialect = "paper") -> str:
    """A decay graph's text, e.g. ``(a13)*(a2)`` or ``1/(1+exp(-a11)`` (sic) in paper notation."""
    _check_dialect(dialect)
    return _format_decay_node(decay, decay.root, dialect)


def _decorate(decay_text: str, arg: str, dialect: str) -> str:
    if dialect == "paper":
        return f"[{decay_text}][{arg}]"
    if dialect == "latex":
        return f"{decay_text} \\cdot {arg}"
    return f"{_group(decay_text)}·{arg}"


def _format_node(genome: Genome, column: int, dialect: str) -> str:
    node = genome.node(column)
    args = []
    for child in node.inputs:
        if child < N_OPERANDS:
            text = getattr(OPERANDS[child], dialect if dialect != "paper" else "name")
        else:
            text = _format_node(genome, child, dialect)
        decay = node.decay_on(child)
        if decay is not None:
            text = _decorate(_format_decay_node(decay, decay.root, dialect), text, dialect)
        args.append(text)
    op = BINARY_OPS[node.binary_op] if node.binary else UNARY_OPS[node.unary_op]
    if dialect == "readable":
        return _fill_readable(op.readable, *args)
    return _fill(getattr(op, dialect), *args)


def format_equation(genome: Genome, dialect: Dialect = "paper") -> str:
    """The genome's update equation with its momentum prefix.

    ``dialect="paper"`` gives the released log's text exactly (``Nest ~ ...``); flip, inactive
    nodes, latent ops and decays on absent edges are never printed.
    """
    _check_dialect(dialect)
    body = _format_node(genome, ROOT, dialect)
    if dialect == "paper":
        return genome.momentum.prefix + body
    prefixes = _LATEX_PREFIX if dialect == "latex" else _READABLE_PREFIX
    return prefixes[genome.momentum] + body


def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise NOSError(f"unknown dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")
