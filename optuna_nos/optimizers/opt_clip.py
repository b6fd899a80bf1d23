"""Opt4-Opt6: QH-momentum divided by an exponential bound.

Per tensor at step t: v <- 0.9 v + 0.1 g, v_hat = v / (1 - 0.9^(t+1)), q = 0.3 g + 0.7 v_hat,
w <- w - eta_t * U. With ``use_decay`` (project default) eta_t is multiplied by
F0(t) = erfc(erfc(a4)) / D(a8), the evolved LR factor f0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optuna_nos.optimizers._base import OptionCheck, StepScalars, check_bool, int_in
from optuna_nos.optimizers._functions import EPS, deriv_tanh
from optuna_nos.optimizers._qhm import QHMOptimizer
from optuna_nos.space.decays import base_schedule

__all__ = ["Opt4", "Opt5", "Opt6"]


class _ExpBoundOptimizer(QHMOptimizer):
    """U = q / (clip(2, c) + e) with c = |A(t) exp(v_hat)|; subclasses give A and e."""

    lr_times_f0: ClassVar[bool] = True

    def _scaled_exp(self, v_hat: Tensor, scalars: StepScalars) -> Tensor:
        """A(t) exp(v_hat); A = 1 unless overridden."""
        return torch.exp(v_hat)

    def _eps(self, group: Mapping[str, Any]) -> float:
        """e, added to the bound; 0 unless overridden."""
        return 0.0

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        q, v_hat = self._qhm(grad, state, scalars)
        # c = |A exp(v_hat)| >= 0, so clip(2, c) = clip(2, -c, c) = min(2, c).
        bound = torch.clamp(torch.abs(self._scaled_exp(v_hat, scalars)), max=2.0)
        eps = self._eps(scalars.group)
        if eps:
            bound = bound + eps
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

    options: ClassVar[dict[str, tuple[Any, OptionCheck]]] = {
        **_ExpBoundOptimizer.options,
        "variant": (0, int_in(0, 1)),
        "eps_in_denominator": (True, check_bool),
    }

    @classmethod
    def _build_tables(cls, settings: Mapping[str, Any]) -> dict[str, Tensor]:
        tables = super()._build_tables(settings)
        if settings["variant"] == 0:
            tables["A"] = torch.atan(base_schedule("a13", settings["total_steps"]))
        return tables

    def _scaled_exp(self, v_hat: Tensor, scalars: StepScalars) -> Tensor:
        if scalars.group["variant"] == 0:
            return scalars["A"] * torch.exp(v_hat)
        return torch.exp(v_hat)

    def _eps(self, group: Mapping[str, Any]) -> float:
        return EPS if group["eps_in_denominator"] else 0.0


class Opt5(_ExpBoundOptimizer):
    """Opt5:

    U  = q / clip(2, |exp(v_hat)|)  = q / min(2, exp(v_hat))
    eta_t <- eta_t * F0(t)          (with ``use_decay``)
    """


class Opt6(QHMOptimizer):
    """Opt6:

    B  = D(a4(t)) = 1 - tanh^2(a4(t)), in [0.42, 1]   (with ``use_decay``; else B = 1)
    U  = q / |B exp(1e-4 w)|
    eta_t <- eta_t * F0(t)                              (with ``use_decay``)
    """

    lr_times_f0: ClassVar[bool] = True

    @classmethod
    def _decay_factor(cls, total_steps: int) -> Tensor:
        return deriv_tanh(base_schedule("a4", total_steps))

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        q, _ = self._qhm(grad, state, scalars)
        return q / torch.abs(scalars.decayed(torch.exp(1e-4 * param)))
