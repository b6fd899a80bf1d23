"""Train runs of the fitness protocol: several learning rates at once, in one stacked model.

:func:`train_runs` trains one fresh ConvNet per learning rate, all from the same seeds (same
initial weights, same batches, same augmentation, same dropout masks), as a
:class:`~proxy.stack.StackedConvNet` under one :class:`~optuna_nos.GenomeOptimizer` with a
param group per run. Each run's record is exactly what training it alone would give (the
tests check this against a plain ConvNet in float64); only the genome's own dropout ops draw
their masks in a different order. With ``batched=False`` the runs go one after another.
:func:`train_packed` trains several candidates' runs the same way in one stack, each
candidate under its own optimizer (the packs of :mod:`proxy.packed`).

Per epoch of ``steps_per_epoch`` steps a run records its training accuracy (correct
predictions / examples seen over the epoch, training mode) and, when a validation split is
given, its validation accuracy (eval mode). A run stops

* at the first batch whose loss is not finite; the unfinished epoch is not recorded, except
  in paper mode, which records its training accuracy up to and including that batch (and,
  with a validation split, its validation accuracy), as the released code's Keras history does;
* after an epoch its :class:`~proxy.protocol.EarlyStop` rule rejects (that epoch counts);
* when ``on_epoch`` raises (the pruner), which ends the whole call.

Nothing synchronises with the device inside an epoch: losses and correct counts stay on
the device until the epoch ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.optim.compiled_step import CompiledGenomeOptimizer
from optuna_nos.optim.torch_optim import GenomeOptimizer
from optuna_nos.space.genome import Genome
from proxy.baselines import ScheduledOptimizer, TorchBaseline
from proxy.compiled import StackGraphs, check_compile, shared_graphs, stack_logits, stack_losses
from proxy.data import (
    Augmentation,
    ImageSplit,
    Normalization,
    training_batches,
    validation_batches,
)
from proxy.model import BN_MOMENTUM, ConvNet
from proxy.protocol import EarlyStop
from proxy.stack import StackedConvNet, needs_per_tensor_layout

__all__ = [
    "Candidate",
    "PackEpoch",
    "RunResult",
    "RunSeeds",
    "RunSpec",
    "batching_pays",
    "check_paper_mode",
    "fresh_model",
    "genome_optimizer",
    "train_epoch",
    "train_epochs",
    "train_packed",
    "train_runs",
    "train_stack",
    "validate",
]

#: Largest first-layer activation (batch x width x H x W values) for which the batched screen
#: is used on a CPU by default; past it, one copy at a time stays in cache and runs faster.
CPU_BATCHED_MAX_ACTIVATION = 2**20


class Stepper(Protocol):
    """Anything with a ``step()`` that updates the stack's parameters from their gradients."""

    def step(self) -> Any: ...


#: Called after each recorded epoch of a run with (0-based epoch, the run's result so far).
EpochCallback = Callable[[int, "RunResult"], None]


