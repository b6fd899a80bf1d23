"""Optuna objective factories: ``proxy.tasks:mnist1d`` (CPU default), ``:digits``, ``:cifar10``.

A factory returns a callable ``objective(trial) -> float`` that suggests the trial's genome,
reads the fidelity the sampler chose and scores the genome with the fitness protocol::

    objective = proxy.tasks.mnist1d(device="cpu")
    study.optimize(objective, n_trials=20)

The CLI calls a factory with the study's :class:`~optuna_nos.study.config.StudyConfig`; the keys of
its ``[objective]`` table (besides ``target``) are the options below, and keyword arguments
override them. Options common to both tasks:

* ``device`` ("cuda" when available, else "cpu"), ``dtype`` ("float32" | "float64"),
  ``seed`` (int, default 0: evaluations are seeded by (seed, trial number)),
  ``cpu_threads`` (torch threads during a CPU evaluation; digits: 1, cifar10: torch's),
  ``batched_screen`` (bool), ``shuffle`` (bool; default: reshuffle except in paper mode),
  ``channels_last`` (bool, default false: NHWC convolution inputs), ``bf16`` (bool, default
  false: bfloat16 autocast of forward and loss; refused in paper mode), ``compile``
  ("none" (default) | "model" | "all": what goes through ``torch.compile``, see
  :mod:`proxy.compiled`; refused in paper mode), ``compile_mode`` (a ``torch.compile`` mode,
  e.g. "reduce-overhead" for CUDA graphs);
* protocol constants: ``stage1_lrs``, ``stage2_lrs`` (lists), ``stage1_fail_below``,
  ``screen_fail_below``, ``screen_stop_epoch``, ``screen_stop_below``, ``final_stop_epoch``,
  ``final_stop_below``, ``batch_size``, ``val_batch_size``, ``dropout``, ``bn_momentum``;
* ``init`` / ``evolution`` tables overriding a fidelity's ``width``, ``normalization``,
  ``augmentation`` (a table of ``pad``, ``flip``, ``cutout``, or false), ``total_steps``,
  ``warmup_steps``, ``final_epochs``, ``final_steps_per_epoch``, ``screen_epochs``,
  ``screen_steps_per_epoch``.

``digits`` also takes ``val_fraction`` and ``split_seed``; ``cifar10`` needs ``data_root``
and takes ``val_size`` and ``verify_checksums``; ``mnist1d`` takes ``train_size``,
``val_size``, ``test_size``, ``data_seed`` and ``split`` ("val", or "test" for the final report
only).

Baselines (:meth:`ProxyObjective.evaluate_baseline`, shown on the leaderboard): digits and
cifar10 score Adam and SGD+Nesterov written as genomes (:data:`BASELINES`); mnist1d scores
the torch optimizers of :mod:`proxy.baselines` (Adam, AdamW, SGD+Nesterov, RMSprop, Lion),
each tuned by the same learning-rate screen and schedule as the candidates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import torch

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.core.validation import is_int, is_real
from optuna_nos.space.genome import Genome
from optuna_nos.study.stored import FIDELITY_USER_ATTR, LR_ATTR
from proxy.baselines import TORCH_BASELINES, TorchBaseline
from proxy.compiled import COMPILE_CHOICES, COMPILE_MODES
from proxy.data import Augmentation, ImageDataset, load_cifar10, load_digits
from proxy.fitness import (
    DIGITS_FITNESS,
    PAPER_FITNESS,
    Fidelity,
    FitnessConfig,
    ProxyTask,
    default_device,
    evaluate_genome,
)
from proxy.packed import auto_pack_size, evaluate_pack
from proxy.protocol import EarlyStop

__all__ = ["BASELINES", "ProxyObjective", "cifar10", "digits", "fitness_config", "mnist1d"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_FIDELITY_INTS = (
    "width",
    "total_steps",
    "warmup_steps",
    "final_epochs",
    "final_steps_per_epoch",
    "screen_epochs",
    "screen_steps_per_epoch",
)
_PROTOCOL_FLOATS = (
    "stage1_fail_below",
    "screen_fail_below",
    "screen_stop_below",
    "final_stop_below",
    "dropout",
    "bn_momentum",
)
_PROTOCOL_INTS = ("screen_stop_epoch", "final_stop_epoch", "batch_size", "val_batch_size")
_COMMON_KEYS = (
    "device",
    "dtype",
    "seed",
    "cpu_threads",
    "batched_screen",
    "shuffle",
    "channels_last",
    "bf16",
    "compile",
    "compile_mode",
    "stage1_lrs",
    "stage2_lrs",
    "init",
    "evolution",
    *_PROTOCOL_FLOATS,
    *_PROTOCOL_INTS,
)


#: Built-in baselines, written as genomes of the search space so they are scored with exactly
#: the candidates' protocol (a project default).
BASELINES: dict[str, str] = {
    "adam": "None ~ (v hat) / (sqrt(|s hat|))",
    "sgd_nesterov": "Nest ~ id(id(g))",
}


class ProxyObjective:
    """``objective(trial)``: suggest the genome, read the fidelity, return the fitness.

    With ``artifact_dir`` set, each trial with a genome also gets a PNG artifact of its
    effective learning-rate schedule and decay curves: at the lr the screen chose, or at lr 1
    (relative) when the screen chose none (a pruned trial).

    With ``confirm_records`` (default off), a trial whose fitness beats the study's best at
    its fidelity is trained again with a second seed and scores the mean of the two
    (:mod:`proxy.confirm`): fewer lucky seeds selected, one extra training per record.
    """

    def __init__(
        self,
        task: ProxyTask,
        space: str = "paper",
        artifact_dir: str | None = None,
        *,
        torch_baselines: bool = False,
        confirm_records: bool = False,
    ) -> None:
        self.task = task
        self.confirm_records = confirm_records
        self.space = space
        self.artifact_dir = artifact_dir
        self.torch_baselines = torch_baselines
        self.baselines: tuple[str, ...] = TORCH_BASELINES if torch_baselines else tuple(BASELINES)

    def __call__(self, trial: Any) -> float:
        from optuna_nos.study.suggest import suggest_genome, trial_fidelity

        genome = suggest_genome(trial, self.space, self.task.settings)
        fidelity = trial_fidelity(trial)
        if trial.user_attrs.get(FIDELITY_USER_ATTR) != fidelity:
            trial.set_user_attr(FIDELITY_USER_ATTR, fidelity)
        try:
            if self.confirm_records:
                from proxy.confirm import evaluate_confirmed

                return evaluate_confirmed(genome, self.task, fidelity, trial)
            return evaluate_genome(genome, self.task, fidelity, trial=trial)
        finally:
            self._record_recipe(trial, fidelity)
            self._upload_schedule(trial, genome, fidelity)

    def evaluate_pack(self, pack: Any) -> None:
        """Evaluate a pack of trials together (:func:`proxy.packed.evaluate_pack`)."""
        evaluate_pack(self, pack)

    def auto_pack(self) -> int:
        """``--pack auto``: the pack size measured on this device."""
        return auto_pack_size(self.task)

    def check_environment(self) -> None:
        """Check the device, then load the data onto it (kept for the trials): raises
        :class:`NOSError` when the device is absent or the data are missing."""
        device = self.task.device or default_device()
        try:
            torch.empty(1, device=device)
        except Exception as exc:  # noqa: BLE001 - torch raises several kinds here
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise NOSError(f"device {device!r} is not available: {first}") from None
        self.task.dataset()

    def _record_recipe(self, trial: Any, fidelity: str) -> None:
        """System attr ``nos:recipe``: the lr the screen chose and the schedule's steps."""
        from optuna_nos.study.stored import RECIPE_ATTR
        from optuna_nos.study.suggest import set_system_attr

        lr = trial.user_attrs.get(LR_ATTR)
        if isinstance(lr, int | float):
            spec = self.task.config.fidelity(fidelity)
            set_system_attr(
                trial,
                RECIPE_ATTR,
                {
                    "lr": float(lr),
                    "total_steps": spec.total_steps,
                    "warmup_steps": spec.warmup_steps,
                },
            )

    def _upload_schedule(self, trial: Any, genome: Genome, fidelity: str) -> str | None:
        """Upload the schedule PNG at the screen's lr (lr 1, relative, when none was chosen)."""
        if self.artifact_dir is None:
            return None
        from optuna_nos.study.artifacts import upload_schedule_artifact

        lr = trial.user_attrs.get(LR_ATTR)
        spec = self.task.config.fidelity(fidelity)
        return upload_schedule_artifact(
            trial,
            genome,
            self.artifact_dir,
            lr=float(lr) if isinstance(lr, int | float) else 1.0,
            total_steps=spec.total_steps,
            warmup_steps=spec.warmup_steps,
        )

    def baseline_rule(self, name: str) -> Genome | TorchBaseline:
        """The update rule of the baseline called ``name`` (one of :attr:`baselines`)."""
        from optuna_nos.space.parse import parse_equation

        if name not in self.baselines:
            raise NOSError(f"unknown baseline {name!r}; known: {', '.join(self.baselines)}")
        if self.torch_baselines:
            return TorchBaseline(name)
        return parse_equation(BASELINES[name])

    def evaluate_baseline(self, name: str, fidelity: str) -> float:
        """Fitness of a built-in baseline (:attr:`baselines`) under the candidates' protocol.

        A baseline that fails the screen scores NaN.
        """
        import optuna

        try:
            return evaluate_genome(self.baseline_rule(name), self.task, fidelity)
        except optuna.TrialPruned:
            return math.nan


