"""Decay functions: 14 base schedules of t/T and the two-node decay graph.

A decay is a small graph evaluated over the whole run, t = 0..T-1. Its hidden node ``D``
reads base schedules; its root ``R`` reads base schedules or ``D``. The decay's value at step
t multiplies the value flowing along one edge of the update graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from optuna_nos.core.errors import NOSError
from optuna_nos.space.update_ops import BINARY_OPS, BinaryOp, deriv_soft, deriv_tanh, softsign

__all__ = [
    "BASE_SCHEDULES",
    "BASE_SOURCES",
    "DECAY_BINARY_OPS",
    "DECAY_HIDDEN",
    "DECAY_UNARY_OPS",
    "N_BASE_SCHEDULES",
    "VALIDITY_T",
    "Decay",
    "DecayNode",
    "DecayOp",
    "base_schedule",
    "decay_phenotype",
    "decay_values",
    "is_valid_decay",
]

N_BASE_SCHEDULES = 14
#: Input index of the decay graph's hidden node D (base schedules are 0..13 = a1..a14).
DECAY_HIDDEN = 14
#: Horizon on which a decay's validity and phenotype are judged.
VALIDITY_T = 100


def _beta(t: Tensor, total: int) -> Tensor:
    return 0.95 * (1.0 - (t + 1.0) / total)


def _a13(t: Tensor, total: int) -> Tensor:
    beta = _beta(t, total)
    return beta / ((1.0 - 0.95) + beta)


#: a1..a14 of t = 0..n-1 and n = T: each schedule's function and its exported Python text.
_BASE_TABLE: tuple[tuple[Callable[[Tensor, int], Tensor], str], ...] = (
    (lambda t, n: 1.0 - t / n, "1.0 - t / n"),
    (lambda t, n: t / n, "t / n"),
    (
        lambda t, n: 0.5 * (1.0 + torch.cos(math.pi * t / n)),
        "0.5 * (1.0 + torch.cos(math.pi * t / n))",
    ),
    (
        lambda t, n: 0.5 * (1.0 - torch.cos(math.pi * t / n)),
        "0.5 * (1.0 - torch.cos(math.pi * t / n))",
    ),
    (
        lambda t, n: 0.5 * (1.0 + torch.cos(2.0 * math.pi * t / n)),
        "0.5 * (1.0 + torch.cos(2.0 * math.pi * t / n))",
    ),
    (
        lambda t, n: 0.5 * (1.0 - torch.cos(2.0 * math.pi * t / n)),
        "0.5 * (1.0 - torch.cos(2.0 * math.pi * t / n))",
    ),
    (
        lambda t, n: 0.5 * (1.0 + torch.cos(math.pi * (torch.remainder(2.0 * t, n) / n))),
        "0.5 * (1.0 + torch.cos(math.pi * (torch.remainder(2.0 * t, n) / n)))",
    ),
    (
        lambda t, n: 0.5 * (1.0 - torch.cos(math.pi * (torch.remainder(2.0 * t, n) / n))),
        "0.5 * (1.0 - torch.cos(math.pi * (torch.remainder(2.0 * t, n) / n)))",
    ),
    (lambda t, n: 1.0 - torch.remainder(2.0 * t, n) / n, "1.0 - torch.remainder(2.0 * t, n) / n"),
    (lambda t, n: torch.remainder(2.0 * t, n) / n, "torch.remainder(2.0 * t, n) / n"),
    (
        lambda t, n: torch.pow(torch.tensor(0.01, dtype=t.dtype), t / n),
        "torch.pow(torch.tensor(0.01, dtype=t.dtype), t / n)",
    ),
    (
        lambda t, n: 1.0 - torch.pow(torch.tensor(0.01, dtype=t.dtype), t / n),
        "1.0 - torch.pow(torch.tensor(0.01, dtype=t.dtype), t / n)",
    ),
    (_a13, "_a13(t, n)"),
    (lambda t, n: 0.95 - _a13(t, n), "0.95 - _a13(t, n)"),  # a14 (search-space form)
)
_BASE: tuple[Callable[[Tensor, int], Tensor], ...] = tuple(fn for fn, _ in _BASE_TABLE)
#: The Python text of a1..a14 that :mod:`optuna_nos.optim.export` writes (``_a13`` is its helper).
BASE_SOURCES: tuple[str, ...] = tuple(source for _, source in _BASE_TABLE)


def _a14_prime(t: Tensor, total: int) -> Tensor:
    beta = _beta(t, total)
    return (0.95 - beta) / (0.05 + beta)


#: The base schedules by name; ``a14_prime`` is the variant only LR schedule #2 uses.
BASE_SCHEDULES: dict[str, Callable[[Tensor, int], Tensor]] = {
    **{f"a{k + 1}": fn for k, fn in enumerate(_BASE)},
    "a14_prime": _a14_prime,
}


def base_schedule(name: str, total_steps: int) -> Tensor:
    """Base schedule ``name`` (``"a1"``..``"a14"``, ``"a14_prime"``) over t = 0..T-1, float64."""
    if name not in BASE_SCHEDULES:
        raise NOSError(f"unknown base schedule {name!r}; known: {', '.join(BASE_SCHEDULES)}")
    if total_steps < 1:
        raise NOSError(f"total_steps must be >= 1, got {total_steps}")
    t = torch.arange(total_steps, dtype=torch.float64)
    return BASE_SCHEDULES[name](t, total_steps)


@dataclass(frozen=True)
class DecayOp:
    """A unary decay op: ``paper`` is the exact print format, ``source`` the exported Python
    text ({x} = argument); ``fn`` works on float64 vectors."""

    code: int
    name: str
    paper: str
    readable: str
    latex: str
    fn: Callable[[Tensor], Tensor]
    source: str


def _sig(x: Tensor) -> Tensor:
    return torch.sigmoid(x)


DECAY_UNARY_OPS: dict[int, DecayOp] = {
    op.code: op
    for op in (
        # The released notation drops one closing parenthesis here; keep it.
        DecayOp(
            0,
            "sigmoid",
            "1/(1+exp(-{x})",
            "sigmoid({x})",
            "\\sigma\\left({x}\\right)",
            _sig,
            "torch.sigmoid({x})",
        ),
        DecayOp(
            1,
            "deriv_soft",
            "deriv_soft({x})",
            "1/(1 + |{x}|)",
            "\\frac{1}{1+\\left|{x}\\right|}",
            deriv_soft,
            "1.0 / (1.0 + torch.abs({x}))",
        ),
        DecayOp(
            2,
            "erf",
            "erf({x})",
            "erf({x})",
            "\\operatorname{erf}\\left({x}\\right)",
            torch.erf,
            "torch.erf({x})",
        ),
        DecayOp(
            3,
            "erfc",
            "erfc({x})",
            "erfc({x})",
            "\\operatorname{erfc}\\left({x}\\right)",
            torch.erfc,
            "torch.erfc({x})",
        ),
        DecayOp(
            4,
            "tanh",
            "tanh({x})",
            "tanh({x})",
            "\\tanh\\left({x}\\right)",
            torch.tanh,
            "torch.tanh({x})",
        ),
        DecayOp(
            5,
            "atan",
            "arctan({x})",
            "atan({x})",
            "\\tan^{-1}\\left({x}\\right)",
            torch.atan,
            "torch.atan({x})",
        ),
        DecayOp(
            6,
            "i1e",
            "bessel_i1e({x})",
            "i1e({x})",
            "\\operatorname{i1e}\\left({x}\\right)",
            torch.special.i1e,
            "torch.special.i1e({x})",
        ),
        DecayOp(
            7,
            "square",
            "({x})^2",
            "({x})²",
            "\\left({x}\\right)^{2}",
            lambda x: x * x,
            "{x} * {x}",
        ),
        DecayOp(
            8,
            "sqrt",
            "sqrt({x})",
            "sqrt|{x}|",
            "\\sqrt{\\left|{x}\\right|}",
            lambda x: torch.sqrt(torch.abs(x)),
            "torch.sqrt(torch.abs({x}))",
        ),
        DecayOp(
            9,
            "softsign",
            "{x}/(1+|{x}|)",
            "softsign({x})",
            "\\frac{{x}}{1+\\left|{x}\\right|}",
            softsign,
            "{x} / (1.0 + torch.abs({x}))",
        ),
        DecayOp(
            10,
            "deriv_tanh",
            "deriv_tanh({x})",
            "(1 - tanh²({x}))",
            "\\left(1-\\tanh^{2}\\left({x}\\right)\\right)",
            deriv_tanh,
            "1.0 - torch.tanh({x}) ** 2",
        ),
        DecayOp(
            11,
            "deriv_sig",
            "deriv_sig({x})",
            "sigmoid'({x})",
            "\\sigma'\\left({x}\\right)",
            lambda x: _sig(x) * (1.0 - _sig(x)),
            "torch.sigmoid({x}) * (1.0 - torch.sigmoid({x}))",
        ),
        DecayOp(12, "id", "id({x})", "{x}", "{x}", lambda x: x, "{x}"),
    )
}

#: The binary decay ops are the update equation's first seven binary ops, add .. div_sqrt.
DECAY_BINARY_OPS: dict[int, BinaryOp] = {code: BINARY_OPS[code] for code in range(7)}


@dataclass(frozen=True)
class DecayNode:
    """One node of a decay graph: its arity is ``len(inputs)``; both latent ops are kept."""

    inputs: tuple[int, ...]
    unary_op: int = 12
    binary_op: int = 0

    @property
    def binary(self) -> bool:
        return len(self.inputs) == 2

    @property
    def op(self) -> DecayOp | BinaryOp:
        return DECAY_BINARY_OPS[self.binary_op] if self.binary else DECAY_UNARY_OPS[self.unary_op]


@dataclass(frozen=True)
class Decay:
    """A two-node decay graph. ``hidden`` (D) counts only when ``root`` (R) reads it.

    ``hidden_flag`` is the released code's sticky "D is active" mark, kept so that paper mode
    can reproduce which node a decay mutation picks.
    """

    root: DecayNode
    hidden: DecayNode = field(default_factory=lambda: DecayNode(inputs=(0,)))
    hidden_flag: bool = False

    def __post_init__(self) -> None:
        _check_decay_node(self.hidden, "decay hidden node", allow_hidden=False)
        _check_decay_node(self.root, "decay root", allow_hidden=True)

    @property
    def uses_hidden(self) -> bool:
        """True when R reads D, i.e. D takes part in the decay's value."""
        return DECAY_HIDDEN in self.root.inputs


