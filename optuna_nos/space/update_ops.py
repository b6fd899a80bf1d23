"""The update-equation operations: identity + 25 unary and 10 binary.

Every op is elementwise on one parameter tensor except ``norm``, which reduces over the whole
tensor. Tensors may carry leading *batch* dimensions (the integrity check runs many sphere
problems at once); :attr:`OpContext.batch_dims` tells ``norm`` to keep them.

Each table entry holds all there is to know about its op: the torch function, the print
formats (paper, readable, LaTeX) and ``source``, the Python text :mod:`optuna_nos.optim.export`
writes for it (it issues the same float operations as ``fn``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from optuna_nos.space.arithmetic import DEFAULT_ARITHMETIC, Arithmetic

__all__ = [
    "BINARY_OPS",
    "DROPOUT_OPS",
    "EPS",
    "IDENTITY",
    "STATEFUL_UNARY",
    "UNARY_OPS",
    "BinaryOp",
    "OpContext",
    "UnaryOp",
    "clip",
    "deriv_soft",
    "deriv_tanh",
    "softsign",
]

#: The epsilon (Keras's default) of every op and published optimizer that adds one.
EPS = 1e-7
IDENTITY = -1


@dataclass
class OpContext:
    """What the few non-elementwise unary ops need besides their argument.

    ``generator`` drives dropout masks; ``batch_dims`` leading dims are independent problems
    (``norm`` reduces over the rest); ``ema_bias_step`` is the exponent k of ``expMovAvg``'s
    bias correction 1 - 0.95^k (t+1 by default, 0 in paper mode); ``arithmetic`` its constants
    (float64 by default, the released code's float32 values in paper mode).
    """

    generator: torch.Generator | None = None
    batch_dims: int = 0
    ema_bias_step: int = 1
    arithmetic: Arithmetic = field(default=DEFAULT_ARITHMETIC)


#: A stateless unary op maps (x, ctx) -> out; a stateful one maps (x, state, ctx) -> (out, state).
StatelessFn = Callable[[Tensor, OpContext], Tensor]
StatefulFn = Callable[[Tensor, Tensor, OpContext], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class UnaryOp:
    """One unary op. ``paper`` is the exact print format of the released log ({x} = argument).

    ``source`` is the exported Python expression ({x} = argument; for a stateful op the output,
    from the new state {n} and the bias exponent {k}); ``state_source`` is a stateful op's new
    state from {x} and the old state {n}. ``dropout_rate`` marks the dropout ops.
    """

    code: int
    name: str
    paper: str
    readable: str
    latex: str
    source: str
    fn: StatelessFn | None = None
    step: StatefulFn | None = None
    state_source: str | None = None
    dropout_rate: float | None = None

    @property
    def stateful(self) -> bool:
        """True for ops that keep one zero-initialised state per (node, parameter tensor)."""
        return self.step is not None


@dataclass(frozen=True)
class BinaryOp:
    """One binary op; ``paper`` and ``source`` use {x} and {y} for the two arguments."""

    code: int
    name: str
    paper: str
    readable: str
    latex: str
    fn: Callable[[Tensor, Tensor], Tensor]
    source: str


def _dropout(rate: float) -> StatelessFn:
    def drop(x: Tensor, ctx: OpContext) -> Tensor:
        keep = torch.rand(x.shape, generator=ctx.generator, device=x.device) >= rate
        return torch.where(keep, x / (1.0 - rate), torch.zeros_like(x))

    return drop


def _clip_by_norm(x: Tensor, ctx: OpContext) -> Tensor:
    """x * min(1, 1/||x||), the norm over every non-batch dimension."""
    dims = tuple(range(ctx.batch_dims, x.dim()))
    norm = torch.linalg.vector_norm(x, dim=dims, keepdim=True) if dims else x.abs()
    return x * torch.clamp(1.0 / norm, max=1.0)


def _exp_mov_avg(x: Tensor, n: Tensor, ctx: OpContext) -> tuple[Tensor, Tensor]:
    """n <- 0.95 n + (1 - 0.95) x ; out = n / (1 - 0.95^k), k = ``ctx.ema_bias_step``."""
    arithmetic = ctx.arithmetic
    keep, new = arithmetic.coefficients(0.95)
    n = keep * n + new * x
    return n / arithmetic.bias_correction(0.95, ctx.ema_bias_step), n


def _delta_change(x: Tensor, n: Tensor, ctx: OpContext) -> tuple[Tensor, Tensor]:
    n = x - n
    return n, n


def _max_value(x: Tensor, n: Tensor, ctx: OpContext) -> tuple[Tensor, Tensor]:
    n = torch.maximum(x, n)
    return n, n


def _power(x: Tensor, y: Tensor) -> Tensor:
    """|x|^y with 0^0 = 1 and 0^(negative) = inf, as torch.pow gives."""
    return torch.pow(torch.abs(x), y)


def softsign(x: Tensor) -> Tensor:
    """softsign(x) = x / (1 + |x|)."""
    return x / (1.0 + torch.abs(x))


def deriv_soft(x: Tensor) -> Tensor:
    """deriv_soft(x) = 1 / (1 + |x|), the derivative of softsign."""
    return 1.0 / (1.0 + torch.abs(x))


def deriv_tanh(x: Tensor) -> Tensor:
    """D(x) = 1 - tanh(x)^2, the derivative of tanh."""
    return 1.0 - torch.tanh(x) ** 2


def clip(x: Tensor, bound: Tensor) -> Tensor:
    """clip(x, c) = clip(x, -|c|, |c|), elementwise."""
    return torch.clamp(x, -torch.abs(bound), torch.abs(bound))


def _u(
    code: int, name: str, paper: str, readable: str, latex: str, fn: StatelessFn, source: str
) -> UnaryOp:
    return UnaryOp(code, name, paper, readable, latex, source, fn=fn)


def _drop(code: int, rate: float) -> UnaryOp:
    latex = f"\\operatorname{{drop}}_{{{rate}}}\\left({{x}}\\right)"
    return UnaryOp(
        code,
        f"drop{round(rate * 100)}",
        f"drop({{x}}, {rate})",
        f"dropout({{x}}, {rate})",
        latex,
        f"_dropout({{x}}, {rate}, generator)",
        fn=_dropout(rate),
        dropout_rate=rate,
    )


UNARY_OPS: dict[int, UnaryOp] = {
    op.code: op
    for op in (
        _u(-1, "id", "id({x})", "{x}", "{x}", lambda x, c: x, "{x}"),
        _u(0, "neg", "-({x})", "-({x})", "-\\left({x}\\right)", lambda x, c: -x, "-{x}"),
        _u(
            1,
            "log",
            "ln(|{x}|)",
            "ln|{x}|",
            "\\ln\\left|{x}\\right|",
            lambda x, c: torch.log(torch.abs(x) + EPS),
            "torch.log(torch.abs({x}) + EPS)",
        ),
        _u(
            2,
            "sqrt",
            "sqrt(|{x}|)",
            "sqrt|{x}|",
            "\\sqrt{\\left|{x}\\right|}",
            lambda x, c: torch.sqrt(torch.abs(x)),
            "torch.sqrt(torch.abs({x}))",
        ),
        _u(
            3,
            "exp",
            "exp({x})",
            "exp({x})",
            "e^{{x}}",
            lambda x, c: torch.exp(x),
            "torch.exp({x})",
        ),
        _u(
            4,
            "abs",
            "|{x}|",
            "|{x}|",
            "\\left|{x}\\right|",
            lambda x, c: torch.abs(x),
            "torch.abs({x})",
        ),
        _u(
            5,
            "sigmoid",
            "sig({x})",
            "sigmoid({x})",
            "\\sigma\\left({x}\\right)",
            lambda x, c: torch.sigmoid(x),
            "torch.sigmoid({x})",
        ),
        _u(
            6,
            "deriv_soft",
            "1/(1+|{x}|)",
            "1/(1 + |{x}|)",
            "\\frac{1}{1+\\left|{x}\\right|}",
            lambda x, c: deriv_soft(x),
            "1.0 / (1.0 + torch.abs({x}))",
        ),
        _u(
            7,
            "softplus",
            "ln(|1+exp({x})|)",
            "softplus({x})",
            "\\ln\\left|1+e^{{x}}\\right|",
            lambda x, c: torch.log(torch.abs(1.0 + torch.exp(x)) + EPS),
            "torch.log(torch.abs(1.0 + torch.exp({x})) + EPS)",
        ),
        _u(
            8,
            "erf",
            "erf({x})",
            "erf({x})",
            "\\operatorname{erf}\\left({x}\\right)",
            lambda x, c: torch.erf(x),
            "torch.erf({x})",
        ),
        _u(
            9,
            "erfc",
            "erfc({x})",
            "erfc({x})",
            "\\operatorname{erfc}\\left({x}\\right)",
            lambda x, c: torch.erfc(x),
            "torch.erfc({x})",
        ),
        _u(
            10,
            "asinh",
            "arcsinh({x})",
            "asinh({x})",
            "\\sinh^{-1}\\left({x}\\right)",
            lambda x, c: torch.asinh(x),
            "torch.asinh({x})",
        ),
        _u(
            11,
            "tanh",
            "tanh({x})",
            "tanh({x})",
            "\\tanh\\left({x}\\right)",
            lambda x, c: torch.tanh(x),
            "torch.tanh({x})",
        ),
        _u(
            12,
            "atan",
            "arctan({x})",
            "atan({x})",
            "\\tan^{-1}\\left({x}\\right)",
            lambda x, c: torch.atan(x),
            "torch.atan({x})",
        ),
        _u(
            13,
            "reciprocal",
            "1/({x})",
            "1/({x})",
            "\\frac{1}{{x}}",
            lambda x, c: 1.0 / (x + EPS),
            "1.0 / ({x} + EPS)",
        ),
        _u(
            14,
            "i1e",
            "bessel_i1e({x})",
            "i1e({x})",
            "\\operatorname{i1e}\\left({x}\\right)",
            lambda x, c: torch.special.i1e(x),
            "torch.special.i1e({x})",
        ),
        _u(
            15,
            "relu",
            "max({x}, 0)",
            "max({x}, 0)",
            "\\max\\left({x}, 0\\right)",
            lambda x, c: torch.clamp(x, min=0.0),
            "torch.clamp({x}, min=0.0)",
        ),
        _u(
            16,
            "min0",
            "min({x}, 0)",
            "min({x}, 0)",
            "\\min\\left({x}, 0\\right)",
            lambda x, c: torch.clamp(x, max=0.0),
            "torch.clamp({x}, max=0.0)",
        ),
        _drop(17, 0.5),
        _drop(18, 0.3),
        _drop(19, 0.1),
        _u(
            20,
            "clip_norm",
            "norm({x})",
            "clipnorm({x})",
            "\\operatorname{clipnorm}\\left({x}\\right)",
            _clip_by_norm,
            "_clip_by_norm({x})",
        ),
        _u(
            21,
            "softsign",
            "{x}/(1+|{x}|)",
            "softsign({x})",
            "\\frac{{x}}{1+\\left|{x}\\right|}",
            lambda x, c: softsign(x),
            "{x} / (1.0 + torch.abs({x}))",
        ),
        UnaryOp(
            22,
            "ema",
            "expMovAvg({x})",
            "ema({x})",
            "\\operatorname{EMA}\\left({x}\\right)",
            "{n} / _bias(0.95, {k})",
            step=_exp_mov_avg,
            state_source="KEEP_95 * {n} + NEW_95 * {x}",
        ),
        UnaryOp(
            23,
            "delta",
            "deltaChange({x})",
            "delta({x})",
            "\\Delta\\left({x}\\right)",
            "{n}",
            step=_delta_change,
            state_source="{x} - {n}",
        ),
        UnaryOp(
            24,
            "running_max",
            "MaxValue({x})",
            "runmax({x})",
            "\\operatorname{runmax}\\left({x}\\right)",
            "{n}",
            step=_max_value,
            state_source="torch.maximum({x}, {n})",
        ),
    )
}
STATEFUL_UNARY: frozenset[int] = frozenset(c for c, op in UNARY_OPS.items() if op.stateful)
DROPOUT_OPS: frozenset[int] = frozenset(
    c for c, op in UNARY_OPS.items() if op.dropout_rate is not None
)

BINARY_OPS: dict[int, BinaryOp] = {
    op.code: op
    for op in (
        BinaryOp(
            0,
            "add",
            "({x})+({y})",
            "({x} + {y})",
            "\\left({x} + {y}\\right)",
            lambda x, y: x + y,
            "{x} + {y}",
        ),
        BinaryOp(
            1,
            "sub",
            "({x})-({y})",
            "({x} - {y})",
            "\\left({x} - {y}\\right)",
            lambda x, y: x - y,
            "{x} - {y}",
        ),
        BinaryOp(
            2,
            "mul",
            "({x})*({y})",
            "({x} · {y})",
            "\\left({x} \\cdot {y}\\right)",
            lambda x, y: x * y,
            "{x} * {y}",
        ),
        BinaryOp(
            3,
            "max",
            "max({x}, {y})",
            "max({x}, {y})",
            "\\max\\left({x}, {y}\\right)",
            torch.maximum,
            "torch.maximum({x}, {y})",
        ),
        BinaryOp(
            4,
            "min",
            "min({x}, {y})",
            "min({x}, {y})",
            "\\min\\left({x}, {y}\\right)",
            torch.minimum,
            "torch.minimum({x}, {y})",
        ),
        BinaryOp(
            5,
            "div",
            "({x}) / ({y})",
            "({x} / {y})",
            "\\frac{{x}}{{y}}",
            lambda x, y: x / (y + EPS),
            "{x} / ({y} + EPS)",
        ),
        BinaryOp(
            6,
            "div_sqrt",
            "({x}) / (sqrt(1+({y})^2))",
            "({x} / sqrt(1 + ({y})²))",
            "\\frac{{x}}{\\sqrt{1+\\left({y}\\right)^{2}}}",
            lambda x, y: x / torch.sqrt(1.0 + y * y),
            "{x} / torch.sqrt(1.0 + {y} * {y})",
        ),
        BinaryOp(
            7,
            "clip",
            "clip({x}, {y})",
            "clip({x}, ±|{y}|)",
            "\\operatorname{clip}\\left({x}, \\pm\\left|{y}\\right|\\right)",
            clip,
            "torch.clamp({x}, -torch.abs({y}), torch.abs({y}))",
        ),
        BinaryOp(
            8,
            "blend",
            "(0.95*({x})+0.05*({y}))",
            "(0.95·{x} + 0.05·{y})",
            "\\left(0.95 {x} + 0.05 {y}\\right)",
            lambda x, y: 0.95 * x + 0.05 * y,
            "0.95 * {x} + 0.05 * {y}",
        ),
        BinaryOp(
            9,
            "pow",
            "(|{x}|)^({y})",
            "|{x}|^({y})",
            "\\left|{x}\\right|^{{y}}",
            _power,
            "torch.pow(torch.abs({x}), {y})",
        ),
    )
}