def digits(config: Any = None, /, **options: Any) -> ProxyObjective:
    """scikit-learn's 8x8 digits with the :data:`DIGITS_FITNESS` preset."""
    merged, settings, space = _merge(config, options)
    val_fraction = _number(merged.pop("val_fraction", 0.2), "val_fraction")
    split_seed = _integer(merged.pop("split_seed", 0), "split_seed")
    load = partial(load_digits, val_fraction=val_fraction, seed=split_seed)
    merged.setdefault("cpu_threads", 1)
    return ProxyObjective(
        _task(load, DIGITS_FITNESS, merged, settings), space, _artifact_dir(config)
    )


def mnist1d(config: Any = None, /, **options: Any) -> ProxyObjective:
    """The CPU default: MNIST-1D (:mod:`proxy.mnist1d`) with its :data:`MNIST1D_FITNESS`
    preset; the baselines are the tuned torch optimizers."""
    from proxy.mnist1d import MNIST1D_FITNESS, load_mnist1d

    merged, settings, space = _merge(config, options)
    sizes = {
        key: _integer(merged.pop(key, default), key)
        for key, default in (("train_size", 4000), ("val_size", 2000), ("test_size", 2000))
    }
    data_seed = _integer(merged.pop("data_seed", 42), "data_seed")
    split = merged.pop("split", "val")
    load = partial(load_mnist1d, **sizes, seed=data_seed, split=split)
    merged.setdefault("cpu_threads", 1)
    return ProxyObjective(
        _task(load, MNIST1D_FITNESS, merged, settings),
        space,
        _artifact_dir(config),
        torch_baselines=True,
    )


