"""Reliability drills: kill, interrupt, starve and restart a real search, and check what is left.

Every drill runs the ``optuna-nos`` command in subprocesses, as users run it, against a real
storage, then reads the study back and checks its invariants (no trial left RUNNING, no
finished trial lost or changed, the search finishes). Each drill notes what it did and what
it found in its :class:`DrillResult`. ``bench/drills.py`` is their command line;
``tests/test_reliability.py`` runs the CI set.

``postgres-restart`` stops the local PostgreSQL cluster for 10 s with ``pg_ctlcluster`` and
always starts it again (try/finally); ``chaos`` does so three times, among 30 SIGKILLs.
The drills that need PostgreSQL use a fresh database on the given server, dropped afterwards.
"""

from __future__ import annotations

import datetime
import os
import resource
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_nos.study.stored import (
    CONFIG_ATTR,
    GENOME_ATTR,
    REASON_ATTR,
    SLOT_ATTR,
    WORKER_ATTR,
    read_ga_record,
)
from testkit.config import FAST_GA, ga_table, objective_table, workers_table
from testkit.postgres import DEFAULT_SERVER, fresh_database, postgres_available
from testkit.process import cli_command, cli_env, free_port, run_args

__all__ = [
    "DEFAULT_SERVER",
    "DRILLS",
    "DrillResult",
    "free_port",
    "fresh_database",
    "postgres_available",
    "run_drill",
    "slots_completed_twice",
    "start_proxy",
]

ARTIFACT_WARNING = "cannot write artifacts"

WORKERS_2S = workers_table(2, 5, 2)


@dataclass
class DrillResult:
    """What a drill found: ``passed`` and one line per finding (numbers included)."""

    name: str
    passed: bool = True
    findings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def note(self, line: str) -> None:
        print(f"  [{self.name}] {line}", flush=True)
        self.findings.append(line)

    def check(self, ok: bool, line: str) -> bool:
        self.note(("ok   " if ok else "FAIL ") + line)
        self.passed = self.passed and ok
        return ok


# -- helpers -------------------------------------------------------------------------------


@dataclass
class _Proc:
    process: subprocess.Popen[bytes]
    stderr_path: Path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


def _start(
    args: list[str], workdir: Path, tag: str, preexec: Callable[[], None] | None = None
) -> _Proc:
    """``optuna-nos ARGS`` in the background; stdout and stderr go to files in ``workdir``."""
    err = workdir / f"{tag}.stderr"
    with open(workdir / f"{tag}.stdout", "wb") as out, open(err, "wb") as errf:
        process = subprocess.Popen(
            cli_command(*args),
            cwd=workdir,
            env=cli_env(),
            stdout=out,
            stderr=errf,
            preexec_fn=preexec,
        )
    return _Proc(process, err)


def _cli(args: list[str], workdir: Path, tag: str, timeout: float = 600) -> tuple[int, str]:
    proc = _start(args, workdir, tag)
    code = proc.wait(timeout)
    if code is None:
        proc.process.kill()
        proc.process.wait()
        return -9, proc.stderr
    return code, proc.stderr


def _init(
    result: DrillResult,
    url: str,
    study: str,
    config: Path,
    workdir: Path,
    tag: str = "init",
    label: str = "",
) -> bool:
    """``optuna-nos init`` of ``config`` as ``study``; False (its stderr noted) on failure."""
    code, err = _cli(
        ["init", "--storage", url, "--study", study, "--config", str(config)], workdir, tag
    )
    if not result.check(code == 0, f"{label}init exit {code}"):
        result.note(err.strip()[-500:])
        return False
    return True


def _stop_all(procs: list[_Proc]) -> None:
    for proc in procs:
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait()


def _storage(url: str) -> optuna.storages.BaseStorage:
    from optuna_nos.study.storage import make_storage

    return make_storage(url, heartbeat_interval=None, max_retry=None)


def _trials(url: str, study: str) -> list[FrozenTrial]:
    storage = _storage(url)
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=True)
    finally:
        storage.engine.dispose()  # type: ignore[attr-defined]


def _finished(url: str, study: str, sizes: dict[str, Any]) -> bool:
    from optuna_nos.sampler import ParticleSampler

    storage = _storage(url)
    try:
        loaded = optuna.load_study(study_name=study, storage=storage)
        return ParticleSampler(**sizes).is_finished(loaded)
    finally:
        storage.engine.dispose()  # type: ignore[attr-defined]


