"""The update-equation operations: identity + 25 unary and 10 binary.

Every op is elementwise on one parameter tensor except ``norm``, which reduces over the whole
tensor. Tensors may carry leading *batch* dimensions (the integrity check runs many sphere
problems at once); :attr:`OpContext.batch_dims` tells ``norm`` to keep them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from optuna_nos.space.arithmetic import DEFAULT_ARITHMETIC, Arithmetic

__all__ = [
    "BINARY_OPS",
    "EPS",
    "IDENTITY",
    "STATEFUL_UNARY",
    "UNARY_OPS",
    "BinaryOp",
    "OpContext",
    "UnaryOp",
]

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
    """One unary op. ``paper`` is the exact print format of the released log ({x} = argument)."""

    code: int
    name: str
    paper: str
    readable: str
    latex: str
    fn: StatelessFn | None = None
    step: StatefulFn | None = None

    @property
    def stateful(self) -> bool:
        """True for ops that keep one zero-initialised state per (node, parameter tensor)."""
        return self.step is not None


@dataclass(frozen=True)
class BinaryOp:
    """One binary op; ``paper`` uses {x} and {y} for the first and second argument."""

    code: int
    name: str
    paper: str
    readable: str
    latex: str
    fn: Callable[[Tensor, Tensor], Tensor]


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


def _u(code: int, name: str, paper: str, readable: str, latex: str, fn: StatelessFn) -> UnaryOp:
    return UnaryOp(code, name, paper, readable, latex, fn=fn)


UNARY_OPS: dict[int, UnaryOp] = {
    op.code: op
    for op in (
        _u(-1, "id", "id({x})", "{x}", "{x}", lambda x, c: x),
        _u(0, "neg", "-({x})", "-({x})", "-\\left({x}\\right)", lambda x, c: -x),
        _u(1, "log", "ln(|{x}|)", "ln|{x}|", "\\ln\\left|{x}\\right|",
           lambda x, c: torch.log(torch.abs(x) + EPS)),
        _u(2, "sqrt", "sqrt(|{x}|)", "sqrt|{x}|", "\\sqrt{\\left|{x}\\right|}",
           lambda x, c: torch.sqrt(torch.abs(x))),
        _u(3, "exp", "exp({x})", "exp({x})", "e^{{x}}", lambda x, c: torch.exp(x)),
        _u(4, "abs", "|{x}|", "|{x}|", "\\left|{x}\\right|", lambda x, c: torch.abs(x)),
        _u(5, "sigmoid", "sig({x})", "sigmoid({x})", "\\sigma\\left({x}\\right)",
           lambda x, c: torch.sigmoid(x)),
        _u(6, "deriv_soft", "1/(1+|{x}|)", "1/(1 + |{x}|)", "\\frac{1}{1+\\left|{x}\\right|}",
           lambda x, c: 1.0 / (1.0 + torch.abs(x))),
        _u(7, "softplus", "ln(|1+exp({x})|)", "softplus({x})",
           "\\ln\\left|1+e^{{x}}\\right|",
           lambda x, c: torch.log(torch.abs(1.0 + torch.exp(x)) + EPS)),
        _u(8, "erf", "erf({x})", "erf({x})", "\\operatorname{erf}\\left({x}\\right)",
           lambda x, c: torch.erf(x)),
        _u(9, "erfc", "erfc({x})", "erfc({x})", "\\operatorname{erfc}\\left({x}\\right)",
           lambda x, c: torch.erfc(x)),
        _u(10, "asinh", "arcsinh({x})", "asinh({x})", "\\sinh^{-1}\\left({x}\\right)",
           lambda x, c: torch.asinh(x)),
        _u(11, "tanh", "tanh({x})", "tanh({x})", "\\tanh\\left({x}\\right)",
           lambda x, c: torch.tanh(x)),
        _u(12, "atan", "arctan({x})", "atan({x})", "\\tan^{-1}\\left({x}\\right)",
           lambda x, c: torch.atan(x)),
        _u(13, "reciprocal", "1/({x})", "1/({x})", "\\frac{1}{{x}}",
           lambda x, c: 1.0 / (x + EPS)),
        _u(14, "i1e", "bessel_i1e({x})", "i1e({x})", "\\operatorname{i1e}\\left({x}\\right)",
           lambda x, c: torch.special.i1e(x)),
        _u(15, "relu", "max({x}, 0)", "max({x}, 0)", "\\max\\left({x}, 0\\right)",
           lambda x, c: torch.clamp(x, min=0.0)),
        _u(16, "min0", "min({x}, 0)", "min({x}, 0)", "\\min\\left({x}, 0\\right)",
           lambda x, c: torch.clamp(x, max=0.0)),
        _u(17, "drop50", "drop({x}, 0.5)", "dropout({x}, 0.5)",
           "\\operatorname{drop}_{0.5}\\left({x}\\right)", _dropout(0.5)),
        _u(18, "drop30", "drop({x}, 0.3)", "dropout({x}, 0.3)",
           "\\operatorname{drop}_{0.3}\\left({x}\\right)", _dropout(0.3)),
        _u(19, "drop10", "drop({x}, 0.1)", "dropout({x}, 0.1)",
           "\\operatorname{drop}_{0.1}\\left({x}\\right)", _dropout(0.1)),
        _u(20, "clip_norm", "norm({x})", "clipnorm({x})",
           "\\operatorname{clipnorm}\\left({x}\\right)", _clip_by_norm),
        _u(21, "softsign", "{x}/(1+|{x}|)", "softsign({x})",
           "\\frac{{x}}{1+\\left|{x}\\right|}", lambda x, c: x / (1.0 + torch.abs(x))),
    )
}
UNARY_OPS.update(
    {
        22: UnaryOp(22, "ema", "expMovAvg({x})", "ema({x})",
                    "\\operatorname{EMA}\\left({x}\\right)", step=_exp_mov_avg),
        23: UnaryOp(23, "delta", "deltaChange({x})", "delta({x})",
                    "\\Delta\\left({x}\\right)", step=_delta_change),
        24: UnaryOp(24, "running_max", "MaxValue({x})", "runmax({x})",
                    "\\operatorname{runmax}\\left({x}\\right)", step=_max_value),
    }
)
STATEFUL_UNARY: frozenset[int] = frozenset(c for c, op in UNARY_OPS.items() if op.stateful)

BINARY_OPS: dict[int, BinaryOp] = {
    op.code: op
    for op in (
        BinaryOp(0, "add", "({x})+({y})", "({x} + {y})", "\\left({x} + {y}\\right)",
                 lambda x, y: x + y),
        BinaryOp(1, "sub", "({x})-({y})", "({x} - {y})", "\\left({x} - {y}\\right)",
                 lambda x, y: x - y),
        BinaryOp(2, "mul", "({x})*({y})", "({x} · {y})", "\\left({x} \\cdot {y}\\right)",
                 lambda x, y: x * y),
        BinaryOp(3, "max", "max({x}, {y})", "max({x}, {y})", "\\max\\left({x}, {y}\\right)",
                 torch.maximum),
        BinaryOp(4, "min", "min({x}, {y})", "min({x}, {y})", "\\min\\left({x}, {y}\\right)",
                 torch.minimum),
        BinaryOp(5, "div", "({x}) / ({y})", "({x} / {y})", "\\frac{{x}}{{y}}",
                 lambda x, y: x / (y + EPS)),
        BinaryOp(6, "div_sqrt", "({x}) / (sqrt(1+({y})^2))", "({x} / sqrt(1 + ({y})²))",
                 "\\frac{{x}}{\\sqrt{1+\\left({y}\\right)^{2}}}",
                 lambda x, y: x / torch.sqrt(1.0 + y * y)),
        BinaryOp(7, "clip", "clip({x}, {y})", "clip({x}, ±|{y}|)",
                 "\\operatorname{clip}\\left({x}, \\pm\\left|{y}\\right|\\right)",
                 lambda x, y: torch.clamp(x, -torch.abs(y), torch.abs(y))),
        BinaryOp(8, "blend", "(0.95*({x})+0.05*({y}))", "(0.95·{x} + 0.05·{y})",
                 "\\left(0.95 {x} + 0.05 {y}\\right)", lambda x, y: 0.95 * x + 0.05 * y),
        BinaryOp(9, "pow", "(|{x}|)^({y})", "|{x}|^({y})", "\\left|{x}\\right|^{{y}}",
                 _power),
    )
}
