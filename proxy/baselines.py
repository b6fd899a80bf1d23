"""Hand-designed optimizers as proxy baselines, trained exactly like a candidate genome.

A :class:`TorchBaseline` names a ``torch.optim`` optimizer (or :class:`transfer.optimizers.Lion`)
with its usual hyper-parameters; only the learning rate is tuned, by the same two-stage
screen as every candidate, and it follows the same schedule: at step t every param group g
(one per screened learning rate) uses

    eta_t(g) = eta(g) * s_t,    s = lr_schedule(1, T, W)    (warmup -> cosine)

which is what :class:`~optuna_nos.GenomeOptimizer` applies to a genome's update.

* ``adam``: Adam(betas 0.9, 0.999; eps 1e-8);
* ``adamw``: AdamW(weight decay 0.01), decoupled: w <- w - eta_t (adam + 0.01 w);
* ``sgd_nesterov``: SGD(momentum 0.9, Nesterov);
* ``rmsprop``: RMSprop(alpha 0.99, eps 1e-8);
* ``lion``: Lion(betas 0.9, 0.99) (Chen et al. 2023).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer

from optuna_nos.core.errors import NOSError
from optuna_nos.core.schedules import lr_schedule
from proxy.lion import Lion

__all__ = ["TORCH_BASELINES", "ScheduledOptimizer", "TorchBaseline", "torch_baseline"]


def _lion(params: Any, lr: float) -> Optimizer:
    return Lion(params, lr=lr)


_FACTORIES: dict[str, Callable[[Any, float], Optimizer]] = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.01),
    "sgd_nesterov": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True),
    "rmsprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr),
    "lion": _lion,
}

#: Baseline names, in table order.
TORCH_BASELINES: tuple[str, ...] = tuple(_FACTORIES)


@dataclass(frozen=True)
class TorchBaseline:
    """A named hand-designed optimizer (see the module docstring), usable wherever a proxy
    run takes a genome."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in _FACTORIES:
            raise NOSError(f"unknown baseline {self.name!r}; known: {', '.join(TORCH_BASELINES)}")

    def __str__(self) -> str:
        return self.name


def torch_baseline(name: str) -> TorchBaseline:
    """The baseline called ``name``."""
    return TorchBaseline(name)


class ScheduledOptimizer:
    """``step()`` sets every group's lr to ``eta(g) * s_t`` and steps the wrapped optimizer."""

    def __init__(
        self,
        baseline: TorchBaseline,
        groups: Iterable[dict[str, Any]],
        total_steps: int,
        warmup_steps: int,
    ) -> None:
        groups = list(groups)
        self.optimizer = _FACTORIES[baseline.name](groups, float(groups[0]["lr"]))
        self.base_lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
        self.factors = lr_schedule(1.0, total_steps, warmup_steps).tolist()
        self.t = 0

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def step(self) -> None:
        if self.t >= len(self.factors):
            raise NOSError(
                f"step {self.t} is past the schedule: total_steps = {len(self.factors)}"
            )
        factor = self.factors[self.t]
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = lr * factor
        self.optimizer.step()
        self.t += 1