def _wait_for(predicate: Callable[[], Any], timeout: float, poll: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = predicate()
        except Exception:  # noqa: BLE001 - the study may not exist yet
            found = None
        if found:
            return found
        time.sleep(poll)
    return None


def _count(trials: list[FrozenTrial]) -> str:
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(states.items()))


def _tracebacks(text: str) -> int:
    return text.count("Traceback (most recent call last)")


def _running_started(
    url: str, study: str, min_age_s: float = 0.0, objective_marker: bool = False
) -> FrozenTrial | None:
    """A RUNNING trial whose objective has started (``drill.started``; with
    ``objective_marker=False`` holding a genome is enough) at least ``min_age_s`` ago."""
    now = datetime.datetime.now()
    for trial in _trials(url, study):
        if trial.state != TrialState.RUNNING or trial.datetime_start is None:
            continue
        started = trial.user_attrs.get("drill.started") or (
            not objective_marker and GENOME_ATTR in trial.system_attrs
        )
        if started and (now - trial.datetime_start).total_seconds() >= min_age_s:
            return trial
    return None


def _sigkill_in_trial(
    result: DrillResult,
    url: str,
    study: str,
    args: list[str],
    workdir: Path,
    min_age_s: float,
    objective_marker: bool,
    timeout: float,
) -> FrozenTrial | None:
    """Start ``optuna-nos ARGS`` and SIGKILL it once a trial of it has run ``min_age_s``
    seconds (see :func:`_running_started`); that trial, or None when none ran in time."""
    first = _start(args, workdir, "killed")
    victim = _wait_for(
        lambda: _running_started(url, study, min_age_s, objective_marker), timeout, 0.05
    )
    if victim is None:
        _stop_all([first])
        result.check(False, f"no trial ran for {min_age_s} s within {timeout:.0f} s")
        return None
    first.process.send_signal(signal.SIGKILL)
    first.wait(30)
    return victim


def _sizes(ga: str) -> dict[str, int]:
    import tomllib

    table = tomllib.loads(ga)["ga"]
    return {
        k: table[k] for k in ("n_particles", "init_factor", "steps", "mutations", "max_redraws")
    }


# -- drills --------------------------------------------------------------------------------


def drill_signals(result: DrillResult, workdir: Path, server: str) -> None:
    """SIGTERM and SIGINT (Ctrl-C) of ``optuna-nos worker`` and ``optuna-nos run`` mid-trial:
    exit 130, the trial ends FAIL with ``nos.reason``, none RUNNING; a rerun finishes."""
    config_text = FAST_GA + WORKERS_2S + objective_table("sleepy", sleep_s=1.0)
    sizes = _sizes(FAST_GA)
    for command in ("worker", "run"):
        for sig in (signal.SIGTERM, signal.SIGINT):
            case = workdir / f"{command}_{sig.name}"
            case.mkdir()
            config = case / "drill.toml"
            config.write_text(config_text)
            url = f"sqlite:///{case / 'drill.db'}"
            if command == "worker":
                if not _init(result, url, "s", config, case, label=f"{command}/{sig.name}: "):
                    continue
                args = ["worker", "--storage", url, "--study", "s"]
            else:
                args = run_args(config, url, "s")
            proc = _start(args, case, "first")
            victim = _wait_for(partial(_running_started, url, "s", 0.0, True), 120, 0.05)
            if victim is None:
                _stop_all([proc])
                result.check(False, f"{command}/{sig.name}: no trial started within 120 s")
                continue
            proc.process.send_signal(sig)
            code = proc.wait(60)
            _stop_all([proc])
            trials = _trials(url, "s")
            after = next(t for t in trials if t.number == victim.number)
            result.check(
                code == 130,
                f"{command}/{sig.name}: signal landed in trial "
                f"{victim.number}; exit status {code} (expected 130)",
            )
            reason = str(after.user_attrs.get(REASON_ATTR, ""))
            result.check(
                after.state == TrialState.FAIL
                and reason.startswith("interrupted: ")
                and reason.split(": ", 1)[1] in ("SIGINT", f"signal {sig.name}"),
                f"{command}/{sig.name}: trial {after.number} is {after.state.name} "
                f"with reason {reason!r}",
            )
            running = [t.number for t in trials if t.state == TrialState.RUNNING]
            result.check(not running, f"{command}/{sig.name}: trials left RUNNING: {running}")
            tracebacks = _tracebacks(proc.stderr)
            result.check(
                tracebacks == 0, f"{command}/{sig.name}: {tracebacks} tracebacks on stderr"
            )
            code, err = _cli(args, case, "rerun", timeout=300)
            trials = _trials(url, "s")
            finished = _finished(url, "s", sizes)
            left = [t.number for t in trials if t.state == TrialState.RUNNING]
            ok = code == 0 and finished and not left
            if not result.check(
                ok,
                f"{command}/{sig.name}: rerun exit {code}, search "
                f"finished={finished}, {len(trials)} trials ({_count(trials)})",
            ):
                result.note(err.strip()[-800:])


