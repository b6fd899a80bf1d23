"""The QH-momentum base shared by Opt1-Opt8.

Per tensor at step t (bias correction with exponent t+1):

    v <- 0.9 v + 0.1 g ;  v_hat = v / (1 - 0.9^(t+1)) ;  q = 0.3 g + 0.7 v_hat

and w <- w - eta_t * U. Classes with ``lr_times_f0`` multiply eta_t by the evolved LR factor
F0 = f0 (of :mod:`optuna_nos.optimizers.evolved_lr`) when ``use_decay`` is on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optuna_nos.optimizers._base import DecayedOptimizer, StepScalars
from optuna_nos.optimizers._functions import ema_
from optuna_nos.optimizers.evolved_lr import evolved_lr_factor

__all__ = ["QHMOptimizer"]


class QHMOptimizer(DecayedOptimizer):
    """Keeps v = EMA_0.9(g) per tensor and gives q = 0.3 g + 0.7 v_hat."""

    #: With ``use_decay``, eta_t is multiplied by F0(t) (Opt4-Opt6).
    lr_times_f0: ClassVar[bool] = False

    @classmethod
    def _build_tables(cls, settings: Mapping[str, Any]) -> dict[str, Tensor]:
        tables = super()._build_tables(settings)
        if cls.lr_times_f0 and settings["use_decay"]:
            tables["eta"] = tables["eta"] * evolved_lr_factor(0, settings["total_steps"])
        return tables

    def _new_state(self, param: Tensor) -> dict[str, Tensor]:
        return {"v": torch.zeros_like(param)}

    def _qhm(
        self, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> tuple[Tensor, Tensor]:
        """Update v; return q = 0.3 g + 0.7 v_hat, and v_hat."""
        ema_(state["v"], grad, 0.9)
        v_hat = state["v"] / scalars.bias_correction(0.9)
        return 0.3 * grad + 0.7 * v_hat, v_hat
