"""Integrity checks per second: the batched pass against the sequential reference.

Usage: python bench/integrity.py [--count 1000] [--seed 0] [--threads 1]

Draws ``count`` random genomes (random draws, before any integrity filtering), checks each
with :func:`optuna_nos.optim.integrity.integrity_check` (all twelve sphere runs in one
(12, 5) pass) and with :func:`optuna_nos.optim.integrity.integrity_check_sequential` (one run
at a time, stopping at the first pass), in alternating chunks so both see the same machine
load, and prints the rates, the speed-up and whether the two agree on every genome. Rates
use both wall-clock and process CPU time; on a shared machine the CPU-time figure is the
steadier one.
Goals: >= 500 checks per second and >= 20x the sequential reference.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable, Sequence

import torch

from optuna_nos.optim.integrity import (
    IntegrityResult,
    integrity_check,
    integrity_check_sequential,
)
from optuna_nos.space import Decay, DecayNode, Genome, Momentum, Node, is_valid_decay
from optuna_nos.space.genome import HIDDEN_COLUMNS, ROOT

GOAL_RATE = 500.0
GOAL_SPEEDUP = 20.0
CHUNK = 25


def _own_decay(rng: random.Random) -> Decay:
    while True:
        hidden = DecayNode((rng.randrange(14),), unary_op=rng.randrange(13))
        if rng.random() < 0.2:
            root = DecayNode(tuple(rng.sample(range(15), 2)), binary_op=rng.randrange(7))
        else:
            root = DecayNode((rng.randrange(15),), unary_op=rng.randrange(13))
        decay = Decay(root=root, hidden=hidden)
        if is_valid_decay(decay):
            return decay


def _own_node(rng: random.Random, column: int) -> Node:
    def pick() -> int:
        if column == ROOT or rng.random() < 0.2:
            return rng.choice([c for c in HIDDEN_COLUMNS if c != column])
        return rng.randrange(20)

    inputs: tuple[int, ...] = (pick(),)
    binary_prob = 0.75 if column == ROOT else 0.25
    if rng.random() < binary_prob:
        second = rng.randrange(20) if column == ROOT else pick()
        if second != inputs[0]:
            inputs = (inputs[0], second)
    decays = {c: _own_decay(rng) for c in inputs if rng.random() < 0.15}
    unary = -1 if rng.random() < 0.2 else rng.randrange(25)
    return Node(inputs, unary_op=unary, binary_op=rng.randrange(10), decays=decays)


def _own_draw(rng: random.Random) -> Genome | None:
    """A simplified random-genome draw, used when optuna_nos.space.random_genome is unavailable."""
    try:
        hidden = tuple(_own_node(rng, c) for c in HIDDEN_COLUMNS)
        return Genome(hidden, _own_node(rng, ROOT), Momentum(rng.randrange(3)))
    except ValueError:  # an active cycle
        return None


def random_genomes(count: int, seed: int) -> tuple[list[Genome], str]:
    """``count`` random genome draws (redrawing unusable ones) and the generator's name."""
    draw: Callable[[], Genome | None]
    try:
        import numpy as np

        from optuna_nos.space.random_genome import draw_genome

        numpy_rng = np.random.default_rng(seed)
        draw, source = (lambda: draw_genome(numpy_rng)), f"{draw_genome.__module__}.draw_genome"
    except ImportError:
        own_rng = random.Random(seed)
        draw, source = (lambda: _own_draw(own_rng)), "bench's own simplified draw"
    genomes: list[Genome] = []
    while len(genomes) < count:
        genome = draw()
        if genome is not None:
            genomes.append(genome)
    return genomes, source


def _timed(
    check: Callable[[Genome], IntegrityResult], genomes: Sequence[Genome]
) -> tuple[list[IntegrityResult], float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    results = [check(genome) for genome in genomes]
    return results, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="random genomes to check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    genomes, source = random_genomes(args.count, args.seed)
    for genome in genomes[:20]:  # warm caches and lazy imports outside the timed region
        integrity_check(genome)
        integrity_check_sequential(genome)

    totals = {"batched": [0.0, 0.0], "sequential": [0.0, 0.0]}
    batched_results: list[IntegrityResult] = []
    sequential_results: list[IntegrityResult] = []
    contenders = [
        ("batched", integrity_check, batched_results),
        ("sequential", integrity_check_sequential, sequential_results),
    ]
    for start in range(0, len(genomes), CHUNK):
        chunk = genomes[start : start + CHUNK]
        # Alternate who goes first: the second one finds the decay checks already cached.
        for name, check, sink in contenders[:: 1 if start // CHUNK % 2 == 0 else -1]:
            results, wall, cpu = _timed(check, chunk)
            sink.extend(results)
            totals[name][0] += wall
            totals[name][1] += cpu

    n = len(genomes)
    passed = sum(r.passed for r in batched_results)
    flipped = sum(r.flip for r in batched_results)
    disagreements = sum(a != b for a, b in zip(batched_results, sequential_results, strict=True))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"genomes: {n} from {source} (seed {args.seed}); torch threads: {args.threads}; "
        f"load average at the end: {load} on {os.cpu_count()} CPUs"
    )
    print(f"passed: {passed} ({flipped} flipped), rejected: {n - passed}")
    print(f"batched == sequential on {n - disagreements}/{n} genomes")
    for clock, k in (("wall-clock", 0), ("CPU time", 1)):
        batched_rate = n / totals["batched"][k]
        sequential_rate = n / totals["sequential"][k]
        speedup = batched_rate / sequential_rate
        print(
            f"[{clock}] batched: {batched_rate:.0f} checks/s "
            f"({1e3 / batched_rate:.2f} ms each); sequential reference: "
            f"{sequential_rate:.1f} checks/s; speed-up {speedup:.1f}x "
            f"(goals: >= {GOAL_RATE:.0f}/s {'met' if batched_rate >= GOAL_RATE else 'MISSED'}, "
            f">= {GOAL_SPEEDUP:.0f}x {'met' if speedup >= GOAL_SPEEDUP else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