DIGITS_GA = (
    FAST_GA
    + '\n[objective]\ntarget = "proxy.tasks:digits"\ndevice = "cpu"\n'
    + workers_table(1, 3, 2)
)


def drill_sigkill(result: DrillResult, workdir: Path, server: str) -> None:
    """SIGKILL a worker mid-trial (real digits objective, heartbeat 1 s): the slot is retried
    with the same genome by the next worker and the search completes."""
    config = workdir / "digits.toml"
    config.write_text(DIGITS_GA)
    url = f"sqlite:///{workdir / 'digits.db'}"
    if not _init(result, url, "d", config, workdir):
        return
    args = ["worker", "--storage", url, "--study", "d"]
    # Kill in a trial that has held a genome for 1 s: the worker is well inside training.
    victim = _sigkill_in_trial(result, url, "d", args, workdir, 1.0, False, 300)
    if victim is None or victim.datetime_start is None:
        return
    slot, genome = victim.system_attrs.get(SLOT_ATTR), victim.system_attrs.get(GENOME_ATTR)
    result.note(
        f"SIGKILLed the worker in trial {victim.number} (slot {slot!r}) after "
        f"{(datetime.datetime.now() - victim.datetime_start).total_seconds():.1f} s"
    )
    began = time.monotonic()
    code, err = _cli(args, workdir, "second", timeout=900)
    trials = _trials(url, "d")
    after = next(t for t in trials if t.number == victim.number)
    result.check(
        after.state == TrialState.FAIL,
        f"killed trial {after.number} is {after.state.name} (stale heartbeat)",
    )
    retries = [
        t for t in trials if t.number > victim.number and t.system_attrs.get(SLOT_ATTR) == slot
    ]
    same = [t for t in retries if t.system_attrs.get(GENOME_ATTR) == genome]
    result.check(
        bool(same) and same[0].state.is_finished(),
        f"slot {slot!r} retried in trials {[t.number for t in retries]}; same genome "
        f"in {[t.number for t in same]} ({same[0].state.name if same else '-'})",
    )
    finished = _finished(url, "d", _sizes(DIGITS_GA))
    left = [t.number for t in trials if t.state == TrialState.RUNNING]
    if not result.check(
        code == 0 and finished and not left,
        f"second worker exit {code} after {time.monotonic() - began:.0f} s; "
        f"search finished={finished}; RUNNING {left}; {_count(trials)}",
    ):
        result.note(err.strip()[-800:])


