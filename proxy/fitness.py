"""The fitness protocol: a two-stage learning-rate screen, then one full run.

1. Stage 1 trains a fresh model for each eta in ``stage1_lrs`` (10, 1e-2, 1e-5) with the
   fidelity's full schedule (T, W), ``screen_epochs`` x ``screen_steps_per_epoch`` steps
   (4 x 200), stopping a run after an epoch >= 2 whose training accuracy is < 0.25. A run's
   record is its best epoch's training accuracy. All records < 0.25: **fail**.
2. Stage 2 does the same for ``stage2_lrs`` (1, 1e-1, 1e-3, 1e-4). Best of the 7 records
   < 0.40: **fail**.
3. The final run trains a fresh model at the best record's eta (ties to the first, in the
   order stage 1 then stage 2) for ``final_epochs`` x ``final_steps_per_epoch`` steps,
   validating after every epoch and stopping (not failing) after an epoch >= 4 whose
   training accuracy is < 0.40. **Fitness = the best validation accuracy.**

A run also stops at its first non-finite batch loss (its completed epochs count). The
decisions are the pure functions of :mod:`proxy.protocol`; :func:`run_protocol` sequences
them over any :class:`Trainer`, so they can be tested on hand-made curves.

Every constant is a field of :class:`FitnessConfig` (defaults: the paper's values).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.core.validation import check_int, is_int, is_real
from optuna_nos.space.genome import Genome
from optuna_nos.study.stored import FINAL_ATTR, LR_ATTR, REASON_ATTR, SCREEN_ATTR
from proxy.baselines import TorchBaseline
from proxy.compiled import check_compile
from proxy.data import NORMALIZATIONS, Augmentation, ImageDataset, normalization
from proxy.measure import default_batching
from proxy.model import BN_MOMENTUM
from proxy.protocol import EarlyStop, ScreenDecision, decide_screen, fitness_of, run_record
from proxy.screen import (
    EpochCallback,
    RunResult,
    RunSeeds,
    RunSpec,
    check_paper_mode,
    train_runs,
)

__all__ = [
    "DIGITS_FITNESS",
    "PAPER_FITNESS",
    "REASON_ATTR",
    "Fidelity",
    "FitnessConfig",
    "FitnessResult",
    "GenomeTrainer",
    "ProxyTask",
    "Trainer",
    "default_device",
    "evaluate_genome",
    "measure_fitness",
    "run_protocol",
]

FIDELITIES = ("init", "evolution")


@dataclass(frozen=True)
class Fidelity:
    """One fidelity: model width, data treatment and step counts."""

    name: str
    width: int
    normalization: str
    augmentation: Augmentation | None
    total_steps: int
    warmup_steps: int
    final_epochs: int
    final_steps_per_epoch: int
    screen_epochs: int = 4
    screen_steps_per_epoch: int = 200

    def __post_init__(self) -> None:
        for key in (
            "width",
            "total_steps",
            "final_epochs",
            "final_steps_per_epoch",
            "screen_epochs",
            "screen_steps_per_epoch",
        ):
            value = getattr(self, key)
            if not is_int(value) or value < 1:
                raise NOSError(f"fidelity {self.name!r}: {key} must be an int >= 1, got {value!r}")
        if not is_int(self.warmup_steps) or not 0 <= self.warmup_steps < self.total_steps:
            raise NOSError(
                f"fidelity {self.name!r}: warmup_steps must be an int in "
                f"0..total_steps-1, got {self.warmup_steps!r}"
            )
        if self.normalization not in NORMALIZATIONS:
            raise NOSError(
                f"fidelity {self.name!r}: normalization must be one of "
                f"{', '.join(NORMALIZATIONS)}, got {self.normalization!r}"
            )
        for kind, epochs, steps in (
            ("final", self.final_epochs, self.final_steps_per_epoch),
            ("screen", self.screen_epochs, self.screen_steps_per_epoch),
        ):
            if epochs * steps > self.total_steps:
                raise NOSError(
                    f"fidelity {self.name!r}: the {kind} run's {epochs} x {steps} "
                    f"steps exceed total_steps = {self.total_steps}"
                )


PAPER_INIT = Fidelity(
    "init",
    width=32,
    normalization="scale",
    augmentation=None,
    total_steps=8000,
    warmup_steps=800,
    final_epochs=40,
    final_steps_per_epoch=200,
)
PAPER_EVOLUTION = Fidelity(
    "evolution",
    width=48,
    normalization="standardize",
    augmentation=Augmentation(pad=4, flip=True, cutout=8),
    total_steps=16000,
    warmup_steps=800,
    final_epochs=40,
    final_steps_per_epoch=400,
)


@dataclass(frozen=True)
class FitnessConfig:
    """Every constant of the protocol; the defaults are the paper's."""

    init: Fidelity = PAPER_INIT
    evolution: Fidelity = PAPER_EVOLUTION
    stage1_lrs: tuple[float, ...] = (10.0, 1e-2, 1e-5)
    stage2_lrs: tuple[float, ...] = (1.0, 1e-1, 1e-3, 1e-4)
    screen_early_stop: EarlyStop = EarlyStop(min_epoch=2, below=0.25)
    stage1_fail_below: float = 0.25
    screen_fail_below: float = 0.40
    final_early_stop: EarlyStop = EarlyStop(min_epoch=4, below=0.40)
    batch_size: int = 128
    val_batch_size: int = 128
    dropout: float = 0.2
    #: BatchNorm's running-statistics momentum (PyTorch convention; the paper's Keras 0.99).
    bn_momentum: float = BN_MOMENTUM
    #: None follows ``Settings.shuffle`` (reshuffle each pass except in paper mode).
    shuffle: bool | None = None
    #: Train the runs of a screen stage together in one stacked model; None decides by a
    #: timing on the device, once per model size (:func:`proxy.measure.default_batching`).
    batched_screen: bool | None = None
    #: NHWC convolution inputs (:attr:`proxy.screen.RunSpec.channels_last`).
    channels_last: bool = False
    #: bfloat16 autocast of forward and loss (:attr:`proxy.screen.RunSpec.bf16`).
    bf16: bool = False
    #: What goes through ``torch.compile``: "none", "model" or "all" (:mod:`proxy.compiled`).
    compile: str = "none"
    #: The ``torch.compile`` mode (None: torch's default; "reduce-overhead": CUDA graphs).
    compile_mode: str | None = None

    def __post_init__(self) -> None:
        if not self.stage1_lrs:
            raise NOSError("stage1_lrs must hold at least one learning rate")
        for lr in (*self.stage1_lrs, *self.stage2_lrs):
            if not is_real(lr) or not math.isfinite(lr) or lr < 0:
                raise NOSError(f"screen learning rates must be finite numbers >= 0, got {lr!r}")
        for key in ("batch_size", "val_batch_size"):
            value = getattr(self, key)
            check_int(key, value, minimum=1)
        if not 0.0 <= self.dropout < 1.0:
            raise NOSError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        check_compile(self.compile, self.compile_mode)
        if self.init.name != "init" or self.evolution.name != "evolution":
            raise NOSError(
                f"the fidelities must be named 'init' and 'evolution', got "
                f"{self.init.name!r} and {self.evolution.name!r}"
            )

    def fidelity(self, name: str | Fidelity) -> Fidelity:
        """The fidelity called ``name`` ("init" or "evolution")."""
        if isinstance(name, Fidelity):
            return name
        if name == "init":
            return self.init
        if name == "evolution":
            return self.evolution
        raise NOSError(f"fidelity must be one of {', '.join(FIDELITIES)}, got {name!r}")

    @property
    def screen_lrs(self) -> tuple[float, ...]:
        """All screen learning rates in argmax order: stage 1, then stage 2."""
        return (*self.stage1_lrs, *self.stage2_lrs)


