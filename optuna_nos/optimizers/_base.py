"""Shared machinery of the published optimizers.

Every published optimizer updates each parameter tensor w with gradient g at step t as

    U   = the optimizer's update direction (its own state, g, w, schedules at t)
    w  <- w - eta_t * U                      (Opt9/Opt10 override this with Nesterov momentum)

with eta_t = group lr * shape_t, where shape_t is warmup -> hold at 1 -> cosine,
possibly times an evolved LR factor. All schedules are float64 tables over t = 0..T-1, read at
step t and rounded to the parameter's dtype; the tensor math runs in the parameter's dtype.
One step counter t is shared by all tensors; a run may not exceed T steps.

Like ``torch.optim``'s hyperparameters, the schedule settings (``total_steps``,
``warmup_steps``, ``hold_steps``) and each class's options live in every param group (so in
the standard ``state_dict``); a group may override them. The step counter t is kept in every
group under ``"step"``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from optuna_nos.core.errors import NOSError
from optuna_nos.core.schedules import check_schedule_steps, lr_schedule
from optuna_nos.core.validation import check_int, check_real, is_int

__all__ = ["DecayedOptimizer", "PublishedOptimizer", "StepScalars", "check_bool", "check_choice"]

#: Key of this package's own entry in an optimizer state dict.
_STATE_KEY = "nos"
#: Param group keys of the schedule every published optimizer has.
_SCHEDULE_KEYS = ("total_steps", "warmup_steps", "hold_steps")

#: Checks one option value: (name, value) -> the accepted value, or NOSError.
OptionCheck = Callable[[str, Any], Any]


def check_bool(name: str, value: object) -> bool:
    """Return ``value``; raise :class:`NOSError` unless it is a bool."""
    if not isinstance(value, bool):
        raise NOSError(f"{name} must be a bool, got {value!r}")
    return value


def check_choice(choices: tuple[str, ...]) -> OptionCheck:
    """A check that accepts exactly the strings in ``choices``."""

    def check(name: str, value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            raise NOSError(f"{name} must be one of {choices}, got {value!r}")
        return value

    return check


def int_in(minimum: int, maximum: int) -> OptionCheck:
    """A check that accepts an int in ``minimum..maximum``."""
    return functools.partial(check_int, minimum=minimum, maximum=maximum)


def _round_to(value: float, dtype: torch.dtype) -> float:
    """``value`` rounded to ``dtype`` (exact for float64), as a Python float."""
    if dtype == torch.float64:
        return value
    return torch.tensor(value, dtype=torch.float64).to(dtype).item()


class StepScalars:
    """The schedule values of one step for one param group, rounded to one dtype.

    ``group`` is the param group, for the options a direction depends on.
    """

    def __init__(
        self, t: int, group: Mapping[str, Any], tables: Mapping[str, Tensor], dtype: torch.dtype
    ) -> None:
        self.t = t
        self.group = group
        self.dtype = dtype
        self._lr = float(group["lr"])
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

    def decayed(self, x: Tensor) -> Tensor:
        """The decay factor at step t times ``x`` if the group has ``use_decay`` on, else ``x``."""
        return self["decay"] * x if self.group["use_decay"] else x

    def bias_correction(self, beta: float) -> float:
        """1 - beta^(t+1), the EMA bias correction."""
        return self._memoised(f"bias:{beta!r}", lambda: 1.0 - beta ** (self.t + 1))


@functools.lru_cache(maxsize=32)
def _tables_of(
    build: Callable[[Mapping[str, Any]], dict[str, Tensor]],
    settings: tuple[tuple[str, Any], ...],
) -> dict[str, Tensor]:
    """``build(settings)`` (a class's ``_build_tables``), checked, as float64 on the CPU."""
    as_dict = dict(settings)
    total_steps = as_dict["total_steps"]
    tables = {}
    for name, values in build(as_dict).items():
        if values.shape != (total_steps,):
            raise NOSError(
                f"schedule {name!r} has shape {tuple(values.shape)}, expected ({total_steps},)"
            )
        tables[name] = values.to(dtype=torch.float64, device="cpu")
    return tables


class PublishedOptimizer(Optimizer):
    """Base of the published optimizers: validation, lazy state, schedules, step counter.

    Args: ``params``, ``lr`` (eta >= 0), keyword-only ``total_steps`` (T >= 1),
    ``warmup_steps`` (W >= 0), ``hold_steps`` (H >= 0) with W + H < T, and the class's
    :attr:`options` by name.

    Subclasses declare :attr:`options`, extend :meth:`_build_tables` (the float64 schedules
    of one param group), and implement :meth:`_new_state` (zero buffers of one tensor) and
    :meth:`_direction` (the update U); :meth:`_apply` does w <- w - eta_t * U unless
    overridden. ``state_dict`` adds ``{"nos": {"class", "step"}}``; loading a state dict of
    another class or of differently configured groups raises :class:`NOSError`.
    """

    #: The class's options beyond lr and the schedule: name -> (default, check).
    options: ClassVar[dict[str, tuple[Any, OptionCheck]]] = {}

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        *,
        total_steps: int,
        warmup_steps: int = 0,
        hold_steps: int = 0,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise NOSError(
                f"{type(self).__name__} has no option {unknown[0]!r}; its options "
                f"are {sorted(self.options)}"
            )
        defaults = self._checked(
            {
                "lr": lr,
                "total_steps": total_steps,
                "warmup_steps": warmup_steps,
                "hold_steps": hold_steps,
                **{
                    name: options.get(name, default) for name, (default, _) in self.options.items()
                },
            }
        )
        try:
            super().__init__(params, defaults)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, NOSError):
                raise
            raise NOSError(f"invalid params for {type(self).__name__}: {exc}") from exc

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give a class that keeps this constructor a signature naming its options."""
        super().__init_subclass__(**kwargs)
        if cls.__init__ is PublishedOptimizer.__init__:
            base = inspect.signature(PublishedOptimizer)
            named = [
                param
                for param in base.parameters.values()
                if param.kind != inspect.Parameter.VAR_KEYWORD
            ]
            named += [
                inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                for name, (default, _) in cls.options.items()
            ]
            cls.__signature__ = base.replace(parameters=named)  # type: ignore[attr-defined]

    @classmethod
    def _checked(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The lr, schedule and options of ``settings``, checked."""
        total_steps = check_int("total_steps", settings["total_steps"], minimum=1)
        warmup_steps = check_int("warmup_steps", settings["warmup_steps"], minimum=0)
        hold_steps = check_int("hold_steps", settings["hold_steps"], minimum=0)
        check_schedule_steps(total_steps, warmup_steps, hold_steps)
        checked = {
            "lr": check_real("lr", settings["lr"], minimum=0.0),
            "total_steps": total_steps,
            "warmup_steps": warmup_steps,
            "hold_steps": hold_steps,
        }
        for name, (_, check) in cls.options.items():
            checked[name] = check(name, settings[name])
        return checked

    @classmethod
    def _settings_keys(cls) -> tuple[str, ...]:
        """The group keys that fix the schedules and the update (all but lr and step)."""
        return (*_SCHEDULE_KEYS, *cls.options)

    @property
    def t(self) -> int:
        """Steps applied so far (the t of the next step)."""
        return int(self.param_groups[0]["step"]) if self.param_groups else 0

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group after checking its settings and that its params are floating."""
        step = self.t
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.update(self._checked(group))
        group["step"] = step
        for param in group["params"]:
            if not param.is_floating_point():
                raise NOSError(
                    f"{type(self).__name__} needs floating-point params, got {param.dtype}"
                )

    @classmethod
    def _build_tables(cls, settings: Mapping[str, Any]) -> dict[str, Tensor]:
        """The schedules of a group with these settings, each of length T; subclasses add."""
        return {
            "eta": lr_schedule(
                1.0, settings["total_steps"], settings["warmup_steps"], settings["hold_steps"]
            )
        }

    def _tables(self, group: Mapping[str, Any]) -> dict[str, Tensor]:
        settings = tuple((key, group[key]) for key in self._settings_keys())
        return _tables_of(self._build_tables, settings)

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
        t = self.t
        for group in self.param_groups:
            if t >= group["total_steps"]:
                raise NOSError(
                    f"{type(self).__name__} was built for total_steps="
                    f"{group['total_steps']} and cannot take step {t + 1}"
                )
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None and param.grad.layout != torch.strided:
                    raise NOSError(
                        f"{type(self).__name__} does not support sparse gradients "
                        f"(got layout {param.grad.layout})"
                    )
        for group in self.param_groups:
            tables = self._tables(group)
            by_dtype: dict[torch.dtype, StepScalars] = {}
            for param in group["params"]:
                if param.grad is None:
                    continue
                scalars = by_dtype.get(param.dtype)
                if scalars is None:
                    scalars = by_dtype[param.dtype] = StepScalars(t, group, tables, param.dtype)
                state = self.state[param]
                if not state:
                    state.update(self._new_state(param))
                update = self._direction(param, param.grad, state, scalars)
                self._apply(param, update, state, scalars)
        for group in self.param_groups:
            group["step"] = t + 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The usual optimizer state dict plus the class name and the step counter."""
        state = super().state_dict()
        state[_STATE_KEY] = {"class": type(self).__name__, "step": self.t}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` of this class with identically configured groups.

        State dicts of the earlier layout, with the settings in ``nos.config`` instead of the
        param groups, load too.
        """
        name = type(self).__name__
        entry = state_dict.get(_STATE_KEY)
        if not isinstance(entry, dict) or "step" not in entry:
            raise NOSError(f"state dict has no {_STATE_KEY!r} entry; it was not saved by {name}")
        saved_groups = state_dict["param_groups"]
        if "config" in entry:  # the earlier layout
            config = dict(entry["config"])
            entry = {"class": config.pop("class", None), "step": entry["step"]}
            saved_groups = [{**config, **group} for group in saved_groups]
        if entry.get("class") != name:
            raise NOSError(f"state dict was saved by {entry.get('class')!r}, not by {name}")
        step = entry["step"]
        for saved, group in zip(saved_groups, self.param_groups, strict=False):
            self._check_same_settings(saved, group, step)
        rest = {key: value for key, value in state_dict.items() if key != _STATE_KEY}
        super().load_state_dict(
            {**rest, "param_groups": [{**group, "step": step} for group in saved_groups]}
        )

    def _check_same_settings(
        self, saved: Mapping[str, Any], group: Mapping[str, Any], step: object
    ) -> None:
        keys = self._settings_keys()
        had = {key: saved.get(key) for key in keys}
        has = {key: group[key] for key in keys}
        if had != has:
            raise NOSError(f"state dict was saved with {had}, this optimizer has {has}")
        if not is_int(step) or not 0 <= step <= group["total_steps"]:  # type: ignore[operator]
            raise NOSError(
                f"state dict step must be an int in 0..{group['total_steps']}, got {step!r}"
            )


class DecayedOptimizer(PublishedOptimizer):
    """A published Opt1..Opt10: :class:`PublishedOptimizer` plus the ``use_decay`` option.

    ``use_decay`` turns on each class's optional decay factors; the project default is True
    (the released classes defaulted to False).
    """

    options: ClassVar[dict[str, tuple[Any, OptionCheck]]] = {"use_decay": (True, check_bool)}

    @classmethod
    def _decay_factor(cls, total_steps: int) -> Tensor | None:
        """The class's decay factor over t = 0..T-1 (:meth:`StepScalars.decayed`), if any."""
        return None

    @classmethod
    def _build_tables(cls, settings: Mapping[str, Any]) -> dict[str, Tensor]:
        tables = super()._build_tables(settings)
        factor = cls._decay_factor(settings["total_steps"])
        if settings["use_decay"] and factor is not None:
            tables["decay"] = factor
        return tables