def _limit_file_size() -> None:
    """In the child: files it writes may not exceed 4 KiB (EFBIG, as a full disk would
    refuse); CPython ignores SIGXFSZ, so the write fails instead of killing the process."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def drill_artifacts(result: DrillResult, workdir: Path, server: str) -> None:
    """Two workers write artifacts into a directory they cannot write (root ignores chmod, so:
    a path under a regular file, a path under /proc, and a 4 KiB file-size limit standing in
    for a full disk): trials complete; each worker logs the warning once."""
    cases: list[tuple[str, str, Callable[[], None] | None]] = [
        ("under a regular file (ENOTDIR)", str(workdir / "a_file" / "artifacts"), None),
        ("under /proc (not creatable)", f"/proc/nos-drill-{uuid.uuid4().hex[:6]}", None),
        (
            "4 KiB file-size limit (EFBIG, as a full disk)",
            str(workdir / "capped"),
            _limit_file_size,
        ),
    ]
    (workdir / "a_file").write_text("a regular file, not a directory\n")
    sizes = _sizes(FAST_GA)
    for index, (label, artifact_dir, preexec) in enumerate(cases):
        with fresh_database(server, "nos_drill") as url:
            config = workdir / f"art{index}.toml"
            config.write_text(
                FAST_GA + WORKERS_2S + objective_table("fast") + "\n[artifacts]\ndir = "
                f'"{artifact_dir}"\n'
            )
            if not _init(result, url, "a", config, workdir, f"art{index}_init", f"{label}: "):
                continue
            procs = [
                _start(
                    ["worker", "--storage", url, "--study", "a"],
                    workdir,
                    f"art{index}_w{k}",
                    preexec,
                )
                for k in range(2)
            ]
            codes = [p.wait(300) for p in procs]
            _stop_all(procs)
            trials = _trials(url, "a")
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            by_worker: dict[str, int] = {}
            for trial in done:
                key = str(trial.system_attrs.get(WORKER_ATTR))
                by_worker[key] = by_worker.get(key, 0) + 1
            warnings = [p.stderr.count(ARTIFACT_WARNING) for p in procs]
            finished = _finished(url, "a", sizes)
            ran = [n for n in by_worker.values() if n]
            result.check(
                all(c == 0 for c in codes) and finished and len(done) > 0,
                f"{label}: worker exits {codes}, search finished={finished}, "
                f"{len(done)} trials COMPLETE ({sorted(by_worker.values())} per "
                "worker)",
            )
            ok = all(w == 1 for w, p in zip(warnings, procs, strict=True)) and len(ran) == 2
            result.check(
                ok or all(w <= 1 for w in warnings) and sum(warnings) == len(ran),
                f"{label}: artifact warnings per worker {warnings} for {len(done)} trials",
            )
            tracebacks = sum(_tracebacks(p.stderr) for p in procs)
            result.check(tracebacks == 0, f"{label}: {tracebacks} tracebacks on stderr")


def drill_init_race(result: DrillResult, workdir: Path, server: str, rounds: int = 10) -> None:
    """Two ``init`` processes with different configs start together on an empty PostgreSQL
    database, ``rounds`` times: exactly one prints "ready", the other is refused, the stored
    config and GA record are the winner's, and schema creation never crashes."""
    configs = [workdir / f"race{k}.toml" for k in range(2)]
    for k, path in enumerate(configs):
        path.write_text(ga_table(seed=k) + WORKERS_2S + objective_table("fast"))
    lost = crashes = wrong = 0
    for round_ in range(rounds):
        with fresh_database(server, "nos_drill") as url:
            procs = [
                _start(
                    ["init", "--storage", url, "--study", "race", "--config", str(path)],
                    workdir,
                    f"race{round_}_{k}",
                )
                for k, path in enumerate(configs)
            ]
            codes = [p.wait(120) for p in procs]
            _stop_all(procs)
            crashes += sum(
                c not in (0, 2) or _tracebacks(p.stderr) > 0
                for c, p in zip(codes, procs, strict=True)
            )
            if codes.count(0) != 1:
                lost += 1
                result.note(
                    f"round {round_}: exits {codes}: "
                    + " | ".join(p.stderr.strip()[-200:] for p in procs)
                )
                continue
            winner = codes.index(0)
            loaded = optuna.load_study(study_name="race", storage=_storage(url))
            record = read_ga_record(loaded._storage, loaded._study_id) or {}
            wrong += (
                loaded.user_attrs[CONFIG_ATTR]["ga"]["seed"] != winner
                or record.get("seed") != winner
            )
    result.check(lost == 0, f"{rounds} rounds: {lost} without exactly one 'ready'")
    result.check(
        crashes == 0, f"{rounds} rounds: {crashes} inits crashed (exit not 0/2 or a traceback)"
    )
    result.check(
        wrong == 0, f"{rounds} rounds: {wrong} stored configs or GA records not the winner's"
    )


def _pg_cluster(action: str) -> subprocess.CompletedProcess[str]:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _snapshot(trials: list[FrozenTrial]) -> dict[int, tuple[Any, ...]]:
    return {
        t.number: (
            t.state,
            t.values,
            t.params,
            sorted(t.user_attrs.items(), key=str),
            t.datetime_complete,
        )
        for t in trials
        if t.state.is_finished()
    }


RESTART_GA = ga_table(n_particles=6, init_factor=4, steps=3, mutations=4)