#: The CPU default on scikit-learn's 8x8 digits: the paper's protocol shrunk to seconds. As in
#: the paper, the screen (4 x 10 steps) lies inside the warmup (W = 40); batch size 128.
DIGITS_FITNESS = FitnessConfig(
    init=Fidelity(
        "init",
        width=8,
        normalization="scale",
        augmentation=None,
        total_steps=300,
        warmup_steps=40,
        final_epochs=10,
        final_steps_per_epoch=30,
        screen_epochs=4,
        screen_steps_per_epoch=10,
    ),
    evolution=Fidelity(
        "evolution",
        width=12,
        normalization="standardize",
        augmentation=Augmentation(pad=1, flip=False, cutout=2),
        total_steps=400,
        warmup_steps=40,
        final_epochs=10,
        final_steps_per_epoch=40,
        screen_epochs=4,
        screen_steps_per_epoch=10,
    ),
)
PAPER_FITNESS = FitnessConfig()


# -- the protocol over any trainer -----------------------------------------------------------


class Trainer(Protocol):
    """Trains runs for :func:`run_protocol`: fresh models, one per learning rate."""

    def screen(self, lrs: Sequence[float]) -> list[RunResult]:
        """Screen runs (training accuracy per epoch, early stop per the screen rule)."""
        ...

    def final(self, lr: float) -> RunResult:
        """The final run (training and validation accuracy per epoch)."""
        ...


