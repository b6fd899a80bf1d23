"""Many workers on one PostgreSQL study, direct vs through ``optuna-nos proxy`` (gRPC).

Part 1, for N = 8, 32, 64 worker processes (forked from a server that imported the package
once) and each way of reaching the database, on a fresh database ``nos_bench_*``: workers run
the ParticleSampler on a GA too large to finish, with an objective that suggests the genome
and sleeps 0.2 s, for ``--seconds``. Reported: PostgreSQL connections to that database
(``pg_stat_activity``, sampled every 0.5 s: the peak and the median), trials per minute,
the sampler's own time per trial (``before_trial`` + ``sample_*`` + ``after_trial``,
measured inside each worker) and duplicate claims (attempts started while another attempt
on the same slot was running). On a 2-core machine 64 workers are CPU-bound: the columns to
compare are what the database sees and the ratios between the two ways, not trial rates.

Part 2, for histories of 2,000, 10,000 and 50,000 finished GA trials (bulk-written), one
fresh worker per way: the cost of its first ``before_trial`` (which reads the whole
history) and the mean over the next ``--trials`` trials (incremental reads: finished trials
are cached in the worker, and on the proxy).

    nice -n 15 python bench/proxy_scale.py [--workers 8 32 64] [--sizes 2000 10000 50000]
        [--seconds 40] [--trials 30] [--server postgresql://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.queues import Queue
from pathlib import Path

import optuna
import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sampler_overhead as history  # noqa: E402
import scaling  # noqa: E402
from scaling import OBJECTIVE_S, objective  # noqa: E402

from optuna_nos.sampler import GASizes  # noqa: E402
from optuna_nos.study.stored import SLOT_ATTR, SLOT_USER_ATTR  # noqa: E402
from testkit import drills  # noqa: E402

#: Part 1: the scaling bench's GA (1,000 initial slots, 4,600 in all); no run reaches the end.
SIZES = GASizes(**scaling.SIZES)
#: Part 2: 50,000 initial slots, 86,000 in all, so a 50,000-trial history of initial slots fits.
BIG = GASizes(n_particles=1000, init_factor=50, steps=5, mutations=7, max_redraws=4)
PRELOAD = [*scaling.PRELOAD, "optuna_nos.study.grpc_proxy", "grpc"]


def _open(url: str) -> optuna.storages.BaseStorage:
    from optuna_nos.study.grpc_proxy import is_grpc_url, make_grpc_storage
    from optuna_nos.study.storage import make_storage

    make = make_grpc_storage if is_grpc_url(url) else make_storage
    return make(url, heartbeat_interval=60)


def worker(url: str, seconds: float, report: Queue) -> None:  # type: ignore[type-arg]
    from optuna_nos import DivergencePruner, ParticleSampler, StopWhenFinished

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = ParticleSampler(**SIZES.to_dict())
    timer = history.Timed(sampler)
    try:
        study = optuna.load_study(
            study_name="bench", storage=_open(url), sampler=sampler, pruner=DivergencePruner()
        )
    except Exception as exc:  # noqa: BLE001 - reported: e.g. "too many clients"
        report.put((0.0, 0, f"{type(exc).__name__}: {str(exc)[:120]}"))
        return
    done = [0]

    def count(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done[0] += 1

    try:
        study.optimize(objective, timeout=seconds, callbacks=[StopWhenFinished(), count])
    except Exception as exc:  # noqa: BLE001 - reported: e.g. the server refuses connections
        report.put((timer.seconds, done[0], f"{type(exc).__name__}: {str(exc)[:120]}"))
        return
    report.put((timer.seconds, done[0], ""))


class ConnectionSampler:
    """Counts the backends connected to one database every 0.5 s, in a thread."""

    def __init__(self, server: str, database: str) -> None:
        self._server = server
        self._database = database
        self.counts: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = None
        while not self._stop.wait(0.5):
            try:
                if conn is None:
                    conn = psycopg2.connect(f"{self._server}/postgres", connect_timeout=3)
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                        (self._database,),
                    )
                    self.counts.append(int(cur.fetchone()[0]))
            except psycopg2.Error:
                conn = None  # the server restarted: connect again
        if conn is not None:
            conn.close()

    def stop(self) -> tuple[int, float]:
        """The peak and the median count while any backend was connected."""
        self._stop.set()
        self._thread.join()
        held = [c for c in self.counts if c > 0] or [0]
        return max(held), statistics.median(held)


def _proxy(url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc, grpc_url = drills.start_proxy(url, workdir)
    if proc.process.poll() is not None:
        raise SystemExit(f"the proxy did not start:\n{proc.stderr[-800:]}")
    return proc.process, grpc_url


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def many_workers(
    server: str, n_workers: int, via_proxy: bool, seconds: float, workdir: Path
) -> dict[str, float]:
    with history.fresh_database(server) as url:
        storage = _open(url)
        optuna.create_study(study_name="bench", storage=storage, direction="maximize")
        storage.engine.dispose()  # type: ignore[attr-defined]
        proxy, target = _proxy(url, workdir) if via_proxy else (None, url)
        connections = ConnectionSampler(server, url.rsplit("/", 1)[1])
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        report = context.Queue()
        processes = [
            context.Process(target=worker, args=(target, seconds, report))
            for _ in range(n_workers)
        ]
        began = time.monotonic()
        for process in processes:
            process.start()
        reports = [report.get() for _ in processes]
        for process in processes:
            process.join()
        wall = time.monotonic() - began
        peak, median = connections.stop()
        if proxy is not None:
            _stop(proxy)
        trials = drills._trials(url, "bench")
    duplicates, claimed = drills._duplicate_claims(trials)
    n_trials = sum(r[1] for r in reports)
    errors = sorted({r[2] for r in reports if r[2]})
    return {
        "peak": peak,
        "median": median,
        "trials": n_trials,
        "failed_workers": sum(bool(r[2]) for r in reports),
        "errors": errors,
        "per_minute": n_trials * 60.0 / wall,
        "sampler_ms": 1e3 * sum(r[0] for r in reports) / max(1, n_trials),
        "duplicates": duplicates,
        "claimed": claimed,
    }


def fill_fast(url: str, study_id: int, n: int, template: int = 40) -> float:
    """A history of ``n`` finished GA trials: ``template`` real ones written the way
    ``study.add_trials`` would (bench/sampler_overhead.py), then copied in SQL (their params,
    values and attrs) with each copy's own slot ``init k`` and a random value."""
    began = time.perf_counter()
    from optuna_nos.study.storage import make_storage

    storage = make_storage(url, heartbeat_interval=None)
    history.fill_history(storage, study_id, min(n, template))
    storage.engine.dispose()
    if n <= template:
        return time.perf_counter() - began
    copy = """
        WITH src AS (SELECT trial_id, number FROM trials WHERE study_id = %(s)s
                     AND number < %(t)s),
             dst AS (SELECT trial_id, number FROM trials WHERE study_id = %(s)s
                     AND number >= %(t)s)
        INSERT INTO {table} (trial_id, {columns})
        SELECT dst.trial_id, {values} FROM dst
        JOIN src ON src.number = dst.number %% %(t)s
        JOIN {table} x ON x.trial_id = src.trial_id"""
    slot = (
        f"CASE WHEN x.key IN ('{SLOT_ATTR}', '{SLOT_USER_ATTR}') "
        "THEN '\"init ' || dst.number || '\"' "
        "ELSE x.value_json END"
    )
    tables = {
        "trial_params": (
            "param_name, param_value, distribution_json",
            "x.param_name, x.param_value, x.distribution_json",
        ),
        "trial_values": ("objective, value, value_type", "x.objective, random(), x.value_type"),
        "trial_user_attributes": ("key, value_json", f"x.key, {slot}"),
        "trial_system_attributes": ("key, value_json", f"x.key, {slot}"),
    }
    with psycopg2.connect(url.replace("+psycopg2", "")) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO trials (number, study_id, state, datetime_start,
                       datetime_complete) SELECT g, %(s)s, 'COMPLETE', now(), now()
                       FROM generate_series(%(t)s, %(n)s - 1) g""",
            {"s": study_id, "t": template, "n": n},
        )
        for table, (columns, values) in tables.items():
            cur.execute(
                copy.format(table=table, columns=columns, values=values),
                {"s": study_id, "t": template},
            )
    return time.perf_counter() - began


def grown_study(server: str, n: int, n_trials: int, workdir: Path) -> dict[str, dict[str, float]]:
    from optuna_nos import DivergencePruner, ParticleSampler
    from optuna_nos.study.storage import make_storage

    history.SIZES = BIG  # the history's slots follow the big GA
    out: dict[str, dict[str, float]] = {}
    with history.fresh_database(server) as url:
        storage = make_storage(url, heartbeat_interval=None)
        study = optuna.create_study(study_name="bench", storage=storage, direction="maximize")
        storage.engine.dispose()
        written = fill_fast(url, study._study_id, n)
        print(f"  N = {n}: history written in {written:.0f} s", flush=True)
        for way in ("direct", "proxy"):
            proxy, target = _proxy(url, workdir) if way == "proxy" else (None, url)
            sampler = ParticleSampler(**BIG.to_dict(), seed=0)
            timer = history.Timed(sampler)
            loaded = optuna.load_study(
                study_name="bench",
                storage=_open(target),
                sampler=sampler,
                pruner=DivergencePruner(),
            )
            loaded.optimize(history.objective, n_trials=1)
            first = timer.seconds
            timer.seconds = 0.0
            loaded.optimize(history.objective, n_trials=n_trials)
            out[way] = {"first_ms": 1e3 * first, "warm_ms": 1e3 * timer.seconds / n_trials}
            if proxy is not None:
                _stop(proxy)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default=drills.DEFAULT_SERVER)
    parser.add_argument("--workers", type=int, nargs="*", default=[8, 32, 64])
    parser.add_argument("--sizes", type=int, nargs="*", default=[2000, 10000, 50000])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"proxy scaling on {args.server}: {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}; objective {OBJECTIVE_S} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="nos_proxy_bench_") as tmp:
        rows: dict[tuple[int, str], dict[str, float]] = {}
        for n in args.workers:
            for way in ("direct", "proxy"):
                rows[n, way] = many_workers(
                    args.server, n, way == "proxy", args.seconds, Path(tmp)
                )
                print(f"  {n} workers {way}: {rows[n, way]}", flush=True)
        if rows:
            print(
                f"\n{'workers':>7} {'way':<7} {'PG conns peak':>13} {'median':>7} "
                f"{'trials/min':>10} {'sampler ms/trial':>16} {'duplicate claims':>17}"
            )
            for (n, way), row in rows.items():
                print(
                    f"{n:>7} {way:<7} {row['peak']:>13} {row['median']:>7.0f} "
                    f"{row['per_minute']:>10.0f} {row['sampler_ms']:>16.1f} "
                    f"{row['duplicates']:>8}/{row['claimed']:<8}"
                )
        grown = {n: grown_study(args.server, n, args.trials, Path(tmp)) for n in args.sizes}
        if grown:
            print(
                f"\n{'history':>7} {'way':<7} {'first before_trial ms':>21} "
                f"{'next trials, sampler ms/trial':>30}"
            )
            for n, by_way in grown.items():
                for way, row in by_way.items():
                    print(f"{n:>7} {way:<7} {row['first_ms']:>21.0f} {row['warm_ms']:>30.1f}")
            small, large = min(grown), max(grown)
            for way in ("direct", "proxy"):
                growth = grown[large][way]["warm_ms"] / grown[small][way]["warm_ms"]
                print(
                    f"{way}: per-trial sampler time grows {growth:.2f}x for a "
                    f"{large / small:.0f}x larger history"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
