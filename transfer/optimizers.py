"""Optimizer specs: a name, file, equation or study trial resolved to one way of building it.

Every optimizer in a comparison is built through :meth:`OptimizerSpec.build` with the same
(lr, T, W, H), and every one follows the same warmup -> hold at eta -> cosine schedule:

* optimizers that take ``total_steps`` themselves (the published ones, genome optimizers,
  exported modules whose constructor has ``total_steps``) receive T, W, H and apply eta_t
  internally;
* all others (the torch baselines, Lion, a file class without ``total_steps``) get a
  :class:`~torch.optim.lr_scheduler.LambdaLR` whose rate at step t is
  ``optuna_nos.core.schedules.lr_schedule(lr, T, W, H)[t] + 1e-7`` (the baseline callback's floor).

Baselines (torch defaults otherwise): Adam, AdamW (weight decay 0.01), SGD with Nesterov
momentum 0.9, RMSprop, and :class:`Lion`.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from optuna_nos.core.errors import NOSError
from optuna_nos.core.schedules import check_schedule_steps, lr_schedule
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from proxy.lion import Lion

__all__ = [
    "BASELINE_FLOOR",
    "PUBLISHED",
    "TRANSFER_BASELINES",
    "Lion",
    "OptimizerSpec",
    "ScheduleSteps",
    "baseline_spec",
    "equation_spec",
    "file_spec",
    "published_spec",
    "resolve_optimizer",
    "trial_spec",
]

#: Added to eta_t for optimizers that do not own their schedule.
BASELINE_FLOOR = 1e-7

#: The published optimizers the suite compares, in table order.
PUBLISHED = tuple(f"Opt{k}" for k in range(1, 11)) + tuple(f"A{k}" for k in range(1, 6))


@dataclass(frozen=True)
class ScheduleSteps:
    """T, W, H of one run's warmup -> hold -> cosine schedule."""

    total: int
    warmup: int
    hold: int

    def __post_init__(self) -> None:
        check_schedule_steps(self.total, self.warmup, self.hold)

    @classmethod
    def from_fractions(
        cls, total: int, warmup_fraction: float, hold_fraction: float
    ) -> ScheduleSteps:
        """W = round(warmup_fraction T), H = round(hold_fraction T)."""
        for name, value in (
            ("warmup_fraction", warmup_fraction),
            ("hold_fraction", hold_fraction),
        ):
            if not 0.0 <= value < 1.0:
                raise NOSError(f"{name} must lie in [0, 1), got {value!r}")
        return cls(total, round(warmup_fraction * total), round(hold_fraction * total))


def _sgd_nesterov(params: Any, lr: float = 0.1) -> Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)


_BASELINE_FACTORIES: dict[str, Callable[..., Optimizer]] = {
    "Adam": torch.optim.Adam,
    "AdamW": torch.optim.AdamW,
    "SGD": _sgd_nesterov,
    "RMSprop": torch.optim.RMSprop,
    "Lion": Lion,
}

#: Baseline names, in table order.
TRANSFER_BASELINES = tuple(_BASELINE_FACTORIES)


def _parameters(factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(factory).parameters)


