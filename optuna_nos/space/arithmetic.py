"""How the moving averages and ``sign`` are computed: the paper's form, float64 or float32.

Every exponential moving average of the update equation (v, s, lam and ``expMovAvg``) is

    m <- beta * m + (1 - beta) * x          (two products, then one sum)

never the lerp m + (1 - beta) (x - m), which turns m = x = inf into NaN. Its bias correction
is 1 - beta^k. Two columns:

* default: beta, 1 - beta and 1 - beta^k are float64 (1 - beta is the nearest double to the
  decimal: 0.1, 0.01, 0.001, 0.05) and ``sign`` is torch's, with sign(NaN) = 0;
* faithful (paper mode): as the released code, beta is a float32 constant, 1 - beta a float32
  subtraction (1 - 0.9 = 0.10000002, 1 - 0.99 = 0.00999999, 1 - 0.999 = 0.00099998713) and
  1 - beta^k a float32 ``pow`` and subtraction (for beta = 0.999 that is 2e-5 off at k = 2);
  sign(NaN) is NaN.

The same constants serve the operands that blend or aggregate with a beta: the QHM blends
(1 - beta) g^k + beta hat and the AggMo means.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from optuna_nos.core.settings import Settings

__all__ = ["DEFAULT_ARITHMETIC", "Arithmetic"]


@lru_cache(maxsize=64)
def _coefficients(beta: float, float32: bool) -> tuple[float, float]:
    if not float32:
        return beta, round(1.0 - beta, 12)
    beta32 = torch.tensor(beta, dtype=torch.float32)
    return float(beta32), float(torch.tensor(1.0, dtype=torch.float32) - beta32)


@lru_cache(maxsize=4096)
def _bias_correction(beta: float, step: int, float32: bool) -> float:
    if not float32:
        return 1.0 - beta**step
    beta32 = torch.tensor(beta, dtype=torch.float32)
    power = torch.pow(beta32, torch.tensor(float(step), dtype=torch.float32))
    return float(torch.tensor(1.0, dtype=torch.float32) - power)


@dataclass(frozen=True)
class Arithmetic:
    """The EMA constants and ``sign`` of one mode (see the module docstring)."""

    float32_ema: bool = False
    nan_sign: bool = False

    @classmethod
    def of(cls, settings: Settings) -> Arithmetic:
        return cls(float32_ema=settings.float32_ema_constants, nan_sign=settings.sign_keeps_nan)

    def coefficients(self, beta: float) -> tuple[float, float]:
        """(beta, 1 - beta) as Python floats (float32 values in the faithful mode)."""
        return _coefficients(beta, self.float32_ema)

    def bias_correction(self, beta: float, step: int) -> float:
        """1 - beta^step (0 for step 0)."""
        return _bias_correction(beta, step, self.float32_ema)

    def ema_(self, state: Tensor, x: Tensor, beta: float) -> Tensor:
        """state <- beta * state + (1 - beta) * x, in place; returns ``state``."""
        keep, new = self.coefficients(beta)
        return state.mul_(keep).add_(x * new)

    def foreach_ema_(self, states: list[Tensor], xs: list[Tensor], beta: float) -> None:
        """:meth:`ema_` over lists, with the same kernels per tensor."""
        keep, new = self.coefficients(beta)
        torch._foreach_mul_(states, keep)
        torch._foreach_add_(states, torch._foreach_mul(xs, new))

    def qhm(self, x: Tensor, hat: Tensor, beta: float) -> Tensor:
        """The QHM blend (1 - beta) x + beta hat."""
        keep, new = self.coefficients(beta)
        return new * x + keep * hat

    def aggmo(self, state: Tensor, x: Tensor, betas: tuple[float, float]) -> Tensor:
        """The AggMo mean over beta in (0, b1, b2) of beta state - x, summed as the released
        code sums it: (-x + (b1 state - x) + (b2 state - x)) / 3."""
        b1, b2 = (self.coefficients(beta)[0] for beta in betas)
        return (-x + (b1 * state - x) + (b2 * state - x)) / 3.0

    def sign(self, x: Tensor) -> Tensor:
        """sign(x); NaN stays NaN in the faithful mode."""
        out = torch.sign(x)
        return torch.where(torch.isnan(x), x, out) if self.nan_sign else out


DEFAULT_ARITHMETIC = Arithmetic()
