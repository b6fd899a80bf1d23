"""Opt7 and Opt8: soft-clipped QH-momentum.

Per tensor at step t: v <- 0.9 v + 0.1 g, v_hat = v / (1 - 0.9^(t+1)), q = 0.3 g + 0.7 v_hat,
w <- w - eta_t * U, with A(t) = max(a6(t), a10(t)) under ``use_decay`` and A = 1 otherwise.
For small q, U is about A q: QH-momentum SGD with its LR times A, plus soft clipping.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optuna_nos.optimizers._base import StepScalars
from optuna_nos.optimizers._qhm import QHMOptimizer
from optuna_nos.space.decays import base_schedule

__all__ = ["Opt7", "Opt8"]


class _SoftClipOptimizer(QHMOptimizer):
    """U = outer(A asinh(q)); subclasses choose ``outer``."""

    def _outer(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @classmethod
    def _decay_factor(cls, total_steps: int) -> Tensor:
        return torch.maximum(base_schedule("a6", total_steps), base_schedule("a10", total_steps))

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        q, _ = self._qhm(grad, state, scalars)
        return self._outer(scalars.decayed(torch.asinh(q)))


class Opt7(_SoftClipOptimizer):
    """Opt7:  U = tanh(A asinh(q)),  A = max(a6, a10) (with ``use_decay``) or 1."""

    def _outer(self, x: Tensor) -> Tensor:
        return torch.tanh(x)


class Opt8(_SoftClipOptimizer):
    """Opt8:  U = asinh(A asinh(q)),  A = max(a6, a10) (with ``use_decay``) or 1."""

    def _outer(self, x: Tensor) -> Tensor:
        return torch.asinh(x)