@dataclass
class FitnessResult:
    """The outcome of one evaluation. ``fitness`` is None exactly when it failed."""

    fitness: float | None
    reason: str | None
    lr: float | None
    screen: list[RunResult] = field(default_factory=list)
    final: RunResult | None = None

    @property
    def failed(self) -> bool:
        return self.fitness is None

    def screen_summary(self, numpy_nan: bool) -> list[dict[str, Any]]:
        """Per screen run: lr, record (None when not finite), epochs and stop reason."""
        summary = []
        for run in self.screen:
            record = run_record(run.train_acc, numpy_nan=numpy_nan)
            summary.append(
                {**run.to_dict(), "record": round(record, 6) if math.isfinite(record) else None}
            )
        return summary


def run_protocol(
    trainer: Trainer,
    config: FitnessConfig,
    *,
    numpy_nan: bool,
    on_screen_done: Callable[[float, list[RunResult]], None] | None = None,
) -> FitnessResult:
    """Stage 1, stage 2 (unless stage 1 failed), then the final run (unless the screen failed).

    ``on_screen_done(lr, runs)`` is called with the chosen lr before the final run starts.
    """

    def decide(runs: list[RunResult], complete: bool) -> ScreenDecision:
        return screen_decision(config, runs, complete=complete, numpy_nan=numpy_nan)

    runs = trainer.screen(config.stage1_lrs)
    decision = decide(runs, complete=not config.stage2_lrs)
    if decision.reason is None and config.stage2_lrs:
        runs += trainer.screen(config.stage2_lrs)
        decision = decide(runs, complete=True)
    if decision.reason is not None:
        return FitnessResult(None, decision.reason, None, runs)
    assert decision.lr is not None
    if on_screen_done is not None:
        on_screen_done(decision.lr, runs)
    return final_result(decision.lr, runs, trainer.final(decision.lr), numpy_nan=numpy_nan)


def screen_decision(
    config: FitnessConfig, runs: list[RunResult], *, complete: bool, numpy_nan: bool
) -> ScreenDecision:
    """The screen's decision on ``runs`` (the first ``len(runs)`` screen lrs, in order)."""
    records = [run_record(run.train_acc, numpy_nan=numpy_nan) for run in runs]
    return decide_screen(
        config.screen_lrs[: len(runs)],
        records,
        stage1_size=len(config.stage1_lrs),
        stage1_below=config.stage1_fail_below,
        screen_below=config.screen_fail_below,
        numpy_nan=numpy_nan,
        complete=complete,
    )