def drill_postgres_restart(result: DrillResult, workdir: Path, server: str) -> None:
    """Stop the PostgreSQL server for 10 s during a 4-worker search, then start it: workers
    reconnect and finish; no finished trial lost or changed; none left RUNNING."""
    sizes = _sizes(RESTART_GA)
    with fresh_database(server, "nos_drill") as url:
        config = workdir / "restart.toml"
        config.write_text(RESTART_GA + WORKERS_2S + objective_table("sleepy", sleep_s=0.5))
        if not _init(result, url, "r", config, workdir):
            return
        procs = [
            _start(["worker", "--storage", url, "--study", "r"], workdir, f"w{k}")
            for k in range(4)
        ]
        try:
            enough = _wait_for(
                lambda: sum(t.state == TrialState.COMPLETE for t in _trials(url, "r")) >= 12,
                180,
                0.5,
            )
            before = _snapshot(_trials(url, "r"))
            result.note(
                f"{len(before)} finished trials before the restart"
                + ("" if enough else " (fewer than 12 within 180 s)")
            )
            stopped_at = time.monotonic()
            try:
                stop = _pg_cluster("stop")
                result.note(f"server stopped (exit {stop.returncode}); waiting 10 s")
                time.sleep(10)
            finally:
                start = _pg_cluster("start")
                up = _wait_for(lambda: postgres_available(server), 60, 0.5)
                result.check(
                    bool(up),
                    f"server started again (exit {start.returncode}) "
                    f"{time.monotonic() - stopped_at:.1f} s after the stop",
                )
            codes = [p.wait(400) for p in procs]
        finally:
            _stop_all(procs)
        trials = _trials(url, "r")
        after = _snapshot(trials)
        lost = [n for n in before if n not in after]
        changed = [n for n in before if n in after and after[n] != before[n]]
        left = [t.number for t in trials if t.state == TrialState.RUNNING]
        finished = _finished(url, "r", sizes)
        errs = [p.stderr for p in procs]
        result.check(all(c == 0 for c in codes), f"worker exits {codes}")
        result.check(not lost and not changed, f"finished trials lost {lost}, changed {changed}")
        result.check(
            finished and not left,
            f"search finished={finished}; RUNNING {left}; {len(trials)} trials ({_count(trials)})",
        )
        reconnects = sum(e.count("storage unavailable") for e in errs)
        tracebacks = sum(_tracebacks(e) for e in errs)
        result.note(f"'storage unavailable' log lines: {reconnects}; tracebacks: {tracebacks}")
        if not result.passed:
            for k, text in enumerate(errs):
                result.note(f"worker {k} stderr tail: {text.strip()[-600:]}")


LOAD_GA = ga_table(seed=None, n_particles=50, init_factor=10, steps=5, mutations=7, max_redraws=4)


def drill_load16(
    result: DrillResult, workdir: Path, server: str, seconds: float = 120.0, n_workers: int = 16
) -> None:
    """16 worker processes, fast objective, for ``seconds``; then SIGTERM. No deadlock, no
    unhandled exception; trials per second and the duplicate-claim rate (goal <= 1%)."""
    with fresh_database(server, "nos_drill") as url:
        config = workdir / "load.toml"
        config.write_text(LOAD_GA + WORKERS_2S + objective_table("fast"))
        if not _init(result, url, "l", config, workdir):
            return
        procs = [
            _start(["worker", "--storage", url, "--study", "l"], workdir, f"w{k:02d}")
            for k in range(n_workers)
        ]
        try:
            time.sleep(seconds)
            alive = sum(p.process.poll() is None for p in procs)
            for proc in procs:
                if proc.process.poll() is None:
                    proc.process.send_signal(signal.SIGTERM)
            codes = [p.wait(120) for p in procs]
        finally:
            _stop_all(procs)
        trials = _trials(url, "l")
    result.note(
        f"{alive} of {n_workers} workers alive after {seconds:.0f} s; exits after "
        f"SIGTERM: {sorted(set(map(str, codes)))}"
    )
    errs = [p.stderr for p in procs]
    tracebacks = sum(_tracebacks(e) for e in errs)
    statuses = sorted(set(map(str, codes)))
    result.check(
        tracebacks == 0 and all(c in (0, 130) for c in codes),
        f"{tracebacks} tracebacks on stderr; exit statuses {statuses}",
    )
    finished = [t for t in trials if t.state.is_finished() and t.datetime_complete]
    first = min(t.datetime_start for t in trials if t.datetime_start is not None)
    last = max(t.datetime_complete for t in finished if t.datetime_complete is not None)
    span = (last - first).total_seconds()
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    per_worker: dict[str, int] = {}
    for trial in finished:
        key = str(trial.system_attrs.get(WORKER_ATTR))
        per_worker[key] = per_worker.get(key, 0) + 1
    result.note(
        f"{len(trials)} trials ({_count(trials)}) in {span:.0f} s: "
        f"{complete / span:.2f} COMPLETE trials/s, {len(finished) / span:.2f} finished "
        f"trials/s; per worker min {min(per_worker.values())} max "
        f"{max(per_worker.values())}"
    )
    result.check(
        len(per_worker) == n_workers,
        f"{len(per_worker)} of {n_workers} workers "
        "finished trials (no worker starved or deadlocked)",
    )
    left = [t.number for t in trials if t.state == TrialState.RUNNING]
    result.check(not left, f"trials left RUNNING after SIGTERM: {left}")
    duplicates, claimed = _duplicate_claims(trials)
    rate = duplicates / max(1, claimed)
    result.check(
        rate <= 0.01,
        f"duplicate slot claims: {duplicates} of {claimed} slot "
        f"attempts ({100 * rate:.2f}%, goal <= 1%)",
    )


