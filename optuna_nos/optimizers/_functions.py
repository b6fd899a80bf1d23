"""Elementwise functions shared by the published optimizers and LR schedules.

    D(x)           = 1 - tanh(x)^2          (derivative of tanh)
    softsign(x)    = x / (1 + |x|)
    deriv_soft(x)  = 1 / (1 + |x|)          (derivative of softsign)
    clip(x, c)     = clip(x, -|c|, |c|)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["EPS", "clip", "deriv_soft", "deriv_tanh", "ema_", "softsign"]

#: The epsilon (Keras's default), wherever one appears.
EPS = 1e-7


def deriv_tanh(x: Tensor) -> Tensor:
    """D(x) = 1 - tanh(x)^2."""
    return 1.0 - torch.tanh(x) ** 2


def softsign(x: Tensor) -> Tensor:
    """softsign(x) = x / (1 + |x|)."""
    return x / (1.0 + torch.abs(x))


def deriv_soft(x: Tensor) -> Tensor:
    """deriv_soft(x) = 1 / (1 + |x|)."""
    return 1.0 / (1.0 + torch.abs(x))


def clip(x: Tensor, bound: Tensor) -> Tensor:
    """clip(x, c) = clip(x, -|c|, |c|), elementwise."""
    limit = torch.abs(bound)
    return torch.clamp(x, -limit, limit)


def ema_(buffer: Tensor, x: Tensor, beta: float) -> Tensor:
    """In place: buffer <- beta * buffer + (1 - beta) * x."""
    return buffer.mul_(beta).add_(x, alpha=1.0 - beta)
