"""Does a proxy task separate optimizers? Tuned baselines and random genomes against seed noise.

For one proxy task and fidelity, every rule below runs the whole fitness protocol (the
two-stage learning-rate screen, then the final run; fitness = best validation accuracy)
once per seed, each seed a fresh model, batch order and dropout:

* the hand-designed baselines of :mod:`proxy.baselines` (Adam, AdamW, SGD+Nesterov, RMSprop,
  Lion), each tuned by the screen;
* ``--genomes`` random genomes of the paper's space that pass the integrity check
  (``optuna_nos.optim.evolve.random_genome``, the GA's initial population), drawn with
  ``--genome-seed``.

A failed evaluation (the screen found no learning rate, or the final run diverged) scores
0.1, chance on ten classes. Reported: per rule the mean and sample std over seeds; the seed
noise sigma = the root mean within-rule variance over the baselines; the gap between the best
baseline's mean and the median random genome's mean, in units of sigma; the CPU time of one
evaluation (one torch thread; CPU time, since other jobs share the machine).

    python bench/proxy_separation.py --task mnist1d --seeds 0 1 2 --out /tmp/sep.md
    python bench/proxy_separation.py --task digits --options '{"seed": 0}'
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Row", "evaluate_rules", "main", "separation_table"]

#: The score of an evaluation that failed (chance accuracy on ten classes).
FAILED = 0.1


@dataclass(frozen=True)
class Row:
    """One rule's scores over seeds and the mean wall time of one evaluation."""

    name: str
    kind: str
    scores: tuple[float, ...]
    seconds: float

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def std(self) -> float:
        return statistics.stdev(self.scores) if len(self.scores) > 1 else math.nan


def _objective(task: str, options: dict[str, Any]) -> Any:
    import proxy.tasks

    factory = getattr(proxy.tasks, task, None)
    if factory is None or task not in ("digits", "mnist1d"):
        raise SystemExit(f"unknown task {task!r}; expected digits or mnist1d")
    return factory(device="cpu", cpu_threads=1, **options)


def evaluate_rules(
    task: str,
    options: dict[str, Any],
    fidelity: str,
    seeds: Sequence[int],
    n_genomes: int,
    genome_seed: int,
    log: Any = print,
) -> list[Row]:
    """Every baseline and ``n_genomes`` random accepted genomes, once per seed."""
    import numpy as np
    import torch

    from optuna_nos.optim.evolve import random_genome
    from proxy.baselines import TORCH_BASELINES, TorchBaseline
    from proxy.fitness import measure_fitness

    torch.set_num_threads(1)
    objective = _objective(task, options)
    objective.task.dataset()
    rng = np.random.default_rng(genome_seed)
    rules: list[tuple[str, str, Any]] = [
        (name, "baseline", TorchBaseline(name)) for name in TORCH_BASELINES
    ]
    for _ in range(n_genomes):
        genome = random_genome(rng)
        rules.append((genome.equation(), "random genome", genome))
    rows = []
    for name, kind, rule in rules:
        scores = []
        started = time.process_time()
        for seed in seeds:
            result = measure_fitness(rule, objective.task, fidelity, seed=seed)
            scores.append(FAILED if result.fitness is None else result.fitness)
        row = Row(name, kind, tuple(scores), (time.process_time() - started) / len(seeds))
        log(f"{row.mean:.4f} +- {row.std:.4f} ({row.seconds:.1f} CPU s/eval) {kind} {name}")
        rows.append(row)
    return rows


def separation_table(rows: Sequence[Row]) -> str:
    """Markdown: per rule mean, std, scores; then the noise, the gap and its ratio."""
    lines = ["| rule | kind | mean | std | per seed | CPU s / eval |", "|---|---|---|---|---|---|"]
    ordered = sorted(rows, key=lambda r: (r.kind != "baseline", -r.mean))
    for r in ordered:
        per_seed = ", ".join(f"{s:.4f}" for s in r.scores)
        name = r.name if len(r.name) <= 70 else r.name[:67] + "..."
        lines.append(
            f"| `{name}` | {r.kind} | {r.mean:.4f} | {r.std:.4f} | {per_seed} | {r.seconds:.1f} |"
        )
    baselines = [r for r in rows if r.kind == "baseline"]
    genomes = [r for r in rows if r.kind != "baseline"]
    sigma = math.sqrt(statistics.fmean(r.std**2 for r in baselines))
    best = max(baselines, key=lambda r: r.mean)
    median = statistics.median(r.mean for r in genomes) if genomes else math.nan
    failed = sum(all(s == FAILED for s in r.scores) for r in genomes)
    trained = [r.mean for r in genomes if any(s != FAILED for s in r.scores)]
    trained_median = statistics.median(trained) if trained else math.nan
    init_seconds = statistics.fmean(r.seconds for r in rows)
    lines += [
        "",
        f"seed noise sigma (root mean within-baseline variance): {sigma:.4f}",
        f"best tuned baseline: {best.name} {best.mean:.4f}; median random genome: {median:.4f}"
        f"; gap {best.mean - median:.4f} = {(best.mean - median) / sigma:.1f} sigma",
        f"spread of baseline means: {min(r.mean for r in baselines):.4f}-{best.mean:.4f}; "
        f"random genomes failing every seed: {failed}/{len(genomes)}",
        f"median of the random genomes that trained: {trained_median:.4f} (gap "
        f"{(best.mean - trained_median) / sigma:.1f} sigma); random genomes at or above the "
        f"best baseline: {sum(r.mean >= best.mean for r in genomes)}",
        f"mean CPU time of one evaluation: {init_seconds:.1f} s (one torch thread; CPU time, "
        "not wall time, because the machine is shared)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist1d", choices=("mnist1d", "digits"))
    parser.add_argument("--options", default="{}", help="task options as a JSON object")
    parser.add_argument("--fidelity", default="init", choices=("init", "evolution"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--genomes", type=int, default=20)
    parser.add_argument("--genome-seed", type=int, default=0)
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(argv)
    options = json.loads(args.options)
    started = time.perf_counter()
    rows = evaluate_rules(
        args.task,
        options,
        args.fidelity,
        args.seeds,
        args.genomes,
        args.genome_seed,
        log=lambda line: print(line, flush=True),
    )
    header = (
        f"## Proxy separation: {args.task}, {args.fidelity} fidelity, options "
        f"{json.dumps(options)}, seeds {args.seeds}\n\ncommand: "
        f"python {' '.join(sys.argv)}\n"
    )
    text = (
        f"{header}\n{separation_table(rows)}\n\ntotal wall time: "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
