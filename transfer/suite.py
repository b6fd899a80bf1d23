"""The CPU transfer suite: published optimizers and baselines on digits and a character LM.

``python -m transfer suite --cpu`` runs every optimizer of :func:`suite_optimizers` through
the same :class:`~transfer.runner.TransferProtocol` on two tasks that need no download:

* ``digits``: scikit-learn's 8x8 digits (1,437 train / 360 evaluation), a ConvNet of width
  16, batch 64 (``transfer.tasks.digits_task``);
* ``charlm``: next-character prediction on Python's standard-library source (300,000
  characters, 10 % held out), a one-block causal Transformer of width 64, 4 heads, windows
  of 64 characters, batch 16 (``transfer.charlm``).

Each (task, optimizer) pair is one unit of work: an LR screen over :data:`SUITE_LR_GRID`
(75-step runs, seed 0), then three final runs of 300 steps (seeds 0, 1, 2) at the chosen LR,
evaluated every 30 steps; schedules are warmup 1/15 -> hold 2/15 -> cosine. Units run in
``jobs`` worker processes (one torch thread each); every run is seeded, so the numbers do
not depend on ``jobs``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from optuna_nos.core.errors import NOSError
from optuna_nos.core.validation import check_int
from transfer.optimizers import PUBLISHED, TRANSFER_BASELINES, resolve_optimizer
from transfer.report import markdown_table, plot_curves, summarize, write_csv
from transfer.runner import DEFAULT_LR_GRID, TransferProtocol, TransferRun, screen_and_train
from transfer.tasks import Task

__all__ = [
    "CPU_PROTOCOLS",
    "SUITE_LR_GRID",
    "SuiteResult",
    "run_suite",
    "suite_optimizers",
    "suite_task",
]

#: The suite's LR grid (the harness default): one point per decade from 1e-4 (RMSprop and
#: Lion like small rates) to 100 (gradient-scale updates such as Opt1..Opt10 pick 1..10 here).
SUITE_LR_GRID = DEFAULT_LR_GRID

#: The suite's budget per task (identical for every optimizer).
CPU_PROTOCOLS: dict[str, TransferProtocol] = {
    "digits": TransferProtocol(steps=300, screen_steps=75, eval_every=30, lr_grid=SUITE_LR_GRID),
    "charlm": TransferProtocol(steps=300, screen_steps=75, eval_every=30, lr_grid=SUITE_LR_GRID),
}


def suite_optimizers(include_variants: bool = False) -> list[str]:
    """Opt1..Opt10, A1..A5 (plus the variant Opt3_g3 with ``include_variants``), baselines."""
    published = list(PUBLISHED) + (["Opt3_g3"] if include_variants else [])
    return published + list(TRANSFER_BASELINES)


_TASK_CACHE: dict[str, Task] = {}


def suite_task(name: str) -> Task:
    """The suite task ``name`` ("digits" or "charlm"), built once per process."""
    if name not in _TASK_CACHE:
        if name == "digits":
            from transfer.tasks import digits_task

            _TASK_CACHE[name] = digits_task(batch_size=64, width=16)
        elif name == "charlm":
            from transfer.charlm import charlm_task

            _TASK_CACHE[name] = charlm_task(
                max_chars=300_000, seq_len=64, batch_size=16, arch="transformer", width=64, heads=4
            )
        else:
            raise NOSError(f"unknown suite task {name!r}; expected one of {sorted(CPU_PROTOCOLS)}")
    return _TASK_CACHE[name]


def _run_unit(
    task_name: str, optimizer: str, protocol: TransferProtocol, progress: bool
) -> tuple[list[TransferRun], float]:
    """One (task, optimizer) protocol; returns its runs and the CPU seconds it took."""
    started = time.process_time()
    runs = screen_and_train(
        suite_task(task_name), resolve_optimizer(optimizer), protocol, progress=progress
    )
    return runs, time.process_time() - started


def _init_worker() -> None:
    torch.set_num_threads(1)


def _describe(budget: dict[str, TransferProtocol]) -> str:
    lines = []
    for task, protocol in budget.items():
        grid = ", ".join(f"{lr:g}" for lr in protocol.lr_grid)
        lines.append(
            f"- {task}: LR screen {protocol.screen_steps} steps x [{grid}] (seed "
            f"{protocol.screen_seed}, lowest mean training loss of the last "
            f"{protocol.screen_window:.0%}), then {protocol.steps} steps per seed, evaluated "
            f"every {protocol.eval_every}; warmup {protocol.warmup_fraction:.3g} -> hold "
            f"{protocol.hold_fraction:.3g} -> cosine (fractions of the run)"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class SuiteResult:
    """Every run, the markdown table, the files written and the wall time in seconds."""

    results: list[TransferRun]
    table: str
    csv_path: Path
    table_path: Path
    plot_path: Path
    wall_seconds: float


def run_suite(
    output_dir: str | os.PathLike[str],
    *,
    optimizers: Sequence[str] | None = None,
    tasks: Sequence[str] = ("digits", "charlm"),
    seeds: Sequence[int] = (0, 1, 2),
    jobs: int = 2,
    protocols: dict[str, TransferProtocol] | None = None,
    progress: bool = True,
    command: str = "python -m transfer suite --cpu",
    log: Callable[[str], None] = print,
) -> SuiteResult:
    """Run the suite, write ``results.csv``, ``results.md`` and ``curves.png`` to
    ``output_dir``, print and return the table."""
    names = list(optimizers) if optimizers is not None else suite_optimizers()
    for name in names:
        resolve_optimizer(name)
    budget = {
        task: replace((protocols or CPU_PROTOCOLS)[task], seeds=tuple(seeds)) for task in tasks
    }
    check_int("jobs", jobs, minimum=1)
    units = [(task, name) for task in tasks for name in names]
    started = time.perf_counter()
    by_unit: dict[tuple[str, str], tuple[list[TransferRun], float]] = {}
    show = progress and sys.stderr.isatty()
    if jobs == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for task, name in tqdm(units, desc="suite", disable=not show):
                by_unit[(task, name)] = _run_unit(task, name, budget[task], progress)
        finally:
            torch.set_num_threads(threads)
    else:
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=get_context("spawn"), initializer=_init_worker
        ) as pool:
            # Later tasks (the character LM) cost more per unit: start them first.
            futures = {
                pool.submit(_run_unit, task, name, budget[task], False): (task, name)
                for task, name in reversed(units)
            }
            for future in tqdm(
                as_completed(futures), total=len(futures), desc="suite", disable=not show
            ):
                by_unit[futures[future]] = future.result()
    wall = time.perf_counter() - started
    cpu = sum(seconds for _, seconds in by_unit.values())
    results = [run for unit in units for run in by_unit[unit][0]]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(summarize(results), baselines=TRANSFER_BASELINES)
    header = (
        f"Command: `{command}` — {len(names)} optimizers x {len(tasks)} tasks, "
        f"{len(seeds)} seeds; wall time {wall / 60:.1f} min, training CPU time "
        f"{cpu / 60:.1f} min ({os.cpu_count()} CPUs, {jobs} worker processes, one torch "
        f"thread each).\n\n{_describe(budget)}\n\n"
    )
    table_path = out / "results.md"
    table_path.write_text(header + table, encoding="utf-8")
    csv_path = write_csv(results, out / "results.csv")
    plot_path = plot_curves(results, out / "curves.png", baselines=TRANSFER_BASELINES)
    log(header + table)
    return SuiteResult(results, table, csv_path, table_path, plot_path, wall)