CHAOS_GA = ga_table(n_particles=8, init_factor=3, steps=3, mutations=4) + workers_table(1, 3, 10)


def drill_chaos(
    result: DrillResult,
    workdir: Path,
    server: str,
    kills: int = 30,
    outages: int = 3,
    n_workers: int = 6,
    seed: int = 0,
) -> None:
    """6 workers, 30 SIGKILLs at random moments (each victim restarted), 3 database outages
    of 6 s; then the search must finish with 0 trials RUNNING, 0 slots held by dead workers,
    0 duplicate decisions and 0 finished trials lost."""
    import random

    from optuna_nos.sampler import ParticleSampler

    rng = random.Random(seed)
    sizes = _sizes(CHAOS_GA)
    with fresh_database(server, "nos_drill") as url:
        config = workdir / "chaos.toml"
        config.write_text(CHAOS_GA + objective_table("sleepy", sleep_s=1.5))
        if not _init(result, url, "c", config, workdir):
            return
        args = ["worker", "--storage", url, "--study", "c"]
        started = [0]

        def spawn() -> _Proc:
            started[0] += 1
            return _start(args, workdir, f"w{started[0]:03d}")

        procs = [spawn() for _ in range(n_workers)]
        everyone = list(procs)
        seen: dict[int, tuple[Any, ...]] = {}
        outage_at = {round((k + 1) * kills / (outages + 1)) for k in range(outages)}
        done_kills = done_outages = 0
        reader = _storage(url)  # one connection pool for the drill's own reads
        study = optuna.load_study(study_name="c", storage=reader)
        sampler = ParticleSampler(**sizes)  # type: ignore[arg-type]
        began = time.monotonic()
        try:
            while done_kills < kills and time.monotonic() - began < 1200:
                time.sleep(rng.uniform(0.5, 3.0))
                in_trial = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                busy = {_worker_pid(t) for t in in_trial}
                alive = [
                    k
                    for k, p in enumerate(procs)
                    if p.process.poll() is None and str(p.process.pid) in busy
                ]
                if alive:  # a worker inside a trial: claiming, training or telling
                    victim = rng.choice(alive)
                    procs[victim].process.kill()
                    procs[victim].process.wait()
                    done_kills += 1
                for k, proc in enumerate(procs):
                    if proc.process.poll() is not None:
                        procs[k] = spawn()
                        everyone.append(procs[k])
                if done_kills % 5 == 0 or done_kills in outage_at:
                    seen.update(_snapshot(study.get_trials(deepcopy=True)))
                    if sampler.is_finished(study):
                        break
                if done_kills in outage_at and done_outages < outages:
                    outage_at.discard(done_kills)
                    try:
                        _pg_cluster("stop")
                        time.sleep(6)
                    finally:
                        _pg_cluster("start")
                        _wait_for(lambda: postgres_available(server), 120, 0.5)
                    done_outages += 1
            result.note(
                f"{done_kills} SIGKILLs and {done_outages} database outages in "
                f"{time.monotonic() - began:.0f} s; {started[0]} worker processes"
            )
            codes = [p.wait(900) for p in procs]
        finally:
            _stop_all(everyone)
            reader.engine.dispose()  # type: ignore[attr-defined]
        trials = _trials(url, "c")
        finished = _finished(url, "c", sizes)
    after = _snapshot(trials)
    lost = sorted(n for n in seen if n not in after or after[n] != seen[n])
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    held = [
        t.number
        for t in trials
        if t.state in (TrialState.RUNNING, TrialState.WAITING)
        and t.system_attrs.get(SLOT_ATTR) is not None
    ]
    duplicates = _duplicate_decisions(trials)
    result.check(
        done_kills >= kills and done_outages >= outages,
        f"chaos: {done_kills} SIGKILLs (goal {kills}), {done_outages} outages (goal {outages})",
    )
    result.check(
        finished and all(c == 0 for c in codes),
        f"search finished={finished}; last workers' exits {codes}; {len(trials)} "
        f"trials ({_count(trials)})",
    )
    result.check(not running, f"trials RUNNING: {len(running)} {running}")
    result.check(not held, f"slots held by dead workers: {len(held)} {held}")
    result.check(not duplicates, f"duplicate decisions: {len(duplicates)} {duplicates}")
    result.check(
        not lost,
        f"finished trials lost or changed: {len(lost)} {lost} "
        f"(of {len(seen)} seen finished during the chaos)",
    )
    errs = [p.stderr for p in everyone]
    result.note(
        f"tracebacks on stderr: {sum(_tracebacks(e) for e in errs)}; 'storage "
        f"unavailable' lines: {sum(e.count('storage unavailable') for e in errs)}"
    )
    for text in errs:
        if _tracebacks(text):
            result.note(f"a traceback ends: {text.strip().splitlines()[-1][:200]}")


