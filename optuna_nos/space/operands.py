"""The 20 operands of the update equation.

An operand reads the current gradient ``g``, the parameter ``w`` and the three EMA states
``v`` (of g), ``s`` (of g^2) and ``lam`` (of g^3), all taken after this step's EMA update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from optuna_nos.space.arithmetic import DEFAULT_ARITHMETIC, Arithmetic

__all__ = [
    "AGGMO_BETAS",
    "AGGMO_OPERANDS",
    "EMA_BETAS",
    "N_OPERANDS",
    "OPERANDS",
    "Operand",
    "OperandInputs",
]

#: Decay rates of the three EMA states v, s and lam.
EMA_BETAS: tuple[float, float, float] = (0.9, 0.99, 0.999)
#: Nonzero momentum coefficients of the AggMo operands of v, s and lam (the third is 0).
AGGMO_BETAS: tuple[tuple[float, float], ...] = ((0.9, 0.999), (0.99, 0.999), (0.999, 0.9999))
N_OPERANDS = 20


@dataclass
class OperandInputs:
    """What the operands of one parameter tensor read at 0-based step ``t``.

    ``arithmetic`` fixes the bias corrections 1 - beta^(t+1) and ``sign`` (float64 and torch's
    sign by default; the released code's float32 values and sign(NaN) = NaN in paper mode).
    """

    g: Tensor
    w: Tensor
    v: Tensor
    s: Tensor
    lam: Tensor
    t: int
    arithmetic: Arithmetic = field(default=DEFAULT_ARITHMETIC)

    def _hat(self, state: Tensor, index: int) -> Tensor:
        return state / self.arithmetic.bias_correction(EMA_BETAS[index], self.t + 1)

    @cached_property
    def v_hat(self) -> Tensor:
        return self._hat(self.v, 0)

    @cached_property
    def s_hat(self) -> Tensor:
        return self._hat(self.s, 1)

    @cached_property
    def lam_hat(self) -> Tensor:
        return self._hat(self.lam, 2)


@dataclass(frozen=True)
class Operand:
    """One leaf of the update graph: its index, its exact paper name and its value.

    ``source`` is the Python text :mod:`optuna_nos.optim.export` writes for it (over ``g``, ``w``,
    ``v``, ``s``, ``lam`` and their ``_hat``s); {keepK} and {newK} stand for beta and 1 - beta
    of ``betas[K]``, filled in by :meth:`code`. ``aggmo`` marks the AggMo means, which read the
    raw EMA state.
    """

    index: int
    name: str
    readable: str
    latex: str
    fn: Callable[[OperandInputs], Tensor]
    source: str
    betas: tuple[float, ...] = ()
    aggmo: bool = False

    def code(self, arithmetic: Arithmetic) -> str:
        """``source`` with the constants of ``arithmetic``, as :attr:`fn` computes with them."""
        constants: dict[str, str] = {}
        for k, beta in enumerate(self.betas):
            keep, new = arithmetic.coefficients(beta)
            constants[f"keep{k}"], constants[f"new{k}"] = repr(keep), repr(new)
        return self.source.format(**constants)


_QHM_SOURCE = "{new0} * %s + {keep0} * %s"
_AGGMO_SOURCE = "(-{x} + ({{keep0}} * {state} - {x}) + ({{keep1}} * {state} - {x})) / 3.0"

OPERANDS: tuple[Operand, ...] = (
    Operand(0, "g", "g", "g", lambda o: o.g, "g"),
    Operand(1, "g^2", "g²", "g^{2}", lambda o: o.g * o.g, "g * g"),
    Operand(2, "g^3", "g³", "g^{3}", lambda o: o.g * o.g * o.g, "g * g * g"),
    Operand(3, "v hat", "v̂", r"\hat{v}", lambda o: o.v_hat, "v_hat"),
    Operand(4, "s hat", "ŝ", r"\hat{s}", lambda o: o.s_hat, "s_hat"),
    Operand(5, "lam hat", "λ̂", r"\hat{\lambda}", lambda o: o.lam_hat, "lam_hat"),
    Operand(6, "1", "1", "1", lambda o: torch.ones_like(o.g), "torch.ones_like(g)"),
    Operand(7, "2", "2", "2", lambda o: torch.full_like(o.g, 2.0), "torch.full_like(g, 2.0)"),
    Operand(8, "10-6w", "1e-6·w", r"10^{-6} w", lambda o: 1e-6 * o.w, "1e-06 * w"),
    Operand(9, "10-5w", "1e-5·w", r"10^{-5} w", lambda o: 1e-5 * o.w, "1e-05 * w"),
    Operand(10, "10-4w", "1e-4·w", r"10^{-4} w", lambda o: 1e-4 * o.w, "0.0001 * w"),
    Operand(11, "10-3w", "1e-3·w", r"10^{-3} w", lambda o: 1e-3 * o.w, "0.001 * w"),
    Operand(
        12,
        "sign(g)",
        "sign(g)",
        r"\operatorname{sign}(g)",
        lambda o: o.arithmetic.sign(o.g),
        "_sign(g)",
    ),
    Operand(
        13,
        "sign(v hat)",
        "sign(v̂)",
        r"\operatorname{sign}(\hat{v})",
        lambda o: o.arithmetic.sign(o.v_hat),
        "_sign(v_hat)",
    ),
    Operand(
        14,
        "((1-0.7)*g+0.7*v hat)",
        "(0.3·g + 0.7·v̂)",
        r"(0.3 g + 0.7 \hat{v})",
        lambda o: o.arithmetic.qhm(o.g, o.v_hat, 0.7),
        _QHM_SOURCE % ("g", "v_hat"),
        (0.7,),
    ),
    Operand(
        15,
        "((1-0.95)*g^2+0.95*s hat)",
        "(0.05·g² + 0.95·ŝ)",
        r"(0.05 g^{2} + 0.95 \hat{s})",
        lambda o: o.arithmetic.qhm(o.g * o.g, o.s_hat, 0.95),
        _QHM_SOURCE % ("(g * g)", "s_hat"),
        (0.95,),
    ),
    # The printed name says g^2 but the released code uses g^3.
    Operand(
        16,
        "((1-0.99)*g^2+0.99*lam hat)",
        "(0.01·g³ + 0.99·λ̂)",
        r"(0.01 g^{3} + 0.99 \hat{\lambda})",
        lambda o: o.arithmetic.qhm(o.g * o.g * o.g, o.lam_hat, 0.99),
        _QHM_SOURCE % ("(g * g * g)", "lam_hat"),
        (0.99,),
    ),
    Operand(
        17,
        "mean(beta*v-g)",
        "aggmo_v",
        r"\operatorname{AggMo}_{v}",
        lambda o: o.arithmetic.aggmo(o.v, o.g, AGGMO_BETAS[0]),
        _AGGMO_SOURCE.format(x="g", state="v"),
        AGGMO_BETAS[0],
        aggmo=True,
    ),
    Operand(
        18,
        "mean(beta*s-g^2)",
        "aggmo_s",
        r"\operatorname{AggMo}_{s}",
        lambda o: o.arithmetic.aggmo(o.s, o.g * o.g, AGGMO_BETAS[1]),
        _AGGMO_SOURCE.format(x="(g * g)", state="s"),
        AGGMO_BETAS[1],
        aggmo=True,
    ),
    Operand(
        19,
        "mean(beta*lam-g^3)",
        "aggmo_lam",
        r"\operatorname{AggMo}_{\lambda}",
        lambda o: o.arithmetic.aggmo(o.lam, o.g * o.g * o.g, AGGMO_BETAS[2]),
        _AGGMO_SOURCE.format(x="(g * g * g)", state="lam"),
        AGGMO_BETAS[2],
        aggmo=True,
    ),
)
#: The AggMo operands, reading the raw v, s and lam in that order.
AGGMO_OPERANDS: tuple[int, ...] = tuple(op.index for op in OPERANDS if op.aggmo)