def final_result(
    lr: float, screen: list[RunResult], final: RunResult, *, numpy_nan: bool
) -> FitnessResult:
    """The evaluation's result from its final run at the chosen ``lr``."""
    fitness = fitness_of(final.val_acc, numpy_nan=numpy_nan)
    if fitness is None:
        stop = f" ({final.stop})" if final.stop else ""
        return FitnessResult(
            None, f"final run at lr {lr:g}: no finite validation accuracy{stop}", lr, screen, final
        )
    return FitnessResult(fitness, None, lr, screen, final)


# -- the real trainer ------------------------------------------------------------------------


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


class GenomeTrainer:
    """Trains a genome's runs on a data set at one fidelity (the :class:`Trainer` used live)."""

    def __init__(
        self,
        genome: Genome | TorchBaseline,
        data: ImageDataset,
        fidelity: Fidelity,
        config: FitnessConfig,
        *,
        seed: int,
        settings: Settings = DEFAULT_SETTINGS,
        dtype: torch.dtype = torch.float32,
        on_epoch: EpochCallback | None = None,
    ) -> None:
        self.config = config
        self.seeds = RunSeeds.derive(seed)
        self.on_epoch = on_epoch
        shuffle = settings.shuffle if config.shuffle is None else config.shuffle
        self.screen_spec = RunSpec(
            genome=genome,
            width=fidelity.width,
            train=data.train,
            norm=normalization(data, fidelity.normalization),
            augmentation=fidelity.augmentation,
            total_steps=fidelity.total_steps,
            warmup_steps=fidelity.warmup_steps,
            epochs=fidelity.screen_epochs,
            steps_per_epoch=fidelity.screen_steps_per_epoch,
            early_stop=config.screen_early_stop,
            num_classes=data.num_classes,
            dropout=config.dropout,
            batch_size=config.batch_size,
            shuffle=shuffle,
            bn_momentum=config.bn_momentum,
            settings=settings,
            dtype=dtype,
            channels_last=config.channels_last,
            bf16=config.bf16,
            compile=config.compile,
            compile_mode=config.compile_mode,
        )
        self.final_spec = replace(
            self.screen_spec,
            epochs=fidelity.final_epochs,
            steps_per_epoch=fidelity.final_steps_per_epoch,
            early_stop=config.final_early_stop,
            val=data.val,
            val_batch_size=config.val_batch_size,
        )

    def screen(self, lrs: Sequence[float]) -> list[RunResult]:
        batched = self.config.batched_screen
        if batched is None:
            batched = default_batching(self.screen_spec, len(lrs))
        return train_runs(self.screen_spec, lrs, self.seeds, batched=batched)

    def final(self, lr: float) -> RunResult:
        return train_runs(self.final_spec, [lr], self.seeds, on_epoch=self.on_epoch)[0]


# -- tasks and the Optuna entry point --------------------------------------------------------


@dataclass
class ProxyTask:
    """A proxy task: how to load its data, the protocol's constants and where to train.

    ``seed`` seeds every evaluation (combined with the trial number inside a study);
    ``None`` draws fresh seeds each time. ``cpu_threads`` sets torch's intra-op threads for
    the duration of an evaluation on the CPU (tiny models run fastest on one thread,
    especially when several workers share the cores); None leaves torch's setting alone.
    """

    load: Callable[[], ImageDataset]
    config: FitnessConfig = PAPER_FITNESS
    settings: Settings = DEFAULT_SETTINGS
    device: str | None = None
    seed: int | None = 0
    dtype: torch.dtype = torch.float32
    cpu_threads: int | None = None
    _data: ImageDataset | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.cpu_threads is not None and (not is_int(self.cpu_threads) or self.cpu_threads < 1):
            raise NOSError(f"cpu_threads must be an int >= 1 or None, got {self.cpu_threads!r}")
        check_paper_mode(self.settings, bf16=self.config.bf16, compile=self.config.compile)

    def dataset(self) -> ImageDataset:
        """The data on the task's device, loaded on first use."""
        if self._data is None:
            self._data = self.load().to(self.device or default_device())
        return self._data

    @contextmanager
    def threads(self) -> Iterator[None]:
        """torch's intra-op threads set to ``cpu_threads`` while the block trains on the CPU
        (restored after it)."""
        before = torch.get_num_threads()
        on_cpu = self.dataset().train.images.device.type == "cpu"
        threads = self.cpu_threads if on_cpu else None
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            if threads is not None:
                torch.set_num_threads(before)

    def evaluation_seed(self, trial_number: int | None) -> int:
        if self.seed is None:
            return int(np.random.SeedSequence().generate_state(1)[0])
        if trial_number is None:
            return self.seed
        return int(np.random.SeedSequence([self.seed, trial_number]).generate_state(1)[0])