def _worker_pid(trial: FrozenTrial) -> str:
    """The pid part of a trial's ``nos:worker`` (``host:pid:token``), or ""."""
    parts = str(trial.system_attrs.get(WORKER_ATTR, "")).split(":")
    return parts[1] if len(parts) > 1 else ""


def _duplicate_decisions(trials: list[FrozenTrial]) -> list[str]:
    """Slots evaluated to a decision more than once: an initial or re-evaluation slot with
    more than one finished (COMPLETE or PRUNED) attempt, a child with more than one success
    or a failure after its success."""
    import math

    by_slot: dict[str, list[FrozenTrial]] = {}
    for trial in trials:
        slot = trial.system_attrs.get(SLOT_ATTR)
        if (
            slot is not None
            and GENOME_ATTR in trial.system_attrs
            and trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        ):
            by_slot.setdefault(slot, []).append(trial)
    found = []
    for slot, attempts in sorted(by_slot.items()):
        if " c" not in slot:
            if len(attempts) > 1:
                found.append(slot)
            continue
        attempts.sort(key=lambda t: (t.datetime_complete or datetime.datetime.max, t.number))
        wins = [
            k
            for k, t in enumerate(attempts)
            if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
        ]
        if len(wins) > 1 or (wins and wins[0] < len(attempts) - 1):
            found.append(slot)
    return found


PROXY_GA = FAST_GA + workers_table(1, 3, 2) + objective_table("sleepy", sleep_s=1.0)


def start_proxy(
    url: str, workdir: Path, tag: str = "proxy", port: int | None = None
) -> tuple[_Proc, str]:
    """``optuna-nos proxy`` in front of ``url`` on 127.0.0.1:``port`` (a free one by default);
    returns it and its ``grpc://`` URL once it answers (or a process that has exited, when it
    cannot start)."""
    from optuna_nos.study.grpc_proxy import make_grpc_storage

    if port is None:
        port = free_port()
    proc = _start(
        ["proxy", "--storage", url, "--host", "127.0.0.1", "--port", str(port), "--threads", "4"],
        workdir,
        tag,
    )
    grpc_url = f"grpc://127.0.0.1:{port}"

    def ready() -> bool:
        make_grpc_storage(grpc_url, heartbeat_interval=None).close()
        return True

    _wait_for(lambda: proc.process.poll() is not None or ready(), 120, 0.5)
    return proc, grpc_url


def slots_completed_twice(trials: list[FrozenTrial]) -> list[str]:
    """Slots holding more than one COMPLETE trial (a slot is decided once)."""
    seen: dict[str, int] = {}
    for trial in trials:
        slot = trial.system_attrs.get(SLOT_ATTR)
        if slot is not None and trial.state == TrialState.COMPLETE:
            seen[slot] = seen.get(slot, 0) + 1
    return sorted(slot for slot, n in seen.items() if n > 1)


