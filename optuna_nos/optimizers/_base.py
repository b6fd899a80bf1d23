"""Shared machinery of the published optimizers.

Every published optimizer updates each parameter tensor w with gradient g at step t as

    U   = the optimizer's update direction (its own state, g, w, schedules at t)
    w  <- w - eta_t * U                      (Opt9/Opt10 override this with Nesterov momentum)

with eta_t = group lr * shape_t, where shape_t is warmup -> hold at 1 -> cosine,
possibly times an evolved LR factor. All schedules are float64 tables over t = 0..T-1, read at
step t and rounded to the parameter's dtype; the tensor math runs in the parameter's dtype.
One step counter t is shared by all tensors; a run may not exceed T steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from optuna_nos.errors import NOSError
from optuna_nos.schedules import check_schedule_steps, lr_schedule

__all__ = ["DecayedOptimizer", "PublishedOptimizer", "StepScalars", "check_bool", "check_lr"]

#: Key of this package's own entry in an optimizer state dict.
_STATE_KEY = "nos"


def check_lr(lr: object) -> float:
    """Return ``lr`` as a float; raise :class:`NOSError` unless it is a finite number >= 0."""
    if isinstance(lr, bool) or not isinstance(lr, int | float):
        raise NOSError(f"lr must be a number, got {lr!r}")
    if not math.isfinite(lr) or lr < 0:
        raise NOSError(f"lr must be finite and >= 0, got {lr!r}")
    return float(lr)


def check_bool(name: str, value: object) -> bool:
    """Return ``value``; raise :class:`NOSError` unless it is a bool."""
    if not isinstance(value, bool):
        raise NOSError(f"{name} must be a bool, got {value!r}")
    return value


def _round_to(value: float, dtype: torch.dtype) -> float:
    """``value`` rounded to ``dtype`` (exact for float64), as a Python float."""
    if dtype == torch.float64:
        return value
    return torch.tensor(value, dtype=torch.float64).to(dtype).item()


class StepScalars:
    """The schedule values of one step for one param group, rounded to one dtype."""

    def __init__(
        self, t: int, lr: float, tables: Mapping[str, Tensor], dtype: torch.dtype
    ) -> None:
        self.t = t
        self.dtype = dtype
        self._lr = lr
        self._tables = tables
        self._memo: dict[str, float] = {}

    def _memoised(self, key: str, compute: Callable[[], float]) -> float:
        if key not in self._memo:
            self._memo[key] = _round_to(compute(), self.dtype)
        return self._memo[key]

    @property
    def eta(self) -> float:
        """eta_t = group lr * shape_t."""
        return self._memoised("eta", lambda: self._lr * self._tables["eta"][self.t].item())

    def __getitem__(self, name: str) -> float:
        """Schedule table ``name`` at step t."""
        return self._memoised(f"table:{name}", lambda: self._tables[name][self.t].item())

    def bias_correction(self, beta: float) -> float:
        """1 - beta^(t+1), the EMA bias correction."""
        return self._memoised(f"bias:{beta!r}", lambda: 1.0 - beta ** (self.t + 1))


class PublishedOptimizer(Optimizer):
    """Base of the published optimizers: validation, lazy state, schedules, step counter.

    Subclasses implement :meth:`_new_state` (zero buffers of one tensor) and
    :meth:`_direction` (the update U); :meth:`_apply` does w <- w - eta_t * U unless
    overridden. ``state_dict`` carries the step counter and the schedule configuration;
    loading a state dict of a differently configured optimizer raises :class:`NOSError`.
    """

    #: Attributes beyond torch's defaults/state/param_groups that copy and pickle keep;
    #: subclasses add their own.
    _extra_attrs: ClassVar[tuple[str, ...]] = (
        "total_steps", "warmup_steps", "hold_steps", "_steps_done", "_tables",
    )

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        *,
        total_steps: int,
        warmup_steps: int = 0,
        hold_steps: int = 0,
    ) -> None:
        lr = check_lr(lr)
        check_schedule_steps(total_steps, warmup_steps, hold_steps)
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.hold_steps = hold_steps
        self._steps_done = 0
        self._tables: dict[str, Tensor] = {}
        try:
            super().__init__(params, {"lr": lr})
        except (TypeError, ValueError) as exc:
            if isinstance(exc, NOSError):
                raise
            raise NOSError(f"invalid params for {type(self).__name__}: {exc}") from exc
        self._set_table("eta", lr_schedule(1.0, total_steps, warmup_steps, hold_steps))

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update({name: getattr(self, name) for name in self._extra_attrs})
        return state

    @property
    def t(self) -> int:
        """Steps applied so far (the t of the next step)."""
        return self._steps_done

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group after checking its ``lr`` and that its params are floating."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["lr"] = check_lr(group["lr"])
        for param in group["params"]:
            if not param.is_floating_point():
                raise NOSError(
                    f"{type(self).__name__} needs floating-point params, got {param.dtype}"
                )

    def _set_table(self, name: str, values: Tensor) -> None:
        """Store a float64 schedule of length T under ``name``."""
        if values.shape != (self.total_steps,):
            raise NOSError(f"schedule {name!r} has shape {tuple(values.shape)}, "
                           f"expected ({self.total_steps},)")
        self._tables[name] = values.to(dtype=torch.float64, device="cpu")

    def _config(self) -> dict[str, Any]:
        """Settings a resumed optimizer must share with the saved one."""
        return {
            "class": type(self).__name__,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "hold_steps": self.hold_steps,
            **self._options(),
        }

    def _options(self) -> dict[str, Any]:
        """The subclass's own settings (variant, flags), for :meth:`_config`."""
        return {}

    def _new_state(self, param: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        raise NotImplementedError

    def _apply(
        self, param: Tensor, update: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> None:
        """w <- w - eta_t * U."""
        param.add_(update, alpha=-scalars.eta)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Apply one update to every parameter that has a gradient; return the closure's loss."""
        if self._steps_done >= self.total_steps:
            raise NOSError(f"{type(self).__name__} was built for total_steps="
                           f"{self.total_steps} and cannot take step {self._steps_done + 1}")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None and param.grad.layout != torch.strided:
                    raise NOSError(f"{type(self).__name__} does not support sparse gradients "
                                   f"(got layout {param.grad.layout})")
        t = self._steps_done
        for group in self.param_groups:
            lr = float(group["lr"])
            by_dtype: dict[torch.dtype, StepScalars] = {}
            for param in group["params"]:
                if param.grad is None:
                    continue
                scalars = by_dtype.get(param.dtype)
                if scalars is None:
                    scalars = by_dtype[param.dtype] = StepScalars(t, lr, self._tables,
                                                                  param.dtype)
                state = self.state[param]
                if not state:
                    state.update(self._new_state(param))
                update = self._direction(param, param.grad, state, scalars)
                self._apply(param, update, state, scalars)
        self._steps_done += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The usual optimizer state dict plus the step counter and schedule configuration."""
        state = super().state_dict()
        state[_STATE_KEY] = {"step": self._steps_done, "config": self._config()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` of an identically configured optimizer."""
        entry = state_dict.get(_STATE_KEY)
        if not isinstance(entry, dict) or "step" not in entry or "config" not in entry:
            raise NOSError(f"state dict has no {_STATE_KEY!r} entry; it was not saved by "
                           f"{type(self).__name__}")
        if entry["config"] != self._config():
            raise NOSError(f"state dict was saved with {entry['config']}, this optimizer "
                           f"has {self._config()}")
        step = entry["step"]
        valid_int = isinstance(step, int) and not isinstance(step, bool)
        if not valid_int or not 0 <= step <= self.total_steps:
            raise NOSError(f"state dict step must be an int in 0..{self.total_steps}, "
                           f"got {step!r}")
        super().load_state_dict({k: v for k, v in state_dict.items() if k != _STATE_KEY})
        self._steps_done = step


class DecayedOptimizer(PublishedOptimizer):
    """A published Opt1..Opt10: :class:`PublishedOptimizer` plus the ``use_decay`` switch.

    ``use_decay`` turns on each class's optional decay factors; the project default is True
    (the released classes defaulted to False).
    """

    _extra_attrs = (*PublishedOptimizer._extra_attrs, "use_decay")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        *,
        total_steps: int,
        warmup_steps: int = 0,
        hold_steps: int = 0,
        use_decay: bool = True,
    ) -> None:
        self.use_decay = check_bool("use_decay", use_decay)
        super().__init__(params, lr, total_steps=total_steps, warmup_steps=warmup_steps,
                         hold_steps=hold_steps)

    def _options(self) -> dict[str, Any]:
        return {"use_decay": self.use_decay}
