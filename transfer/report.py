"""Results: a CSV of every measurement, a markdown summary table and accuracy-curve plots.

Summary per (task, optimizer), over the final runs (one per seed): the chosen peak LR, the
final evaluation accuracy as mean +- sample standard deviation and [min, max], and the final
evaluation loss (cross-entropy in nats; bits per character for sequence tasks) as mean +-
std. ``vs best baseline`` is the mean accuracy minus that of the best baseline on the task
(positive: better than every tuned baseline). Rows are sorted by mean accuracy. A chosen LR
on the edge of the screened grid is marked: the optimizer might do better outside it.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from optuna_nos.core.errors import NOSError
from transfer.runner import TransferRun

__all__ = ["CSV_COLUMNS", "Summary", "markdown_table", "plot_curves", "summarize", "write_csv"]

CSV_COLUMNS = (
    "task",
    "optimizer",
    "phase",
    "seed",
    "lr",
    "step",
    "epoch",
    "split",
    "metric",
    "value",
    "diverged",
)


def write_csv(results: Iterable[TransferRun], path: str | os.PathLike[str]) -> Path:
    """One row per measurement of every run (columns :data:`CSV_COLUMNS`)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for run in results:
            for record in run.records:
                writer.writerow(
                    [
                        run.task,
                        run.optimizer,
                        run.phase,
                        run.seed,
                        repr(run.lr),
                        record.step,
                        f"{record.epoch:.6g}",
                        record.split,
                        record.metric,
                        repr(record.value),
                        int(run.diverged),
                    ]
                )
    return target


@dataclass(frozen=True)
class Summary:
    """The final runs of one (task, optimizer)."""

    task: str
    optimizer: str
    lr: float
    accuracies: tuple[float, ...]
    losses: tuple[float, ...]
    loss_name: str
    diverged: int
    screened: tuple[float, ...] = ()

    @property
    def lr_label(self) -> str:
        """The chosen LR, marked "(grid max)" / "(grid min)" when it lies on the grid's edge."""
        if len(self.screened) > 1 and self.lr == max(self.screened):
            return f"{self.lr:g} (grid max)"
        if len(self.screened) > 1 and self.lr == min(self.screened):
            return f"{self.lr:g} (grid min)"
        return f"{self.lr:g}"

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


def summarize(results: Iterable[TransferRun]) -> list[Summary]:
    """One :class:`Summary` per (task, optimizer) with final runs, in first-seen order."""
    groups: dict[tuple[str, str], list[TransferRun]] = {}
    screened: dict[tuple[str, str], list[float]] = {}
    sequence_tasks: set[str] = set()
    for run in results:
        if run.phase == "screen":
            screened.setdefault((run.task, run.optimizer), []).append(run.lr)
        if run.phase == "final":
            groups.setdefault((run.task, run.optimizer), []).append(run)
            if any(r.metric == "bits_per_char" for r in run.records):
                sequence_tasks.add(run.task)
    summaries = []
    for (task, optimizer), runs in groups.items():
        loss_name = "bits_per_char" if task in sequence_tasks else "loss"
        lrs = {run.lr for run in runs}
        if len(lrs) != 1:
            raise NOSError(f"final runs of {optimizer} on {task} used several lrs {sorted(lrs)}")
        summaries.append(
            Summary(
                task=task,
                optimizer=optimizer,
                lr=runs[0].lr,
                accuracies=tuple(run.last("accuracy") for run in runs),
                losses=tuple(run.last(loss_name) for run in runs),
                loss_name=loss_name,
                diverged=sum(run.diverged for run in runs),
                screened=tuple(screened.get((task, optimizer), ())),
            )
        )
    return summaries


def _mean_std(values: Sequence[float], digits: int) -> str:
    if any(math.isnan(v) for v in values):
        return "nan"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}"


def markdown_table(summaries: Sequence[Summary], baselines: Iterable[str] = ()) -> str:
    """A markdown table per task (see the module docstring); baselines are marked with *."""
    baseline_names = set(baselines)
    lines: list[str] = []
    for task in dict.fromkeys(s.task for s in summaries):
        rows = sorted(
            (s for s in summaries if s.task == task), key=lambda s: (-s.mean, s.optimizer)
        )
        reference = [s.mean for s in rows if s.optimizer in baseline_names]
        best_baseline = max(reference) if reference else None
        loss_header = "eval bits/char" if rows[0].loss_name == "bits_per_char" else "eval loss"
        lines += [
            f"**{task}** ({len(rows[0].accuracies)} seeds; * = baseline)",
            "",
            f"| optimizer | lr | accuracy | min–max | {loss_header} | vs best baseline "
            "| diverged |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for s in rows:
            name = s.optimizer.replace("|", "\\|")
            name = f"{name}*" if s.optimizer in baseline_names else name
            versus = "" if best_baseline is None else f"{s.mean - best_baseline:+.4f}"
            lines.append(
                f"| {name} | {s.lr_label} | {_mean_std(s.accuracies, 4)} | "
                f"{min(s.accuracies):.4f}–{max(s.accuracies):.4f} | "
                f"{_mean_std(s.losses, 3)} | {versus} | {s.diverged} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot_curves(
    results: Iterable[TransferRun], path: str | os.PathLike[str], baselines: Iterable[str] = ()
) -> Path:
    """Evaluation accuracy against step, one panel per task: the mean over the final runs'
    seeds as a line, their min-max as a band; baselines dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict[str, dict[int, list[float]]]] = {}
    for run in results:
        if run.phase != "final":
            continue
        by_step = curves.setdefault(run.task, {}).setdefault(run.optimizer, {})
        for record in run.records:
            if record.split == "eval" and record.metric == "accuracy":
                by_step.setdefault(record.step, []).append(record.value)
    if not curves:
        raise NOSError("no final runs to plot")
    baseline_names = set(baselines)
    figure, axes = plt.subplots(1, len(curves), figsize=(6.5 * len(curves), 4.8), squeeze=False)
    colours = plt.get_cmap("tab20")
    for axis, (task, by_optimizer) in zip(axes[0], curves.items(), strict=True):
        for index, (optimizer, by_step) in enumerate(by_optimizer.items()):
            steps = sorted(by_step)
            values = [by_step[s] for s in steps]
            style = "--" if optimizer in baseline_names else "-"
            colour = colours((2 * index) % 20 + (2 * index // 20) % 2)
            axis.plot(
                steps,
                [statistics.fmean(v) for v in values],
                style,
                color=colour,
                label=optimizer[:40],
                linewidth=1.4,
            )
            axis.fill_between(
                steps,
                [min(v) for v in values],
                [max(v) for v in values],
                color=colour,
                alpha=0.12,
                linewidth=0,
            )
        axis.set_title(task)
        axis.set_xlabel("step")
        axis.set_ylabel("evaluation accuracy")
        axis.grid(alpha=0.3)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target