def cifar10(config: Any = None, /, **options: Any) -> ProxyObjective:
    """The paper's proxy: CIFAR-10 from ``data_root`` with the :data:`PAPER_FITNESS` protocol."""
    merged, settings, space = _merge(config, options)
    root = merged.pop("data_root", None)
    if not isinstance(root, str) or not root:
        raise NOSError(
            "config key 'objective.data_root' must name the folder that holds "
            f"cifar-10-batches-py/, got {root!r}"
        )
    val_size = _integer(merged.pop("val_size", 5000), "val_size")
    verify = _boolean(merged.pop("verify_checksums", True), "verify_checksums")
    load = partial(load_cifar10, root, val_size=val_size, verify_checksums=verify)
    return ProxyObjective(
        _task(load, PAPER_FITNESS, merged, settings), space, _artifact_dir(config)
    )


# -- option parsing ----------------------------------------------------------------------------


def _artifact_dir(config: Any) -> str | None:
    return getattr(config, "artifact_dir", None) if config is not None else None


def _merge(config: Any, options: Mapping[str, Any]) -> tuple[dict[str, Any], Settings, str]:
    """Objective options from a StudyConfig and keyword overrides; settings; search space."""
    merged: dict[str, Any] = {}
    settings: Settings = DEFAULT_SETTINGS
    space = "paper"
    if config is not None:
        merged.update(config.objective_options)
        settings = config.settings
        space = config.variant
    merged.update(options)
    settings = merged.pop("settings", settings)
    space = merged.pop("space", space)
    if not isinstance(settings, Settings):
        raise NOSError(f"settings must be a Settings, got {settings!r}")
    return merged, settings, space


def _task(
    load: Callable[[], ImageDataset],
    preset: FitnessConfig,
    options: dict[str, Any],
    settings: Settings,
) -> ProxyTask:
    unknown = sorted(set(options) - set(_COMMON_KEYS))
    if unknown:
        raise NOSError(
            f"unknown config key 'objective.{unknown[0]}'; allowed: "
            f"{', '.join(sorted(_COMMON_KEYS))} and the task's own keys"
        )
    dtype_name = options.get("dtype", "float32")
    if dtype_name not in _DTYPES:
        raise NOSError(
            f"config key 'objective.dtype' must be one of {', '.join(_DTYPES)}, got {dtype_name!r}"
        )
    device = options.get("device")
    if device is not None and not isinstance(device, str):
        raise NOSError(f"config key 'objective.device' must be a string, got {device!r}")
    threads = options.get("cpu_threads")
    return ProxyTask(
        load=load,
        config=fitness_config(options, preset),
        settings=settings,
        device=device,
        seed=_integer(options.get("seed", 0), "seed"),
        dtype=_DTYPES[dtype_name],
        cpu_threads=None if threads is None else _integer(threads, "cpu_threads"),
    )


