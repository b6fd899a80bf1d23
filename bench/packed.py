"""Benchmark: candidates evaluated in packs of K against one at a time, in one process.

The same N random genomes (drawn with a fixed seed, all passing the integrity check) are
scored with the full fitness protocol twice per pack size K:

* ``one at a time``: :func:`proxy.fitness.measure_fitness` per genome (the default screen
  choice of this device), as a worker without ``--pack`` runs them;
* ``pack K``: :func:`proxy.packed.measure_pack` over the genomes in chunks of K, as
  ``optuna-nos worker --pack K`` runs them.

Printed: seconds, evaluations per minute and the speed-up against one at a time, all from
the same run. The storage round trips of a worker are left out of both.

    python bench/packed.py                        # digits, init fidelity, this CPU, 1 thread
    python bench/packed.py --fidelity evolution --genomes 8 --packs 2 4 8
    python bench/packed.py --device cuda --synthetic-cifar --smoke

Timings vary with machine load; compare the ratios printed within one run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from optuna_nos.optim.evolve import random_genome
from optuna_nos.space.genome import Genome
from proxy.data import load_digits
from proxy.fitness import DIGITS_FITNESS, ProxyTask, measure_fitness
from proxy.packed import measure_pack


def genomes(count: int, seed: int) -> list[Genome]:
    rng = np.random.default_rng(seed)
    return [random_genome(rng) for _ in range(count)]


def _timed(fn: object, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(task: ProxyTask, fidelity: str, pool: list[Genome], packs: list[int]) -> None:
    device = task.device or "cpu"
    seeds = list(range(len(pool)))
    measure_pack(pool[:1], seeds[:1], task, fidelity)  # warm-up (and the screen measurement)
    measure_fitness(pool[0], task, fidelity, seed=0)

    def alone() -> None:
        for genome, seed in zip(pool, seeds, strict=True):
            measure_fitness(genome, task, fidelity, seed=seed)

    base = _timed(alone, device)
    n = len(pool)
    print(f"  {n} evaluations ({fidelity}) on {device}")
    print(f"    one at a time   {base:8.2f} s  {60 * n / base:8.1f} /min   x1.00")
    for k in packs:

        def packed(k: int = k) -> None:
            for start in range(0, n, k):
                measure_pack(pool[start : start + k], seeds[start : start + k], task, fidelity)

        seconds = _timed(packed, device)
        print(
            f"    pack {k:<3}        {seconds:8.2f} s  {60 * n / seconds:8.1f} /min   "
            f"x{base / seconds:5.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fidelity", default="init", choices=("init", "evolution"))
    parser.add_argument("--genomes", type=int, default=8)
    parser.add_argument("--packs", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synthetic-cifar", action="store_true")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="with --synthetic-cifar: a few steps only, to check the path",
    )
    args = parser.parse_args()
    from screen import synthetic_task, use_threads

    use_threads(args.threads)
    if args.synthetic_cifar:
        task = synthetic_task(args.device, args.fidelity, args.smoke)
    else:
        task = ProxyTask(load_digits, DIGITS_FITNESS, device=args.device, seed=0)
    print(f"device {args.device}  threads {torch.get_num_threads()}")
    bench(task, args.fidelity, genomes(args.genomes, args.seed), args.packs)


if __name__ == "__main__":
    main()
