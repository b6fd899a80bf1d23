"""The nine evolved learning-rate schedules, usable with any optimizer.

With eta the group's initial learning rate and eta_base(t) warmup -> hold at eta -> cosine,
schedule k sets, before step t,

    lr_t = eta_base(t) * f_k(t) + 1e-7      for t >= 1,      lr_0 = 1e-7

where, with the base schedules a_k of :mod:`optuna_nos.space.decays`, D(x) = 1 - tanh^2(x),
softsign(x) = x/(1+|x|) and deriv_soft(x) = 1/(1+|x|):

    f0 = erfc(erfc(a4)) / D(a8)
    f1 = erfc(erfc(a4)) / (D(a8) * D(a4))
    f2 = atan(a2) / (D(a10) * sqrt(deriv_soft(a14')))
    f3 = sigmoid(a2)^2 / sigmoid(2 * softsign(a1))
    f4 = 1 / sqrt(erf(a11))
    f5 = atan(a2) * erfc(a6) / sqrt(deriv_soft(a6))
    f6 = 1 / sqrt(deriv_soft(a10))
    f7 = 1 / (sqrt(softsign(atan(a12))) + 1e-7)
    f8 = tanh(max(a10, a6))

lr_0 = 1e-7 is the project default; the released callback crashed there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from optuna_nos.core.errors import NOSError
from optuna_nos.core.schedules import check_schedule_steps, lr_schedule
from optuna_nos.core.validation import check_int, is_int
from optuna_nos.optimizers._functions import EPS, deriv_soft, deriv_tanh, softsign
from optuna_nos.space.decays import base_schedule

__all__ = ["LR_FLOOR", "N_EVOLVED_LR_SCHEDULES", "EvolvedLR", "evolved_lr_factor"]

#: Learning rate at t = 0, and the floor added at every other step.
LR_FLOOR = 1e-7

_Schedules = Callable[[str], Tensor]

_FACTORS: tuple[Callable[[_Schedules], Tensor], ...] = (
    lambda a: torch.erfc(torch.erfc(a("a4"))) / deriv_tanh(a("a8")),
    lambda a: torch.erfc(torch.erfc(a("a4"))) / (deriv_tanh(a("a8")) * deriv_tanh(a("a4"))),
    lambda a: (
        torch.atan(a("a2")) / (deriv_tanh(a("a10")) * torch.sqrt(deriv_soft(a("a14_prime"))))
    ),
    lambda a: torch.sigmoid(a("a2")) ** 2 / torch.sigmoid(2.0 * softsign(a("a1"))),
    lambda a: 1.0 / torch.sqrt(torch.erf(a("a11"))),
    lambda a: torch.atan(a("a2")) * torch.erfc(a("a6")) / torch.sqrt(deriv_soft(a("a6"))),
    lambda a: 1.0 / torch.sqrt(deriv_soft(a("a10"))),
    lambda a: 1.0 / (torch.sqrt(softsign(torch.atan(a("a12")))) + EPS),
    lambda a: torch.tanh(torch.maximum(a("a10"), a("a6"))),
)

N_EVOLVED_LR_SCHEDULES = len(_FACTORS)


def _check_schedule_index(schedule: object) -> int:
    return check_int("schedule", schedule, minimum=0, maximum=N_EVOLVED_LR_SCHEDULES - 1)


def evolved_lr_factor(schedule: int, total_steps: int) -> Tensor:
    """f_k(t) of evolved LR schedule ``schedule`` = k for t = 0..T-1, float64."""
    index = _check_schedule_index(schedule)
    check_schedule_steps(total_steps, 0, 0)
    cache: dict[str, Tensor] = {}

    def base(name: str) -> Tensor:
        if name not in cache:
            cache[name] = base_schedule(name, total_steps)
        return cache[name]

    return _FACTORS[index](base)


class EvolvedLR(LRScheduler):
    """Evolved LR schedule k for any ``torch.optim`` optimizer.

    lr_t = eta_base(t) * f_k(t) + 1e-7 (t >= 1), lr_0 = 1e-7, with eta_base warmup -> hold at
    eta -> cosine and eta each param group's initial lr. Call :meth:`step` after each
    optimizer step; after the T-th call the rate stays at its last value (lr_{T-1}) and a
    further call raises :class:`NOSError`.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: int = 0,
        *,
        total_steps: int,
        warmup_steps: int = 0,
        hold_steps: int = 0,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise NOSError(
                f"EvolvedLR needs a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.schedule = _check_schedule_index(schedule)
        check_schedule_steps(total_steps, warmup_steps, hold_steps)
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.hold_steps = hold_steps
        self._multipliers = lr_schedule(
            1.0, total_steps, warmup_steps, hold_steps
        ) * evolved_lr_factor(schedule, total_steps)
        super().__init__(optimizer)

    def _config(self) -> dict[str, int]:
        return {
            "schedule": self.schedule,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "hold_steps": self.hold_steps,
        }

    def _lrs_at(self, t: int) -> list[Any]:
        if t == 0:
            return [LR_FLOOR for _ in self.base_lrs]
        multiplier = self._multipliers[min(t, self.total_steps - 1)].item()
        return [base_lr * multiplier + LR_FLOOR for base_lr in self.base_lrs]

    def get_lr(self) -> list[Any]:
        """Learning rates of step ``last_epoch``, one per param group."""
        return self._lrs_at(self.last_epoch)

    def _get_closed_form_lr(self) -> list[Any]:
        return self._lrs_at(self.last_epoch)

    def step(self, epoch: int | None = None) -> None:
        """Move to the next step (``epoch`` is torch's deprecated explicit step)."""
        target = self.last_epoch + 1 if epoch is None else epoch
        if not is_int(target):
            raise NOSError(f"EvolvedLR step must be an int, got {target!r}")
        if not 0 <= target <= self.total_steps:
            raise NOSError(
                f"EvolvedLR was built for total_steps={self.total_steps} and "
                f"cannot move to step {target}"
            )
        super().step(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The scheduler state without its precomputed table (rebuilt from the settings)."""
        state = super().state_dict()
        state.pop("_multipliers")
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` of an identically configured scheduler."""
        saved = {key: state_dict.get(key) for key in self._config()}
        if saved != self._config():
            raise NOSError(
                f"scheduler state was saved with {saved}, this scheduler has {self._config()}"
            )
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "_multipliers"})