def fitness_config(
    options: Mapping[str, Any], preset: FitnessConfig = PAPER_FITNESS
) -> FitnessConfig:
    """``preset`` with the protocol options of ``options`` applied (unknown keys ignored)."""
    changes: dict[str, Any] = {}
    for key in ("stage1_lrs", "stage2_lrs"):
        if key in options:
            values = options[key]
            if not isinstance(values, list | tuple):
                raise NOSError(
                    f"config key 'objective.{key}' must be a list of numbers, got {values!r}"
                )
            changes[key] = tuple(_number(v, key) for v in values)
    for key in ("stage1_fail_below", "screen_fail_below", "dropout", "bn_momentum"):
        if key in options:
            changes[key] = _number(options[key], key)
    for key in ("batch_size", "val_batch_size"):
        if key in options:
            changes[key] = _integer(options[key], key)
    for key in ("batched_screen", "shuffle", "channels_last", "bf16"):
        if key in options:
            changes[key] = _boolean(options[key], key)
    if "compile" in options:
        changes["compile"] = _choice(options["compile"], "compile", COMPILE_CHOICES)
    if "compile_mode" in options:
        changes["compile_mode"] = _choice(options["compile_mode"], "compile_mode", COMPILE_MODES)
    for name in ("screen", "final"):
        rule: EarlyStop = getattr(preset, f"{name}_early_stop")
        epoch = _integer(options.get(f"{name}_stop_epoch", rule.min_epoch), f"{name}_stop_epoch")
        below = _number(options.get(f"{name}_stop_below", rule.below), f"{name}_stop_below")
        changes[f"{name}_early_stop"] = EarlyStop(epoch, below)
    for name in ("init", "evolution"):
        if name in options:
            changes[name] = _fidelity(getattr(preset, name), options[name], name)
    return replace(preset, **changes)


def _fidelity(base: Fidelity, table: Any, name: str) -> Fidelity:
    if not isinstance(table, Mapping):
        raise NOSError(f"config key 'objective.{name}' must be a table, got {table!r}")
    allowed = (*_FIDELITY_INTS, "normalization", "augmentation")
    changes: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{name}.{key}"
        if key in _FIDELITY_INTS:
            changes[key] = _integer(value, where)
        elif key == "normalization":
            changes[key] = value
        elif key == "augmentation":
            changes[key] = _augmentation(value, where)
        else:
            raise NOSError(
                f"unknown config key 'objective.{where}'; allowed: {', '.join(allowed)}"
            )
    return replace(base, **changes)


def _augmentation(value: Any, where: str) -> Augmentation | None:
    if value is False:
        return None
    if not isinstance(value, Mapping):
        raise NOSError(
            f"config key 'objective.{where}' must be false or a table of pad, flip "
            f"and cutout, got {value!r}"
        )
    unknown = sorted(set(value) - {"pad", "flip", "cutout"})
    if unknown:
        raise NOSError(
            f"unknown config key 'objective.{where}.{unknown[0]}'; allowed: pad, flip, cutout"
        )
    return Augmentation(**value)


def _number(value: Any, key: str) -> float:
    if not is_real(value) or not math.isfinite(value):
        raise NOSError(f"config key 'objective.{key}' must be a finite number, got {value!r}")
    return float(value)


#: The range of each integer option (a fidelity's keys without their table's name); steps,
#: epochs and the other counts get :data:`_COUNT_RANGE`.
_INT_RANGES = {
    "width": (1, 4_096),
    "batch_size": (1, 65_536),
    "val_batch_size": (1, 65_536),
    "seed": (0, 2**32 - 1),
    "split_seed": (0, 2**32 - 1),
    "cpu_threads": (1, 1_024),
    "val_size": (1, 1_000_000),
}
_COUNT_RANGE = (0, 100_000_000)


def _integer(value: Any, key: str) -> int:
    if not is_int(value):
        raise NOSError(f"config key 'objective.{key}' must be an integer, got {value!r}")
    low, high = _INT_RANGES.get(key.rsplit(".", 1)[-1], _COUNT_RANGE)
    if not low <= value <= high:
        raise NOSError(
            f"config key 'objective.{key}' = {value} is not allowed; allowed: an "
            f"integer in {low}..{high}"
        )
    return value


def _choice(value: Any, key: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise NOSError(
            f"config key 'objective.{key}' = {value!r} is not allowed; allowed: "
            f"{', '.join(allowed)}"
        )
    return str(value)


def _boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise NOSError(f"config key 'objective.{key}' must be true or false, got {value!r}")
    return value
