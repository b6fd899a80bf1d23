"""Lion (Chen et al. 2023), the sign-of-momentum optimizer both harnesses compare against."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from optuna_nos.core.errors import NOSError

__all__ = ["Lion"]


class Lion(Optimizer):
    """Lion (Chen et al. 2023). Per tensor, with momentum m (initially 0):

    c <- beta1 m + (1 - beta1) g
    w <- w - lr (sign(c) + weight_decay w)
    m <- beta2 m + (1 - beta2) g
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        if not lr >= 0.0:
            raise NOSError(f"Lion lr must be >= 0, got {lr!r}")
        if not all(0.0 <= beta < 1.0 for beta in betas) or len(betas) != 2:
            raise NOSError(f"Lion betas must be two numbers in [0, 1), got {betas!r}")
        if not weight_decay >= 0.0:
            raise NOSError(f"Lion weight_decay must be >= 0, got {weight_decay!r}")
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param)
                momentum = state["exp_avg"]
                direction = torch.sign(momentum * beta1 + param.grad * (1.0 - beta1))
                param.add_(direction + param * group["weight_decay"], alpha=-group["lr"])
                momentum.mul_(beta2).add_(param.grad, alpha=1.0 - beta2)
        return loss
