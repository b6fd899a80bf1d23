"""Training runs, the learning-rate search and the per-optimizer protocol.

The protocol (:class:`TransferProtocol`, run by :func:`screen_and_train`), identical for every
optimizer of a comparison:

1. **LR screen.** For each eta in the grid (the shared absolute grid, or each optimizer's own
   default times the same factors with ``relative_grid``), one run of ``screen_steps`` steps
   with seed ``screen_seed`` and its own complete warmup -> hold -> cosine schedule
   (W, H = the same fractions of ``screen_steps``). Its score is the mean training loss of the
   last ``screen_window`` of its steps (+inf if the loss went non-finite). The evaluation set
   is never looked at.
2. **Final runs.** At the eta with the lowest score (ties -> the earlier grid entry), one run
   of ``steps`` steps per seed; each evaluates every ``eval_every`` steps and at the end.

A seed fixes the model's initialisation and the training-batch order, so all optimizers
start from the same weights and see the same batches. A run stops at the first non-finite
training loss (``diverged``), after recording one last evaluation.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from optuna_nos.core.errors import NOSError
from optuna_nos.core.validation import check_int
from transfer.optimizers import OptimizerSpec, ScheduleSteps
from transfer.tasks import Task

__all__ = [
    "DEFAULT_LR_GRID",
    "DEFAULT_RELATIVE_FACTORS",
    "Record",
    "TransferProtocol",
    "TransferRun",
    "evaluate",
    "lr_grid",
    "screen_and_train",
    "screen_score",
    "train_run",
]

#: The shared LR grid: one point per decade, wide enough for Adam-like (~1e-3) updates and
#: for gradient-scale ones (SGD, Opt1..Opt10: ~1e-1..1e2) alike.
DEFAULT_LR_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)

#: Factors of each optimizer's own default LR screened with ``relative_grid``.
DEFAULT_RELATIVE_FACTORS = (1e-2, 1e-1, 1.0, 10.0, 100.0)


@dataclass(frozen=True)
class TransferProtocol:
    """The budget every optimizer gets (see the module docstring)."""

    steps: int
    screen_steps: int
    eval_every: int
    lr_grid: tuple[float, ...] = DEFAULT_LR_GRID
    relative_grid: bool = False
    seeds: tuple[int, ...] = (0, 1, 2)
    screen_seed: int = 0
    warmup_fraction: float = 1 / 15
    hold_fraction: float = 2 / 15
    screen_window: float = 0.25

    def __post_init__(self) -> None:
        for name in ("steps", "screen_steps", "eval_every"):
            check_int(name, getattr(self, name), minimum=1)
        if not self.lr_grid or not all(v > 0 and math.isfinite(v) for v in self.lr_grid):
            raise NOSError(f"lr_grid must hold positive finite numbers, got {self.lr_grid!r}")
        if len(set(self.lr_grid)) != len(self.lr_grid):
            raise NOSError(f"lr_grid has repeated values: {self.lr_grid!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise NOSError(f"seeds must be distinct and non-empty, got {self.seeds!r}")
        if not 0.0 < self.screen_window <= 1.0:
            raise NOSError(f"screen_window must lie in (0, 1], got {self.screen_window!r}")
        self.final_schedule()
        self.screen_schedule()

    def final_schedule(self) -> ScheduleSteps:
        return ScheduleSteps.from_fractions(self.steps, self.warmup_fraction, self.hold_fraction)

    def screen_schedule(self) -> ScheduleSteps:
        return ScheduleSteps.from_fractions(
            self.screen_steps, self.warmup_fraction, self.hold_fraction
        )


@dataclass(frozen=True)
class Record:
    """One measurement: ``split`` is "train" (mean over the steps since the last record) or
    "eval"; ``metric`` is accuracy, loss (cross-entropy, nats) or bits_per_char."""

    step: int
    epoch: float
    split: str
    metric: str
    value: float


@dataclass
class TransferRun:
    """One training run and everything it measured."""

    task: str
    optimizer: str
    phase: str
    seed: int
    lr: float
    records: list[Record] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    diverged: bool = False

    def last(self, metric: str, split: str = "eval") -> float:
        """The last recorded value of ``metric`` on ``split`` (NaN if none)."""
        for record in reversed(self.records):
            if record.metric == metric and record.split == split:
                return record.value
        return math.nan


def lr_grid(spec: OptimizerSpec, protocol: TransferProtocol) -> tuple[float, ...]:
    """The learning rates ``spec`` is screened at: the shared grid, or default x factors."""
    if not protocol.relative_grid:
        return protocol.lr_grid
    if spec.default_lr is None or spec.default_lr <= 0:
        raise NOSError(
            f"{spec.name} has no default lr to centre a relative grid on; use the shared grid"
        )
    return tuple(spec.default_lr * factor for factor in protocol.lr_grid)


def _flat(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    return logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)


@torch.no_grad()
def evaluate(
    model: nn.Module, task: Task, device: torch.device, amp: bool = False
) -> dict[str, float]:
    """Accuracy and mean cross-entropy (and bits per char for sequence tasks) on the eval set."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for inputs, targets in task.eval_batches():
        inputs, targets = inputs.to(device), targets.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(inputs)
        flat_logits, flat_targets = _flat(logits, targets)
        total_loss += F.cross_entropy(flat_logits, flat_targets, reduction="sum").item()
        correct += int((flat_logits.argmax(-1) == flat_targets).sum().item())
        count += flat_targets.numel()
    if count == 0:
        raise NOSError(f"task {task.name!r} has an empty evaluation set")
    metrics = {"accuracy": correct / count, "loss": total_loss / count}
    if task.sequence:
        metrics["bits_per_char"] = metrics["loss"] / math.log(2.0)
    return metrics