def drill_proxy_sigkill(result: DrillResult, workdir: Path, server: str) -> None:
    """SIGKILL a worker mid-trial behind ``optuna-nos proxy`` (heartbeat 1 s, grace 3 s): the
    proxy's sweep fails the trial with no other worker alive, two new workers retry the slot
    with the same genome and finish the search, every slot decided once."""
    config = workdir / "proxy.toml"
    config.write_text(PROXY_GA)
    with fresh_database(server, "nos_drill") as url:
        if not _init(result, url, "p", config, workdir):
            return
        proxy, grpc_url = start_proxy(url, workdir)
        workers: list[_Proc] = []
        try:
            if not result.check(proxy.process.poll() is None, f"proxy serves {grpc_url}"):
                result.note(proxy.stderr.strip()[-500:])
                return
            args = ["worker", "--storage", grpc_url, "--study", "p"]
            victim = _sigkill_in_trial(result, url, "p", args, workdir, 0.3, True, 180)
            if victim is None:
                return
            killed_at = time.monotonic()
            slot = victim.system_attrs.get(SLOT_ATTR)
            genome = victim.system_attrs.get(GENOME_ATTR)
            result.note(f"SIGKILLed the only worker in trial {victim.number} (slot {slot!r})")

            def failed() -> bool:
                trial = next(t for t in _trials(url, "p") if t.number == victim.number)
                return trial.state == TrialState.FAIL

            swept = _wait_for(failed, 60, 0.2)
            result.check(
                bool(swept),
                f"with no worker alive the proxy failed trial "
                f"{victim.number} {time.monotonic() - killed_at:.1f} s after the kill",
            )
            # The sweep marks the trial FAIL first and queues its retry after.
            queued = (
                _wait_for(
                    lambda: [
                        t
                        for t in _trials(url, "p")
                        if t.state == TrialState.WAITING
                        and t.system_attrs.get(GENOME_ATTR) == genome
                    ],
                    30,
                    0.2,
                )
                or []
            )
            result.check(
                len(queued) == 1,
                f"retries queued with the same genome: {[t.number for t in queued]}",
            )
            workers = [_start(args, workdir, f"w{k}") for k in range(2)]
            codes = [w.wait(300) for w in workers]
        finally:
            _stop_all([*workers, proxy])
        trials = _trials(url, "p")
        finished = _finished(url, "p", _sizes(PROXY_GA))
    left = [t.number for t in trials if t.state == TrialState.RUNNING]
    same = [
        t
        for t in trials
        if t.number > victim.number
        and t.system_attrs.get(SLOT_ATTR) == slot
        and t.system_attrs.get(GENOME_ATTR) == genome
        and t.state.is_finished()
    ]
    result.check(
        bool(same), f"slot {slot!r} rerun with the same genome in {[t.number for t in same]}"
    )
    twice = slots_completed_twice(trials)
    duplicates, attempts = _duplicate_claims(trials)
    ok = all(c == 0 for c in codes) and finished and not left and not twice
    if not result.check(
        ok,
        f"worker exits {codes}; search finished={finished}; RUNNING {left}; "
        f"slots completed twice {twice}; {duplicates} duplicate claims in "
        f"{attempts} attempts; {_count(trials)}",
    ):
        for k, worker in enumerate(workers):
            result.note(f"worker {k} stderr tail: {worker.stderr.strip()[-600:]}")
        result.note(f"proxy stderr tail: {proxy.stderr.strip()[-600:]}")
    tracebacks = sum(_tracebacks(p.stderr) for p in [*workers, proxy])
    result.check(tracebacks == 0, f"{tracebacks} tracebacks on stderr")


def _duplicate_claims(trials: list[FrozenTrial]) -> tuple[int, int]:
    """Attempts that started while another attempt on the same slot was still running."""
    far = datetime.datetime.max
    #: slot -> (number, start, end) of each attempt that started, in trial-number order
    by_slot: dict[str, list[tuple[int, datetime.datetime, datetime.datetime]]] = {}
    for trial in trials:
        slot = trial.system_attrs.get(SLOT_ATTR)
        if slot is not None and trial.datetime_start is not None:
            end = trial.datetime_complete or far
            by_slot.setdefault(slot, []).append((trial.number, trial.datetime_start, end))
    duplicates = 0
    for attempts in by_slot.values():
        attempts.sort()
        for k, (_, started, _) in enumerate(attempts[1:], 1):
            if any(start <= started < end for _, start, end in attempts[:k]):
                duplicates += 1
    return duplicates, sum(len(a) for a in by_slot.values())


DRILLS: dict[str, tuple[Callable[..., None], bool]] = {
    # name: (drill, needs PostgreSQL)
    "signals": (drill_signals, False),
    "sigkill": (drill_sigkill, False),
    "artifacts": (drill_artifacts, True),
    "init-race": (drill_init_race, True),
    "postgres-restart": (drill_postgres_restart, True),
    "load16": (drill_load16, True),
    "chaos": (drill_chaos, True),
    "proxy-sigkill": (drill_proxy_sigkill, True),
}


def run_drill(
    name: str,
    server: str = DEFAULT_SERVER,
    *,
    table: Mapping[str, tuple[Callable[..., None], bool]] = DRILLS,
    **options: Any,
) -> DrillResult:
    """Run the drill ``table[name]`` in a fresh temporary directory; what it found."""
    drill, needs_postgres = table[name]
    result = DrillResult(name)
    print(f"== drill {name}: {(drill.__doc__ or '').splitlines()[0]}", flush=True)
    if needs_postgres and not postgres_available(server):
        result.check(False, f"PostgreSQL at {server} is unreachable")
        return result
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"nos_drill_{name}_") as tmp:
        drill(result, Path(tmp), server, **options)
    result.seconds = time.monotonic() - began
    print(
        f"== drill {name}: {'PASSED' if result.passed else 'FAILED'} in {result.seconds:.0f} s",
        flush=True,
    )
    return result
