"""Throughput of ParticleSampler workers on one PostgreSQL study: 1, 2, 4, 8 processes.

Each worker count runs on a fresh database ``nos_bench_*`` (dropped afterwards): the
workers (processes forked from a server that imported the package once) share one study
whose objective suggests the genome and sleeps a fixed 0.2 s, so the ideal is linear
scaling. Throughput is counted from the trials' completion times in a steady window after
a warm-up. Reported per worker count: trials per minute, efficiency against k times the
1-worker rate (goal >= 85% at 8 workers), the objective-only bound k * 300 / min, and the
duplicate-claim rate (attempts beyond the first on a slot, per GA trial; the objective
never fails, so every extra attempt is a racing claim), the worker CPU per trial and the
share of time workers waited for a slot. A last run has 8 workers finish a small GA, where
few slots are open at a time, to measure duplicate claims under contention.

    python bench/scaling.py [--server postgresql://postgres@127.0.0.1:5432]
        [--workers 1 2 4 8] [--window 30] [--warmup 8]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import sys
import time
from multiprocessing.queues import Queue

import optuna
from optuna.trial import TrialState

from optuna_nos.study.stored import SLOT_ATTR
from testkit.postgres import fresh_database
from testkit.process import SAMPLER_PRELOAD

OBJECTIVE_S = 0.2
#: Large enough that no run reaches the end: 1,000 initial slots, 4,600 in all.
SIZES = {"n_particles": 100, "init_factor": 10, "steps": 5, "mutations": 7, "max_redraws": 4}
#: The contention run: 8 workers finish a small GA (16 + 8 * 13 = 120 slots), where few
#: slots are open at a time (every step waits for the step before it).
SMALL = {"n_particles": 8, "init_factor": 2, "steps": 3, "mutations": 4, "max_redraws": 4}
PRELOAD = SAMPLER_PRELOAD


def objective(trial: optuna.Trial) -> float:
    from optuna_nos import suggest_genome

    genome = suggest_genome(trial)
    time.sleep(OBJECTIVE_S)
    return float(len(genome.equation()) % 97)


def worker(
    url: str,
    seconds: float,
    report: Queue,  # type: ignore[type-arg]
    sizes: dict[str, int],
) -> None:
    from optuna_nos import ParticleSampler, StopWhenFinished
    from optuna_nos.study.storage import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(url, heartbeat_interval=60)
    sampler = ParticleSampler(**sizes)
    study = optuna.load_study(study_name="scaling", storage=storage, sampler=sampler)
    began, cpu = time.monotonic(), time.process_time()
    study.optimize(objective, timeout=seconds, callbacks=[StopWhenFinished()])
    report.put((time.process_time() - cpu, sampler.waited_s, time.monotonic() - began))


def run(
    server: str, n_workers: int, warmup: float, window: float, sizes: dict[str, int] = SIZES
) -> dict[str, float]:
    from optuna_nos.study.storage import make_storage

    with fresh_database(server, "nos_bench") as url:
        storage = make_storage(url, heartbeat_interval=60)
        study = optuna.create_study(study_name="scaling", storage=storage, direction="maximize")
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        report = context.Queue()
        processes = [
            context.Process(target=worker, args=(url, warmup + window + 5, report, sizes))
            for _ in range(n_workers)
        ]
        for process in processes:
            process.start()
        reports = [report.get() for _ in processes]
        for process in processes:
            process.join()
        trials = study.get_trials(deepcopy=False)
        storage.engine.dispose()
    completed = [
        t.datetime_complete
        for t in trials
        if t.state == TrialState.COMPLETE and t.datetime_complete is not None
    ]
    start = min(t.datetime_start for t in trials if t.datetime_start is not None)
    low = start + datetime.timedelta(seconds=warmup)
    high = low + datetime.timedelta(seconds=window)
    in_window = [when for when in completed if low <= when < high]
    slots = [t.system_attrs.get(SLOT_ATTR) for t in trials]
    claimed = [s for s in slots if s is not None]
    finish = max(completed) if completed else start
    return {
        "wall_s": (finish - start).total_seconds(),
        "per_minute": len(in_window) * 60.0 / window,
        "trials": float(len(trials)),
        "worker_cpu_per_trial": sum(r[0] for r in reports) / max(1, len(trials)),
        "waited_share": sum(r[1] for r in reports) / sum(r[2] for r in reports),
        "duplicates": float(len(claimed) - len(set(claimed))),
        "claimed": float(len(claimed)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("OPTUNA_NOS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument(
        "--no-contention",
        dest="contention",
        action="store_false",
        help="skip the 8-worker run on a small GA (duplicate claims)",
    )
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"scaling on {args.server}: objective {OBJECTIVE_S} s, window {args.window:.0f} s "
        f"after {args.warmup:.0f} s warm-up; {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results = {}
    for k in args.workers:
        results[k] = run(args.server, k, args.warmup, args.window)
        print(f"  {k} workers: {results[k]['per_minute']:.0f} trials/min", flush=True)
    base = results[min(results)]["per_minute"] / min(results)
    print()
    print(
        f"{'workers':>7} {'trials/min':>10} {'ideal (k x 1-worker)':>21} {'efficiency':>10} "
        f"{'objective bound':>15} {'worker CPU s/trial':>18} {'time waiting':>12} "
        f"{'duplicate claims':>17}"
    )
    for k, row in results.items():
        ideal = k * base
        bound = k * 60.0 / OBJECTIVE_S
        rate = row["duplicates"] / row["claimed"] if row["claimed"] else 0.0
        print(
            f"{k:>7} {row['per_minute']:>10.0f} {ideal:>21.0f} "
            f"{row['per_minute'] / ideal:>10.1%} {bound:>15.0f} "
            f"{row['worker_cpu_per_trial']:>18.3f} {row['waited_share']:>12.1%} "
            f"{rate:>8.2%} ({row['duplicates']:.0f}/{row['claimed']:.0f})"
        )
    cpu = results[min(results)]["worker_cpu_per_trial"]
    cores = os.cpu_count() or 1
    if args.contention:
        small = run(args.server, 8, 0.0, 600.0, SMALL)
        n_small = 16 + 8 * (1 + 3 * 4)
        print(
            f"\ncontention run: 8 workers finished a {n_small}-slot GA in "
            f"{small['wall_s']:.0f} s; duplicate claims {small['duplicates']:.0f}/"
            f"{small['claimed']:.0f} = {small['duplicates'] / small['claimed']:.2%}; "
            f"time waiting for a slot {small['waited_share']:.1%}"
        )
    print(
        f"\nCPU ceiling of this machine: {cores} cores / {cpu:.3f} worker CPU-s per trial "
        f"(PostgreSQL's own CPU not counted) = {cores * 60 / cpu:.0f} trials/min at most"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