@contextmanager
def _closing(batches: Iterator[object]) -> Iterator[None]:
    """Close a generator of batches (and its DataLoader workers) when the run ends."""
    try:
        yield
    finally:
        close = getattr(batches, "close", None)
        if callable(close):
            close()


def _progress(total: int, desc: str, enabled: bool) -> tqdm:  # type: ignore[type-arg]
    return tqdm(
        total=total,
        desc=desc,
        leave=False,
        dynamic_ncols=True,
        disable=not (enabled and sys.stderr.isatty()),
    )


def train_run(
    task: Task,
    spec: OptimizerSpec,
    lr: float,
    seed: int,
    steps: ScheduleSteps,
    *,
    phase: str,
    eval_every: int | None,
    device: torch.device | str = "cpu",
    amp: bool = False,
    progress: bool = True,
) -> TransferRun:
    """Train a fresh model for ``steps.total`` steps; evaluate every ``eval_every`` steps
    (``None``: never, as in a screen run)."""
    device = torch.device(device)
    result = TransferRun(task.name, spec.name, phase, seed, lr)
    torch.manual_seed(seed)
    model = task.build_model().to(device)
    optimizer, scheduler = spec.build(model.parameters(), lr, steps, seed)
    batches = task.train_batches(seed)
    window_loss, window_correct, window_count = 0.0, 0, 0

    def record(step: int) -> None:
        nonlocal window_loss, window_correct, window_count
        epoch = step / task.steps_per_epoch
        if window_count:
            result.records.append(Record(step, epoch, "train", "loss", window_loss / window_count))
            result.records.append(
                Record(step, epoch, "train", "accuracy", window_correct / window_count)
            )
        window_loss, window_correct, window_count = 0.0, 0, 0
        if eval_every is not None:
            for metric, value in evaluate(model, task, device, amp).items():
                result.records.append(Record(step, epoch, "eval", metric, value))

    desc = f"{task.name} {spec.name[:24]} {phase} lr={lr:g} seed={seed}"
    with _progress(steps.total, desc, progress) as bar, _closing(batches):
        for step in range(1, steps.total + 1):
            inputs, targets = next(batches)
            inputs, targets = inputs.to(device), targets.to(device)
            model.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(inputs)
            flat_logits, flat_targets = _flat(logits, targets)
            loss = F.cross_entropy(flat_logits, flat_targets)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                result.diverged = True
                record(step - 1)
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            result.train_losses.append(loss_value)
            targets_in_batch = flat_targets.numel()
            window_loss += loss_value * targets_in_batch
            window_correct += int((flat_logits.argmax(-1) == flat_targets).sum().item())
            window_count += targets_in_batch
            bar.update(1)
            if step == steps.total or (eval_every is not None and step % eval_every == 0):
                record(step)
                bar.set_postfix_str(_postfix(result))
    return result


def _postfix(result: TransferRun) -> str:
    accuracy = result.last("accuracy")
    return f"acc={accuracy:.4f}" if math.isfinite(accuracy) else ""


def screen_score(result: TransferRun, screen_steps: int, window: float) -> float:
    """Mean training loss over the last ``window`` of ``screen_steps``; +inf if diverged."""
    if result.diverged or len(result.train_losses) < screen_steps:
        return math.inf
    tail = result.train_losses[-max(1, round(window * screen_steps)) :]
    return sum(tail) / len(tail)


def screen_and_train(
    task: Task,
    spec: OptimizerSpec,
    protocol: TransferProtocol,
    *,
    device: torch.device | str = "cpu",
    amp: bool = False,
    progress: bool = True,
    on_run: Callable[[TransferRun], None] | None = None,
) -> list[TransferRun]:
    """The LR screen and the final runs of one optimizer on one task (module docstring).

    Returns the screen runs (phase "screen") then the final runs (phase "final").
    """
    screen_steps = protocol.screen_schedule()
    runs: list[TransferRun] = []
    scores: list[float] = []
    for lr in lr_grid(spec, protocol):
        run = train_run(
            task,
            spec,
            lr,
            protocol.screen_seed,
            screen_steps,
            phase="screen",
            eval_every=None,
            device=device,
            amp=amp,
            progress=progress,
        )
        runs.append(run)
        scores.append(screen_score(run, protocol.screen_steps, protocol.screen_window))
        if on_run is not None:
            on_run(run)
    best = min(range(len(scores)), key=lambda i: (scores[i], i))
    best_lr = runs[best].lr
    for seed in protocol.seeds:
        run = train_run(
            task,
            spec,
            best_lr,
            seed,
            protocol.final_schedule(),
            phase="final",
            eval_every=protocol.eval_every,
            device=device,
            amp=amp,
            progress=progress,
        )
        runs.append(run)
        if on_run is not None:
            on_run(run)
    return runs


def compare(
    tasks: Sequence[Task],
    specs: Iterable[OptimizerSpec],
    protocol: TransferProtocol,
    **kwargs: object,
) -> list[TransferRun]:
    """:func:`screen_and_train` for every (task, optimizer) pair, tasks outermost."""
    spec_list = list(specs)
    results: list[TransferRun] = []
    for task in tasks:
        for spec in spec_list:
            results.extend(screen_and_train(task, spec, protocol, **kwargs))  # type: ignore[arg-type]
    return results
