"""Opt9 and Opt10: gradient-only updates with Nesterov momentum.

With eta_t the warmup -> hold -> cosine rate and mu_t the 0.95 -> 0.85 -> 0.95 momentum cycle
(with hold), the momentum buffer m starts at 0 and, in the **Keras form** the
published classes use,

    m <- mu_t m - eta_t U ;  w <- w + mu_t m - eta_t U        (m the new value)

``nesterov="search"`` gives the search space's form instead (the one the search log's Opt10
ancestor used):

    m <- mu_t m - eta_t U ;  w <- w + m - eta_t U
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optuna_nos.core.schedules import momentum_cycle
from optuna_nos.optimizers._base import DecayedOptimizer, OptionCheck, StepScalars, check_choice
from optuna_nos.optimizers._functions import ema_
from optuna_nos.space.decays import base_schedule

__all__ = ["NESTEROV_FORMS", "Opt9", "Opt10"]

NESTEROV_FORMS = ("keras", "search")


class _NesterovOptimizer(DecayedOptimizer):
    """Applies U with Nesterov momentum in the chosen form; subclasses give U."""

    options: ClassVar[dict[str, tuple[Any, OptionCheck]]] = {
        **DecayedOptimizer.options,
        "nesterov": ("keras", check_choice(NESTEROV_FORMS)),
    }

    @classmethod
    def _build_tables(cls, settings: Mapping[str, Any]) -> dict[str, Tensor]:
        tables = super()._build_tables(settings)
        tables["mu"] = momentum_cycle(
            settings["total_steps"], settings["warmup_steps"], settings["hold_steps"]
        )
        return tables

    def _new_state(self, param: Tensor) -> dict[str, Tensor]:
        return {"momentum_buffer": torch.zeros_like(param)}

    def _apply(
        self, param: Tensor, update: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> None:
        mu, eta = scalars["mu"], scalars.eta
        buffer = state["momentum_buffer"]
        buffer.mul_(mu).add_(update, alpha=-eta)
        if scalars.group["nesterov"] == "keras":
            param.add_(buffer, alpha=mu).add_(update, alpha=-eta)
        else:
            param.add_(buffer).add_(update, alpha=-eta)


class Opt9(_NesterovOptimizer):
    """Opt9, with s = EMA_0.99(g^2) and s_hat = s / (1 - 0.99^(t+1)):

        A = erfc(a11(t))   (with ``use_decay``; else A = 1)
        U = A g exp(atan(0.05 g^2 + 0.95 s_hat))

    applied with Nesterov momentum, Keras form by default (see the module docstring).
    """

    @classmethod
    def _decay_factor(cls, total_steps: int) -> Tensor:
        return torch.erfc(base_schedule("a11", total_steps))

    def _new_state(self, param: Tensor) -> dict[str, Tensor]:
        return {"s": torch.zeros_like(param), **super()._new_state(param)}

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        ema_(state["s"], grad**2, 0.99)
        s_hat = state["s"] / scalars.bias_correction(0.99)
        return scalars.decayed(grad * torch.exp(torch.atan(0.05 * grad**2 + 0.95 * s_hat)))


class Opt10(_NesterovOptimizer):
    """Opt10:

        A = a13(t) a2(t)   (with ``use_decay``: 0 at both ends, peak 0.635; else A = 1)
        U = i1e(i1e(A g))  (|U| <= 0.0885)

    applied with Nesterov momentum, Keras form by default (see the module docstring).
    """

    @classmethod
    def _decay_factor(cls, total_steps: int) -> Tensor:
        return base_schedule("a13", total_steps) * base_schedule("a2", total_steps)

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        return torch.special.i1e(torch.special.i1e(scalars.decayed(grad)))