@dataclass
class RunResult:
    """One training run: its learning rate, per-epoch accuracies and why it stopped early."""

    lr: float
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    stop: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly summary (for trial user attrs)."""
        return {
            "lr": self.lr,
            "train_acc": [round(a, 6) for a in self.train_acc],
            "val_acc": [round(a, 6) for a in self.val_acc],
            "stop": self.stop,
        }


@dataclass(frozen=True)
class RunSeeds:
    """Seeds of one evaluation: model init, dropout masks, batches/augmentation, optimizer."""

    model: int
    dropout: int
    data: int
    optimizer: int

    @classmethod
    def derive(cls, seed: int) -> RunSeeds:
        """Four independent seeds from one (numpy's SeedSequence)."""
        model, dropout, data, optimizer = np.random.SeedSequence(seed).generate_state(4)
        return cls(int(model), int(dropout), int(data), int(optimizer))


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs besides the learning rate (one fidelity's settings)."""

    genome: Genome | TorchBaseline
    width: int
    train: ImageSplit
    norm: Normalization
    augmentation: Augmentation | None
    total_steps: int
    warmup_steps: int
    epochs: int
    steps_per_epoch: int
    early_stop: EarlyStop
    num_classes: int = 10
    dropout: float = 0.2
    batch_size: int = 128
    shuffle: bool = True
    bn_momentum: float = BN_MOMENTUM
    val: ImageSplit | None = None
    val_batch_size: int = 128
    settings: Settings = DEFAULT_SETTINGS
    dtype: torch.dtype = torch.float32
    #: Feed the convolutions NHWC batches (``torch.channels_last``); the same arithmetic.
    channels_last: bool = False
    #: Run forward and loss under bfloat16 autocast (parameters and optimizer stay ``dtype``).
    bf16: bool = False
    #: What goes through ``torch.compile``: "none", "model" or "all" (:mod:`proxy.compiled`).
    compile: str = "none"
    #: The ``torch.compile`` mode (None: torch's default; "reduce-overhead": CUDA graphs).
    compile_mode: str | None = None

    def __post_init__(self) -> None:
        check_compile(self.compile, self.compile_mode)
        check_paper_mode(self.settings, bf16=self.bf16, compile=self.compile)
        steps = self.epochs * self.steps_per_epoch
        if self.epochs < 1 or self.steps_per_epoch < 1:
            raise NOSError(
                f"a run needs epochs >= 1 and steps_per_epoch >= 1, got "
                f"{self.epochs} and {self.steps_per_epoch}"
            )
        if steps > self.total_steps:
            raise NOSError(
                f"a run of {self.epochs} x {self.steps_per_epoch} = {steps} steps "
                f"exceeds the schedule's total_steps = {self.total_steps}"
            )

    @property
    def device(self) -> torch.device:
        return self.train.images.device

    def batches(
        self, seed: int, dtype: torch.dtype | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """The endless seeded training-batch stream of this spec, in ``dtype`` (default the
        spec's own)."""
        return training_batches(
            self.train,
            self.norm,
            self.augmentation,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            seed=seed,
            dtype=self.dtype if dtype is None else dtype,
        )


def check_paper_mode(settings: Settings, *, bf16: bool, compile: str) -> None:
    """Refuse, with one line, the fast paths that paper mode cannot take."""
    if not settings.paper_mode:
        return
    if bf16:
        raise NOSError("bf16=True is refused in paper mode, which trains in float32")
    if compile != "none":
        raise NOSError(
            f"compile={compile!r} is refused in paper mode, whose arithmetic must "
            "match the released code's (compiled kernels may round differently)"
        )


def batching_pays(spec: RunSpec) -> bool:
    """Whether training the runs together beats one after another, by device and size.

    On a GPU, K copies cost about one (the step is launch-bound), so always. On a CPU the
    step is compute-bound: batching only saves per-step overhead, which pays for small
    models (the digits proxy, measured by ``bench/screen.py``) but not for CIFAR-sized
    activations, which fall out of cache when K copies are processed together.
    """
    if spec.device.type != "cpu":
        return True
    _, height, width = spec.train.images.shape[1:]
    activation = spec.batch_size * spec.width * int(height) * int(width)
    return activation <= CPU_BATCHED_MAX_ACTIVATION


def train_runs(
    spec: RunSpec,
    lrs: Sequence[float],
    seeds: RunSeeds,
    *,
    batched: bool = True,
    on_epoch: EpochCallback | None = None,
) -> list[RunResult]:
    """Train one fresh model per learning rate (see the module docstring); results in order.

    ``batched=False`` trains them one after another (:func:`proxy.measure.default_batching`
    decides by a timing on the device).
    """
    if not lrs:
        return []
    if batched:
        return train_stack(spec, lrs, seeds, on_epoch=on_epoch)[0]
    return [train_stack(spec, [lr], seeds, on_epoch=on_epoch)[0][0] for lr in lrs]


def genome_optimizer(
    spec: RunSpec, genome: Genome, groups: list[dict[str, Any]], seed: int
) -> GenomeOptimizer:
    """The optimizer of a genome's runs: one param group per run, the spec's schedule.

    Compiled (:class:`~optuna_nos.optim.compiled_step.CompiledGenomeOptimizer`) when
    ``spec.compile`` is "all"; the first group's lr is the default of the others.
    """
    options: dict[str, Any] = {
        "lr": float(groups[0]["lr"]),
        "total_steps": spec.total_steps,
        "warmup_steps": spec.warmup_steps,
        "settings": spec.settings,
        "seed": seed,
    }
    if spec.compile == "all":
        return CompiledGenomeOptimizer(groups, genome, mode=spec.compile_mode, **options)
    return GenomeOptimizer(groups, genome, **options)


def fresh_model(spec: RunSpec, seeds: RunSeeds) -> ConvNet:
    """A run's fresh ConvNet: Glorot init from ``seeds.model``, masks from ``seeds.dropout``."""
    device = spec.device
    init = torch.Generator().manual_seed(seeds.model)
    dropout = torch.Generator(device=device).manual_seed(seeds.dropout)
    channels = int(spec.train.images.shape[1])
    model = ConvNet(
        spec.width,
        in_channels=channels,
        num_classes=spec.num_classes,
        dropout=spec.dropout,
        generator=init,
        dropout_generator=dropout,
        bn_momentum=spec.bn_momentum,
    )
    return model.to(device=device, dtype=spec.dtype)


def train_stack(
    spec: RunSpec,
    lrs: Sequence[float],
    seeds: RunSeeds,
    *,
    on_epoch: EpochCallback | None = None,
) -> tuple[list[RunResult], StackedConvNet]:
    """Train one fresh model per lr together; the results and the stack (for inspection).

    The stack keeps the copies still active at the end (:attr:`StackedConvNet.active`).
    """
    lrs = list(lrs)
    rule = spec.genome
    per_tensor = not isinstance(rule, TorchBaseline) and needs_per_tensor_layout(rule)
    stack = StackedConvNet(
        [fresh_model(spec, seeds) for _ in lrs],
        per_tensor=per_tensor,
        grouped=spec.device.type == "cuda",
    )
    groups = [
        {"params": leaves, "lr": lr}
        for leaves, lr in zip(stack.parameter_groups(), lrs, strict=True)
    ]
    optimizer: GenomeOptimizer | ScheduledOptimizer
    if isinstance(rule, TorchBaseline):
        optimizer = ScheduledOptimizer(rule, groups, spec.total_steps, spec.warmup_steps)
    else:
        optimizer = genome_optimizer(spec, rule, groups, seeds.optimizer)
    stream = spec.batches(seeds.data)
    results = [RunResult(lr) for lr in lrs]

    def epoch_done(copy: int, epoch: int, result: RunResult) -> bool:
        if on_epoch is not None:
            on_epoch(epoch, result)
        return False

    train_epochs(stack, optimizer, stream, spec, results.__getitem__, epoch_done)
    return results, stack


# -- packs: several candidates' runs in one stack -------------------------------------------


#: Called after each recorded final-run epoch with (candidate index, epoch, run); True drops
#: the candidate from the pack (a pruned trial).
PackEpoch = Callable[[int, int, "RunResult"], bool]


@dataclass(frozen=True)
class Candidate:
    """One member of a pack: its genome and the seeds of its runs."""

    genome: Genome
    seeds: RunSeeds


class _Optimizers:
    """Steps every candidate's optimizer (copies without a gradient are skipped by each)."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()


def train_packed(
    spec: RunSpec,
    runs: Sequence[tuple[Candidate, Sequence[float]]],
    *,
    on_epoch: PackEpoch | None = None,
) -> list[list[RunResult]]:
    """Train every (candidate, learning rates) pair's runs together; results per candidate.

    ``spec.genome`` is ignored (each candidate brings its own). Every candidate must carry
    the same data seed. Stopping rules are those of :func:`train_stack`; a
    candidate for which ``on_epoch`` returns True stops all its runs at that epoch.
    """
    if not runs:
        return []
    data_seeds = {candidate.seeds.data for candidate, _ in runs}
    if len(data_seeds) != 1:
        raise NOSError(f"a pack's candidates must share one data seed, got {sorted(data_seeds)}")
    owner: list[int] = []
    models = []
    results: list[list[RunResult]] = []
    for index, (candidate, lrs) in enumerate(runs):
        results.append([RunResult(float(lr)) for lr in lrs])
        for _ in lrs:
            owner.append(index)
            models.append(fresh_model(spec, candidate.seeds))
    per_tensor = any(needs_per_tensor_layout(candidate.genome) for candidate, _ in runs)
    stack = StackedConvNet(models, per_tensor=per_tensor, grouped=spec.device.type == "cuda")
    leaves = stack.parameter_groups()
    optimizers: list[torch.optim.Optimizer] = []
    first = 0
    for candidate, lrs in runs:
        groups = [{"params": leaves[first + j], "lr": float(lr)} for j, lr in enumerate(lrs)]
        optimizers.append(
            genome_optimizer(spec, candidate.genome, groups, candidate.seeds.optimizer)
        )
        first += len(lrs)
    run_of = [j for _, lrs in runs for j in range(len(lrs))]
    stream = spec.batches(data_seeds.pop())

    def epoch_done(copy: int, epoch: int, result: RunResult) -> bool:
        return on_epoch is not None and on_epoch(owner[copy], epoch, result)

    train_epochs(
        stack,
        _Optimizers(optimizers),
        stream,
        spec,
        lambda copy: results[owner[copy]][run_of[copy]],
        epoch_done,
        owner.__getitem__,
    )
    return results


#: Called after each recorded epoch of a copy with (copy index, epoch, its result); True drops
#: the copy and every copy of its group.
CopyEpoch = Callable[[int, int, "RunResult"], bool]


def train_epochs(
    stack: StackedConvNet,
    optimizer: Stepper,
    stream: Iterator[tuple[Tensor, Tensor]],
    spec: RunSpec,
    result_of: Callable[[int], RunResult],
    on_epoch: CopyEpoch | None = None,
    group_of: Callable[[int], int] = int,
) -> None:
    """Train the stack's copies for ``spec.epochs`` epochs, recording into ``result_of(copy)``.

    The stopping rules of the module docstring, per copy; a copy for which ``on_epoch``
    returns True is marked pruned and leaves with every copy of its ``group_of`` group.
    """
    numpy_nan = spec.settings.numpy_nan_semantics
    for epoch in range(spec.epochs):
        train_acc, first_bad = train_epoch(stack, optimizer, stream, spec.steps_per_epoch, spec)
        val_acc = validate(stack, spec) if spec.val is not None else None
        dropped: set[int] = set()
        keep = []
        for position, copy_index in enumerate(stack.active):
            result = result_of(copy_index)
            if first_bad[position] >= 0:
                step = epoch * spec.steps_per_epoch + first_bad[position]
                result.stop = f"non-finite loss at step {step}"
                if spec.settings.records_broken_epoch:
                    result.train_acc.append(train_acc[position])
                    if val_acc is not None:
                        result.val_acc.append(val_acc[position])
                continue
            result.train_acc.append(train_acc[position])
            if val_acc is not None:
                result.val_acc.append(val_acc[position])
            if on_epoch is not None and on_epoch(copy_index, epoch, result):
                result.stop = f"pruned after epoch {epoch}"
                dropped.add(group_of(copy_index))
                continue
            if spec.early_stop.stops(epoch, train_acc[position], numpy_nan=numpy_nan):
                result.stop = (
                    f"training accuracy {train_acc[position]:.4f} < "
                    f"{spec.early_stop.below} after epoch {epoch}"
                )
                continue
            keep.append(position)
        keep = [p for p in keep if group_of(stack.active[p]) not in dropped]
        if len(keep) < stack.size:
            stack.keep(keep)
        if stack.size == 0:
            break


def train_epoch(
    stack: StackedConvNet,
    optimizer: Stepper,
    stream: Iterator[tuple[Tensor, Tensor]],
    steps: int,
    spec: RunSpec | None = None,
) -> tuple[list[float], list[int]]:
    """Train every active copy for ``steps`` steps (with ``spec``'s layout and autocast).

    Returns each copy's training accuracy over the epoch (over its steps up to and including
    its first step with a non-finite loss, if it has one) and the index of that step (-1 if
    none).
    """
    copies = stack.size
    device = stack.running_mean[0].device
    correct = torch.zeros(steps, copies, dtype=torch.int64, device=device)
    finite = torch.ones(steps, copies, dtype=torch.bool, device=device)
    seen = torch.zeros(steps, dtype=torch.int64)
    graphs = _compiled_graphs(spec)
    forward = stack_losses if graphs is None else graphs.losses
    for step in range(steps):
        images, labels = next(stream)
        keep = stack.dropout_keep(labels.shape[0], device)
        with _fast_paths(stack, spec):
            logits, losses = forward(stack, _layout(images, spec), labels, keep)
        stack.zero_grad()
        losses.sum().backward()
        optimizer.step()
        with torch.no_grad():
            correct[step] = (logits.argmax(dim=2) == labels[:, None]).sum(dim=0)
            finite[step] = torch.isfinite(losses)
        seen[step] = labels.shape[0]
    bad = ~finite
    first_bad = torch.where(bad.any(dim=0), bad.int().argmax(dim=0), -1)
    last = torch.where(first_bad >= 0, first_bad, steps - 1)
    counted = correct.cumsum(dim=0)[last, torch.arange(copies, device=device)]
    accuracy = (counted.double().cpu() / seen.cumsum(dim=0)[last.cpu()]).tolist()
    return accuracy, first_bad.tolist()


@torch.no_grad()
def validate(stack: StackedConvNet, spec: RunSpec) -> list[float]:
    """Validation accuracy of every active copy (eval mode: BN running stats, no dropout)."""
    assert spec.val is not None
    device = stack.running_mean[0].device
    correct = torch.zeros(stack.size, dtype=torch.int64, device=device)
    graphs = _compiled_graphs(spec)
    forward = stack_logits if graphs is None else graphs.logits
    for images, labels in validation_batches(
        spec.val, spec.norm, batch_size=spec.val_batch_size, dtype=spec.dtype
    ):
        with _fast_paths(stack, spec):
            logits = forward(stack, _layout(images, spec))
        correct += (logits.argmax(dim=2) == labels[:, None]).sum(dim=0)
    return (correct.double() / len(spec.val)).tolist()


def _compiled_graphs(spec: RunSpec | None) -> StackGraphs | None:
    """The compiled forward passes ``spec`` asks for; None: the eager ones."""
    if spec is None or spec.compile == "none":
        return None
    return shared_graphs(spec.compile_mode)


def _layout(images: Tensor, spec: RunSpec | None) -> Tensor:
    """``images`` in the memory format ``spec`` asks for (NCHW unless ``channels_last``)."""
    if spec is not None and spec.channels_last:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def _fast_paths(stack: StackedConvNet, spec: RunSpec | None) -> AbstractContextManager[Any]:
    """bfloat16 autocast on the stack's device when ``spec.bf16``, else nothing."""
    if spec is None or not spec.bf16:
        return nullcontext()
    device = stack.running_mean[0].device
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
