"""Opt4-Opt6: QH-momentum divided by an exponential bound.

Per tensor at step t: v <- 0.9 v + 0.1 g, v_hat = v / (1 - 0.9^(t+1)), q = 0.3 g + 0.7 v_hat,
w <- w - eta_t * U. With ``use_decay`` (project default) eta_t is multiplied by
F0(t) = erfc(erfc(a4)) / D(a8), the evolved LR factor f0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from optuna_nos.errors import NOSError
from optuna_nos.optimizers._base import StepScalars, check_bool
from optuna_nos.optimizers._functions import EPS, deriv_tanh
from optuna_nos.optimizers._qhm import QHMOptimizer
from optuna_nos.space.decays import base_schedule

__all__ = ["Opt4", "Opt5", "Opt6"]


class _ExpBoundOptimizer(QHMOptimizer):
    """U = q / (clip(2, c) + e) with c = |A(t) exp(v_hat)|; subclasses fix A and e."""

    lr_times_f0: ClassVar[bool] = True
    _extra_attrs = (*QHMOptimizer._extra_attrs, "_eps", "_uses_a")

    def _setup_bound(self, *, atan_a13: bool, eps: float) -> None:
        self._eps = eps
        self._uses_a = atan_a13
        if atan_a13:
            self._set_table("A", torch.atan(base_schedule("a13", self.total_steps)))

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        q, v_hat = self._qhm(grad, state, scalars)
        scaled = scalars["A"] * torch.exp(v_hat) if self._uses_a else torch.exp(v_hat)
        # c = |A exp(v_hat)| >= 0, so clip(2, c) = clip(2, -c, c) = min(2, c).
        bound = torch.clamp(torch.abs(scaled), max=2.0)
        if self._eps:
            bound = bound + self._eps
        return q / bound


class Opt4(_ExpBoundOptimizer):
    """Opt4:

        A  = atan(a13(t))               (always on; ``variant=1`` sets A = 1)
        c  = |A exp(v_hat)|
        U  = q / (clip(2, c) + 1e-7)    = q / (min(2, c) + 1e-7)
        eta_t <- eta_t * F0(t)          (with ``use_decay``)

    a13(T-1) = 0 makes c = 0 at the last step: ``eps_in_denominator=False`` is the released
    form, U = +-inf there; the project default adds 1e-7.
    """

    _extra_attrs = (*_ExpBoundOptimizer._extra_attrs, "variant", "eps_in_denominator")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        *,
        total_steps: int,
        warmup_steps: int = 0,
        hold_steps: int = 0,
        use_decay: bool = True,
        variant: int = 0,
        eps_in_denominator: bool = True,
    ) -> None:
        if isinstance(variant, bool) or variant not in (0, 1):
            raise NOSError(f"Opt4 variant must be 0 or 1, got {variant!r}")
        self.variant = variant
        self.eps_in_denominator = check_bool("eps_in_denominator", eps_in_denominator)
        super().__init__(params, lr, total_steps=total_steps, warmup_steps=warmup_steps,
                         hold_steps=hold_steps, use_decay=use_decay)
        self._setup_bound(atan_a13=variant == 0, eps=EPS if eps_in_denominator else 0.0)

    def _options(self) -> dict[str, Any]:
        return {**super()._options(), "variant": self.variant,
                "eps_in_denominator": self.eps_in_denominator}


class Opt5(_ExpBoundOptimizer):
    """Opt5:

        U  = q / clip(2, |exp(v_hat)|)  = q / min(2, exp(v_hat))
        eta_t <- eta_t * F0(t)          (with ``use_decay``)
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        *,
        total_steps: int,
        warmup_steps: int = 0,
        hold_steps: int = 0,
        use_decay: bool = True,
    ) -> None:
        super().__init__(params, lr, total_steps=total_steps, warmup_steps=warmup_steps,
                         hold_steps=hold_steps, use_decay=use_decay)
        self._setup_bound(atan_a13=False, eps=0.0)


class Opt6(QHMOptimizer):
    """Opt6:

        B  = D(a4(t)) = 1 - tanh^2(a4(t)), in [0.42, 1]   (with ``use_decay``; else B = 1)
        U  = q / |B exp(1e-4 w)|
        eta_t <- eta_t * F0(t)                              (with ``use_decay``)
    """

    lr_times_f0: ClassVar[bool] = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        *,
        total_steps: int,
        warmup_steps: int = 0,
        hold_steps: int = 0,
        use_decay: bool = True,
    ) -> None:
        super().__init__(params, lr, total_steps=total_steps, warmup_steps=warmup_steps,
                         hold_steps=hold_steps, use_decay=use_decay)
        if self.use_decay:
            self._set_table("B", deriv_tanh(base_schedule("a4", total_steps)))

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        q, _ = self._qhm(grad, state, scalars)
        scale = torch.exp(1e-4 * param)
        if self.use_decay:
            scale = scalars["B"] * scale
        return q / torch.abs(scale)
