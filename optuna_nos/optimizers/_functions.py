"""Elementwise functions shared by the published optimizers and LR schedules.

    D(x)           = 1 - tanh(x)^2          (derivative of tanh)
    softsign(x)    = x / (1 + |x|)
    deriv_soft(x)  = 1 / (1 + |x|)          (derivative of softsign)
    clip(x, c)     = clip(x, -|c|, |c|)

The first four are the search space's own ops (:mod:`optuna_nos.space.update_ops`), and
``EPS`` (Keras's default) is the space's epsilon.
"""

from __future__ import annotations

from torch import Tensor

from optuna_nos.space.update_ops import EPS, clip, deriv_soft, deriv_tanh, softsign

__all__ = ["EPS", "clip", "deriv_soft", "deriv_tanh", "ema_", "softsign"]


def ema_(buffer: Tensor, x: Tensor, beta: float) -> Tensor:
    """In place: buffer <- beta * buffer + (1 - beta) * x."""
    return buffer.mul_(beta).add_(x, alpha=1.0 - beta)
