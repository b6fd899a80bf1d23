"""Learning-rate and momentum schedules, precomputed for t = 0..T-1.

    eta_t = eta * t / W                                   if t < W        (eta_0 = 0)
    eta_t = h                                             if H > 0 and W <= t <= W + H
    eta_t = eta/2 * (1 + cos(pi * (t - W - H) / (T - W - H)))   otherwise
    mu    = concat(linspace(0.95, 0.85, W), [0.85] * H, linspace(0.85, 0.95, T - W - H))

``h`` is eta (project default and published optimizers) or 0 (the released search
optimizer, ``hold_at_zero=True``; moot when H = 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from optuna_nos.core.errors import NOSError
from optuna_nos.core.validation import check_int

__all__ = ["check_schedule_steps", "lr_schedule", "momentum_cycle"]


def check_schedule_steps(total_steps: int, warmup_steps: int, hold_steps: int) -> None:
    """Raise :class:`NOSError` unless 0 <= W, 0 <= H and W + H < T."""
    for name, value in (
        ("total_steps", total_steps),
        ("warmup_steps", warmup_steps),
        ("hold_steps", hold_steps),
    ):
        check_int(name, value)
    if total_steps < 1:
        raise NOSError(f"total_steps must be >= 1, got {total_steps}")
    if warmup_steps < 0 or hold_steps < 0:
        raise NOSError(
            f"warmup_steps and hold_steps must be >= 0, got {warmup_steps}, {hold_steps}"
        )
    if warmup_steps + hold_steps >= total_steps:
        raise NOSError(
            f"warmup_steps + hold_steps ({warmup_steps} + {hold_steps}) must be less than "
            f"total_steps ({total_steps})"
        )


def lr_schedule(
    lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    hold_steps: int = 0,
    *,
    hold_at_zero: bool = False,
) -> Tensor:
    """Warmup -> hold -> cosine learning rates eta_t for t = 0..T-1, float64."""
    check_schedule_steps(total_steps, warmup_steps, hold_steps)
    t = torch.arange(total_steps, dtype=torch.float64)
    decay_len = total_steps - warmup_steps - hold_steps
    cosine = 0.5 * lr * (1.0 + torch.cos(math.pi * (t - warmup_steps - hold_steps) / decay_len))
    out = cosine
    if hold_steps > 0:
        hold_value = 0.0 if hold_at_zero else lr
        in_hold = (t >= warmup_steps) & (t <= warmup_steps + hold_steps)
        out = torch.where(in_hold, torch.full_like(t, hold_value), out)
    if warmup_steps > 0:
        out = torch.where(t < warmup_steps, lr * t / warmup_steps, out)
    return out


def momentum_cycle(total_steps: int, warmup_steps: int = 0, hold_steps: int = 0) -> Tensor:
    """The paper's momentum coefficients 0.95 -> 0.85 (warmup), 0.85 (hold), -> 0.95, float64."""
    check_schedule_steps(total_steps, warmup_steps, hold_steps)
    parts = [
        torch.linspace(0.95, 0.85, warmup_steps, dtype=torch.float64),
        torch.full((hold_steps,), 0.85, dtype=torch.float64),
        torch.linspace(0.85, 0.95, total_steps - warmup_steps - hold_steps, dtype=torch.float64),
    ]
    return torch.cat(parts)
