"""Sampler overhead per trial on PostgreSQL: ParticleSampler vs RandomSampler, same storage.

For each history size N (default 2,000 and 10,000 trials) a fresh database ``nos_bench_*``
is filled with a GA-shaped history of N finished trials (the attrs, params and genome JSON a
real ParticleSampler run leaves; a pool of random valid genomes is reused, which the GA's
bookkeeping does not care about). Then, in one process and on that same study, blocks of
trials run alternately with RandomSampler and ParticleSampler, both with the same objective
``suggest_genome(trial)`` returning a cheap value. Reported per trial:

* ``loop ms``: wall time of Optuna's whole trial loop (ask, objective, tell), per trial;
* ``sampler ms``: time inside the sampler's own methods (ParticleSampler: claim, GA state
  derivation, genome generation, attr writes);
* Random's trials that fail the integrity check are pruned early, so its complete trials
  (a full genome suggested and checked) are also shown on their own: they do the same
  storage work as a GA trial.

Goal (issue 4): ParticleSampler loop time <= 2x RandomSampler's on full-genome trials, and
no super-linear growth from N = 2,000 to 10,000. The databases are dropped afterwards.

    python bench/sampler_overhead.py [--server postgresql://postgres@127.0.0.1:5432]
        [--sizes 2000 10000] [--trials 60]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import distribution_to_json
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from optuna_nos import ParticleSampler, suggest_genome
from optuna_nos.optim.evolve import random_genome
from optuna_nos.optim.integrity import behaviour_key
from optuna_nos.sampler import GASizes, Slot
from optuna_nos.space.genome import Genome
from optuna_nos.study.storage import make_storage
from optuna_nos.study.stored import FIDELITY_ATTR, GA_ATTR, GENOME_ATTR, SLOT_ATTR
from optuna_nos.study.suggest import genome_params, param_distribution
from testkit.postgres import fresh_database

#: GA shape of the benchmark study: 3,000 initial slots, 13,800 slots in all.
SIZES = GASizes(n_particles=300, init_factor=10, steps=5, mutations=7, max_redraws=4)


def _history_slots(n: int) -> list[Slot]:
    """The first n slots a GA run decides: the initial population, then particles by step."""
    slots = [Slot("init", j) for j in range(SIZES.n_init)]
    slots += [Slot("reeval", i) for i in range(SIZES.n_particles)]
    for step in range(1, SIZES.steps + 1):
        slots += [
            Slot("child", i, step, c)
            for i in range(SIZES.n_particles)
            for c in range(SIZES.mutations)
        ]
    if n > len(slots):
        raise SystemExit(f"history size {n} exceeds the benchmark GA's {len(slots)} slots")
    return slots[:n]


def _rows(
    study_id: int,
    number: int,
    slot: Slot,
    genome: Genome,
    behaviour: str,
    value: float,
    start: datetime.datetime,
) -> tuple[Any, list[Any]]:
    """The ORM rows Optuna writes for one finished GA trial (trial, value, params, attrs)."""
    from optuna.storages._rdb import models

    params = genome_params(genome)
    equation = genome.equation()
    lineage = {
        "slot": slot.name,
        "particle": slot.particle,
        "step": slot.step,
        "child": slot.child,
        "parent": None,
        "equation": equation,
        "behaviour": behaviour,
        "mutation": None,
    }
    began = start + datetime.timedelta(seconds=number)
    trial = models.TrialModel(
        study_id=study_id,
        number=number,
        state=TrialState.COMPLETE,
        datetime_start=began,
        datetime_complete=began + datetime.timedelta(milliseconds=500),
    )
    stored, kind = models.TrialValueModel.value_to_stored_repr(value)
    rows: list[Any] = [
        models.TrialValueModel(trial=trial, objective=0, value=stored, value_type=kind)
    ]
    for name, choice in params.items():
        distribution = param_distribution(name)
        rows.append(
            models.TrialParamModel(
                trial=trial,
                param_name=name,
                param_value=distribution.to_internal_repr(choice),
                distribution_json=distribution_to_json(distribution),
            )
        )
    user = {
        "slot": slot.name,
        "fidelity": slot.fidelity,
        "equation": equation,
        "equation_readable": genome.equation(),
        "genome": genome.to_json(),
        "flip": genome.flip,
    }
    system = {
        SLOT_ATTR: slot.name,
        GENOME_ATTR: genome.to_json(),
        FIDELITY_ATTR: slot.fidelity,
        GA_ATTR: lineage,
    }
    rows += [
        models.TrialUserAttributeModel(trial=trial, key=k, value_json=json.dumps(v))
        for k, v in user.items()
    ]
    rows += [
        models.TrialSystemAttributeModel(trial=trial, key=k, value_json=json.dumps(v))
        for k, v in system.items()
    ]
    return trial, rows


def fill_history(storage: RDBStorage, study_id: int, n: int, seed: int = 0) -> float:
    """Bulk-write n finished GA-shaped trials (the same rows ``study.add_trials`` would
    write, in a few large transactions instead of one per trial); returns the seconds."""
    rng = np.random.default_rng(seed)
    pool = [random_genome(rng) for _ in range(40)]
    keys = [behaviour_key(g) for g in pool]
    values = random.Random(seed)
    start = datetime.datetime(2024, 1, 1)
    began = time.perf_counter()
    slots = _history_slots(n)
    for chunk in range(0, n, 1000):
        session = storage.scoped_session()
        for number in range(chunk, min(n, chunk + 1000)):
            genome = pool[number % len(pool)]
            trial, rows = _rows(
                study_id,
                number,
                slots[number],
                genome,
                keys[number % len(pool)],
                values.random(),
                start,
            )
            session.add(trial)
            session.add_all(rows)
        session.commit()
        session.close()
    return time.perf_counter() - began


class Timed:
    """Wraps a sampler's methods and sums the seconds spent in them."""

    def __init__(self, sampler: optuna.samplers.BaseSampler) -> None:
        self.seconds = 0.0
        for name in (
            "before_trial",
            "sample_independent",
            "sample_relative",
            "infer_relative_search_space",
            "after_trial",
        ):
            setattr(sampler, name, self._wrap(getattr(sampler, name)))

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - began

        return timed