def measure_fitness(
    genome: Genome | TorchBaseline,
    task: ProxyTask,
    fidelity: str | Fidelity,
    *,
    seed: int | None = None,
    on_epoch: EpochCallback | None = None,
    on_screen_done: Callable[[float, list[RunResult]], None] | None = None,
) -> FitnessResult:
    """Run the whole protocol for ``genome``; failures come back as a result, not raised."""
    data = task.dataset()
    trainer = GenomeTrainer(
        genome,
        data,
        task.config.fidelity(fidelity),
        task.config,
        seed=task.evaluation_seed(None) if seed is None else seed,
        settings=task.settings,
        dtype=task.dtype,
        on_epoch=on_epoch,
    )
    with task.threads():
        return run_protocol(
            trainer,
            task.config,
            numpy_nan=task.settings.numpy_nan_semantics,
            on_screen_done=on_screen_done,
        )


def evaluate_genome(
    genome: Genome | TorchBaseline, task: ProxyTask, fidelity: str | Fidelity, *, trial: Any = None
) -> float:
    """Fitness of ``genome`` for an Optuna objective.

    With a trial: every final-run epoch's validation accuracy is reported
    (``trial.report(acc, epoch)``) and the pruner consulted; the user attr ``lr`` (the chosen
    learning rate) and the system attrs ``nos:screen`` (the screen runs) and ``nos:final``
    (the final run; long, so kept out of the dashboard's user attrs) are set; a failure or a
    prune sets ``nos.reason`` and raises :class:`optuna.TrialPruned`.

    In paper mode a NaN fitness (numpy semantics) is returned as it is, which Optuna records
    as a failed trial.
    """
    import optuna

    from optuna_nos.study.suggest import set_system_attr

    numpy_nan = task.settings.numpy_nan_semantics
    screen_summary: list[dict[str, Any]] = []

    def screen_done(lr: float, runs: list[RunResult]) -> None:
        screen_summary.extend(FitnessResult(None, None, lr, runs).screen_summary(numpy_nan))
        if trial is not None:
            trial.set_user_attr(LR_ATTR, lr)
            set_system_attr(trial, SCREEN_ATTR, screen_summary)

    def report(epoch: int, run: RunResult) -> None:
        if trial is None:
            return
        accuracy = run.val_acc[-1]
        trial.report(accuracy, epoch)
        if trial.should_prune():
            reason = f"pruned after epoch {epoch} (validation accuracy {accuracy:.4f})"
            if REASON_ATTR not in trial.user_attrs:
                trial.set_user_attr(REASON_ATTR, reason)
            set_system_attr(trial, FINAL_ATTR, run.to_dict())
            raise optuna.TrialPruned(reason)

    seed = task.evaluation_seed(None if trial is None else trial.number)
    result = measure_fitness(
        genome, task, fidelity, seed=seed, on_epoch=report, on_screen_done=screen_done
    )
    if trial is not None:
        if not screen_summary:
            set_system_attr(trial, SCREEN_ATTR, result.screen_summary(numpy_nan))
        if result.final is not None:
            set_system_attr(trial, FINAL_ATTR, result.final.to_dict())
    if result.failed:
        assert result.reason is not None
        if trial is not None:
            trial.set_user_attr(REASON_ATTR, result.reason)
        raise optuna.TrialPruned(result.reason)
    assert result.fitness is not None
    return result.fitness