def _check_decay_node(node: DecayNode, what: str, *, allow_hidden: bool) -> None:
    if len(node.inputs) not in (1, 2):
        raise NOSError(f"{what} must have 1 or 2 inputs, got {len(node.inputs)}")
    if node.unary_op not in DECAY_UNARY_OPS:
        raise NOSError(f"{what} has unknown unary decay op {node.unary_op!r} (allowed 0..12)")
    if node.binary_op not in DECAY_BINARY_OPS:
        raise NOSError(f"{what} has unknown binary decay op {node.binary_op!r} (allowed 0..6)")
    top = DECAY_HIDDEN if allow_hidden else N_BASE_SCHEDULES - 1
    for index in node.inputs:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= top:
            raise NOSError(f"{what} has input {index!r} outside 0..{top}")
    if len(set(node.inputs)) != len(node.inputs):
        raise NOSError(f"{what} uses input {node.inputs[0]} twice")


def _eval_node(node: DecayNode, read: Callable[[int], Tensor]) -> Tensor:
    if node.binary:
        return DECAY_BINARY_OPS[node.binary_op].fn(read(node.inputs[0]), read(node.inputs[1]))
    return DECAY_UNARY_OPS[node.unary_op].fn(read(node.inputs[0]))


def decay_values(decay: Decay, total_steps: int) -> Tensor:
    """The decay's multiplier for t = 0..total_steps-1, float64."""
    if total_steps < 1:
        raise NOSError(f"total_steps must be >= 1, got {total_steps}")
    t = torch.arange(total_steps, dtype=torch.float64)
    cache: dict[int, Tensor] = {}

    def read(index: int) -> Tensor:
        if index not in cache:
            if index == DECAY_HIDDEN:
                cache[index] = _eval_node(decay.hidden, read)
            else:
                cache[index] = _BASE[index](t, total_steps)
        return cache[index]

    return _eval_node(decay.root, read)


def decay_phenotype(decay: Decay) -> Tensor:
    """The decay's 100-vector at T = 100, used for validity and for telling decays apart."""
    return decay_values(decay, VALIDITY_T)


def is_valid_decay(decay: Decay, *, nan_valid: bool = False) -> bool:
    """Whether no value lies below 0 or above 1 at T = 100.

    With ``nan_valid`` (paper mode) NaN passes, as comparisons with NaN are false; otherwise
    any non-finite value is invalid.
    """
    values = decay_phenotype(decay)
    out_of_range = bool(((values < 0.0) | (values > 1.0)).any())
    if nan_valid:
        return not out_of_range
    return not out_of_range and bool(torch.isfinite(values).all())