def objective(trial: optuna.Trial) -> float:
    genome = suggest_genome(trial)
    return float(len(genome.equation()))


def run_block(url: str, sampler: optuna.samplers.BaseSampler, n_trials: int) -> dict[str, Any]:
    storage = make_storage(url, heartbeat_interval=60)
    study = optuna.load_study(study_name="bench", storage=storage, sampler=sampler)
    timer = Timed(sampler)
    study.optimize(objective, n_trials=3)  # warm-up: the first read loads the whole history
    timer.seconds = 0.0
    ends: list[tuple[float, TrialState]] = []

    def mark(study: optuna.Study, trial: FrozenTrial) -> None:
        ends.append((time.perf_counter(), trial.state))

    began = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, callbacks=[mark])
    loops = [
        (t - prev, state)
        for (t, state), prev in zip(ends, [began] + [t for t, _ in ends[:-1]], strict=True)
    ]
    complete = [d for d, s in loops if s == TrialState.COMPLETE]
    storage.engine.dispose()
    return {
        "loop_ms": 1e3 * statistics.mean(d for d, _ in loops),
        "complete_loop_ms": 1e3 * statistics.mean(complete) if complete else float("nan"),
        "n_complete": len(complete),
        "sampler_ms": 1e3 * timer.seconds / n_trials,
    }


def bench_size(server: str, n: int, n_trials: int, rounds: int) -> dict[str, dict[str, float]]:
    with fresh_database(server, "nos_bench") as url:
        storage = make_storage(url, heartbeat_interval=60)
        study = optuna.create_study(study_name="bench", storage=storage, direction="maximize")
        seconds = fill_history(storage, study._study_id, n)
        storage.engine.dispose()
        print(f"  N = {n}: history written in {seconds:.0f} s", flush=True)
        results: dict[str, list[dict[str, Any]]] = {"random": [], "particle": []}
        for round_ in range(rounds):
            results["random"].append(
                run_block(url, optuna.samplers.RandomSampler(seed=round_), n_trials)
            )
            results["particle"].append(
                run_block(url, ParticleSampler(**SIZES.to_dict(), seed=round_), n_trials)
            )
        return {
            name: {key: statistics.mean(r[key] for r in runs) for key in runs[0]}
            for name, runs in results.items()
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("OPTUNA_NOS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432"),
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--trials", type=int, default=60, help="trials per measured block")
    parser.add_argument("--rounds", type=int, default=2, help="alternating blocks per sampler")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"sampler overhead on {args.server} ({args.trials} trials x {args.rounds} rounds "
        "per sampler and size)",
        flush=True,
    )
    rows = {n: bench_size(args.server, n, args.trials, args.rounds) for n in args.sizes}
    print()
    print(
        f"{'N':>6} {'sampler':<9} {'loop ms':>8} {'full-genome loop ms':>20} "
        f"{'sampler ms':>11} {'ratio vs Random (full genome)':>30}"
    )
    for n, by_sampler in rows.items():
        base = by_sampler["random"]["complete_loop_ms"]
        for name in ("random", "particle"):
            row = by_sampler[name]
            full = row["complete_loop_ms"] if name == "random" else row["loop_ms"]
            print(
                f"{n:>6} {name:<9} {row['loop_ms']:>8.1f} {full:>20.1f} "
                f"{row['sampler_ms']:>11.2f} {full / base:>30.2f}"
            )
    if len(rows) >= 2:
        small, large = min(rows), max(rows)
        growth = rows[large]["particle"]["sampler_ms"] / rows[small]["particle"]["sampler_ms"]
        print(
            f"\nParticleSampler own time grows {growth:.2f}x from N = {small} to N = {large} "
            f"(history {large / small:.1f}x larger; linear per trial would be "
            f"{large / small:.1f}x at most)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