def _default_lr(factory: Callable[..., Any]) -> float | None:
    default = _parameters(factory).get("lr", None)
    if default is None or not isinstance(default.default, int | float):
        return None
    return float(default.default)


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build one optimizer for a run.

    ``factory(params, lr=..., **extra)`` builds it; with ``owns_schedule`` it also receives
    ``total_steps``, ``warmup_steps`` and ``hold_steps`` (and ``seed`` when it takes one).
    ``default_lr`` is the factory's own default, the centre of a relative LR grid.
    """

    name: str
    factory: Callable[..., Optimizer]
    owns_schedule: bool
    default_lr: float | None = None
    takes_seed: bool = False
    source: str = ""

    def build(
        self, params: Iterable[Tensor], lr: float, steps: ScheduleSteps, seed: int = 0
    ) -> tuple[Optimizer, LRScheduler | None]:
        """The optimizer for a run of ``steps`` at peak ``lr``, and its scheduler if any."""
        if not lr > 0.0:
            raise NOSError(f"lr must be > 0, got {lr!r}")
        if not self.owns_schedule:
            optimizer = self.factory(params, lr=lr)
            return optimizer, schedule_scheduler(optimizer, lr, steps)
        extra: dict[str, Any] = {
            "total_steps": steps.total,
            "warmup_steps": steps.warmup,
            "hold_steps": steps.hold,
        }
        if self.takes_seed:
            extra["seed"] = seed
        return self.factory(params, lr=lr, **extra), None


def schedule_scheduler(optimizer: Optimizer, lr: float, steps: ScheduleSteps) -> LambdaLR:
    """LambdaLR with rate ``lr_schedule(lr, T, W, H)[t] + 1e-7`` at step t (clamped to T-1)."""
    rates = (lr_schedule(lr, steps.total, steps.warmup, steps.hold) + BASELINE_FLOOR).tolist()
    last = steps.total - 1
    for group in optimizer.param_groups:
        group["lr"] = lr
    return LambdaLR(optimizer, lambda t: rates[min(t, last)] / lr)


def _check_schedule_args(name: str, factory: Callable[..., Any]) -> bool:
    """Whether ``factory`` owns its schedule; NOSError if it takes only part of (T, W, H)."""
    params = _parameters(factory)
    has = [key in params for key in ("total_steps", "warmup_steps", "hold_steps")]
    if any(has) and not all(has):
        raise NOSError(
            f"{name} takes only some of total_steps/warmup_steps/hold_steps; the "
            "harness needs all three to give it the common schedule"
        )
    return all(has)


def _spec(name: str, factory: Callable[..., Optimizer], source: str) -> OptimizerSpec:
    return OptimizerSpec(
        name=name,
        factory=factory,
        owns_schedule=_check_schedule_args(name, factory),
        default_lr=_default_lr(factory),
        takes_seed="seed" in _parameters(factory),
        source=source,
    )


def baseline_spec(name: str) -> OptimizerSpec:
    """One of :data:`TRANSFER_BASELINES`."""
    factory = _BASELINE_FACTORIES.get(name)
    if factory is None:
        raise NOSError(f"unknown baseline {name!r}; expected one of {list(TRANSFER_BASELINES)}")
    return _spec(name, factory, f"baseline {name}")


def published_spec(name: str) -> OptimizerSpec:
    """A published optimizer of ``optuna_nos.optimizers`` by name (Opt1..Opt10, A1..A5, ...)."""
    from optuna_nos.optimizers import PUBLISHED_OPTIMIZERS

    cls = PUBLISHED_OPTIMIZERS.get(name)
    if cls is None:
        raise NOSError(
            f"unknown optimizer {name!r}; expected a baseline "
            f"{list(TRANSFER_BASELINES)}, a published optimizer "
            f"{sorted(PUBLISHED_OPTIMIZERS)}, a .py file or an equation with '~'"
        )
    return _spec(name, cls, f"optuna_nos.optimizers.{name}")


def file_spec(path: str | os.PathLike[str], class_name: str | None = None) -> OptimizerSpec:
    """The ``torch.optim.Optimizer`` subclass of a Python file (e.g. ``optuna-nos export``).

    The class is ``class_name`` or else the only Optimizer subclass the file defines. The
    file is imported, i.e. run: pass only files you trust, as with any Python module.
    """
    file = Path(path)
    if not file.is_file():
        raise NOSError(f"optimizer file {str(file)!r} does not exist")
    module_name = f"_transfer_optimizer_{abs(hash(str(file.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, file)
    if loader_spec is None or loader_spec.loader is None:
        raise NOSError(f"cannot import {str(file)!r} as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken user file gets a one-line error
        sys.modules.pop(module_name, None)
        raise NOSError(f"importing {str(file)!r} failed: {type(exc).__name__}: {exc}") from None
    defined = {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, Optimizer) and obj.__module__ == module_name
    }
    if class_name is not None:
        if class_name not in defined:
            raise NOSError(
                f"{str(file)!r} defines no Optimizer subclass {class_name!r}; it "
                f"defines {sorted(defined)}"
            )
        chosen = class_name
    elif len(defined) == 1:
        chosen = next(iter(defined))
    else:
        raise NOSError(
            f"{str(file)!r} defines {len(defined)} Optimizer subclasses "
            f"{sorted(defined)}; pick one with --class-name"
        )
    return _spec(chosen, defined[chosen], f"{file}:{chosen}")


def _genome_spec(
    name: str, genome: Any, source: str, settings: Settings = DEFAULT_SETTINGS
) -> OptimizerSpec:
    """``genome`` run by ``GenomeOptimizer`` with ``settings``."""
    from optuna_nos import GenomeOptimizer

    def factory(params: Any, *, lr: float, **schedule: Any) -> Optimizer:
        return GenomeOptimizer(params, genome, lr=lr, settings=settings, **schedule)

    return OptimizerSpec(
        name=name,
        factory=factory,
        owns_schedule=True,
        default_lr=None,
        takes_seed=True,
        source=source,
    )


def equation_spec(equation: str, name: str | None = None) -> OptimizerSpec:
    """A genome written in the paper's notation, run by ``optuna_nos.GenomeOptimizer``."""
    from optuna_nos import parse_equation

    genome = parse_equation(equation)
    return _genome_spec(name or equation, genome, f"equation {equation}")


def trial_spec(storage: str, study: str, trial: int, name: str | None = None) -> OptimizerSpec:
    """The genome of a study trial, run by ``GenomeOptimizer`` with the settings of the
    study's GA record."""
    import optuna

    from optuna_nos.study.config import study_settings
    from optuna_nos.study.storage import make_storage
    from optuna_nos.study.stored import trial_genome

    try:
        loaded = optuna.load_study(
            study_name=study, storage=make_storage(storage, heartbeat_interval=None)
        )
    except KeyError:
        raise NOSError(f"no study named {study!r} in the storage") from None
    matches = [t for t in loaded.get_trials(deepcopy=False) if t.number == trial]
    if not matches:
        raise NOSError(f"study {study!r} has no trial {trial}")
    genome = trial_genome(matches[0])
    if genome is None:
        raise NOSError(f"trial {trial} of study {study!r} carries no genome")
    return _genome_spec(
        name or f"{study}#{trial}",
        genome,
        f"study {study!r} trial {trial}: {genome.equation()}",
        study_settings(loaded._storage, loaded._study_id),
    )


def resolve_optimizer(text: str, *, class_name: str | None = None) -> OptimizerSpec:
    """A baseline name, a published name, an existing ``.py`` file, or an equation with ``~``."""
    if text in _BASELINE_FACTORIES:
        return baseline_spec(text)
    if text.endswith(".py") or Path(text).is_file():
        return file_spec(text, class_name)
    if "~" in text:
        return equation_spec(text)
    return published_spec(text)
