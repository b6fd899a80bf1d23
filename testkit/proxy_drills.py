"""Reliability drills through ``optuna-nos proxy``: SIGTERM of workers, restart of the proxy.

Like the drills of :mod:`testkit.drills` (whose helpers these reuse), each drill runs the
``optuna-nos`` command in subprocesses against a fresh PostgreSQL database, reaches it only
through the gRPC proxy (``--storage grpc://127.0.0.1:PORT``), then reads the study back from
the database and checks its invariants: no trial left RUNNING, every slot decided once, the
search finishes. ``bench/proxy_drills.py`` is their command line;
``tests/test_proxy_drills.py`` runs them at small size.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from optuna_nos.study.stored import GENOME_ATTR, REASON_ATTR, SLOT_ATTR
from testkit import drills
from testkit.drills import DrillResult
from testkit.postgres import DEFAULT_SERVER

__all__ = ["PROXY_DRILLS", "drill_proxy_restart", "drill_proxy_sigterm", "run_drill"]

#: 8 initial slots and two steps of children: enough trials for several workers to overlap.
DRILL_GA = """
[ga]
n_particles = 4
init_factor = 2
steps = 2
mutations = 2
max_redraws = 2
seed = 0
"""
#: ``[workers]`` heartbeat every 1 s, grace 3 s, 2 retries; the ``sleepy`` objective (1 s).
DRILL_SETTINGS = drills.PROXY_GA.removeprefix(drills.FAST_GA)


def _init(result: DrillResult, url: str, workdir: Path, sleep_s: float) -> bool:
    config = workdir / "drill.toml"
    config.write_text(DRILL_GA + DRILL_SETTINGS.replace("sleep_s = 1.0", f"sleep_s = {sleep_s}"))
    return drills._init(result, url, "p", config, workdir)


def _started_by(url: str) -> dict[str, FrozenTrial]:
    """RUNNING trials whose objective has started, by the pid of the worker running them."""
    return {
        drills._worker_pid(t): t
        for t in drills._trials(url, "p")
        if t.state == TrialState.RUNNING and t.user_attrs.get("drill.started")
    }


def _last_traceback(text: str) -> str:
    """The last traceback in ``text`` (whole), or its last 600 characters."""
    start = text.rfind("Traceback (most recent call last)")
    return text[start:].strip() if start >= 0 else text.strip()[-600:]


def _check_decided_once(
    result: DrillResult, url: str, codes: list[int | None]
) -> list[FrozenTrial]:
    """The end state: workers exited 0, the search finished, nothing RUNNING, no slot
    decided twice. Returns the trials."""
    trials = drills._trials(url, "p")
    finished = drills._finished(url, "p", drills._sizes(DRILL_GA))
    left = [t.number for t in trials if t.state == TrialState.RUNNING]
    twice = drills._duplicate_decisions(trials)
    claims, attempts = drills._duplicate_claims(trials)
    result.check(
        all(c == 0 for c in codes) and finished and not left and not twice,
        f"worker exits {codes}; search finished={finished}; RUNNING {left}; slots "
        f"decided twice {twice}; {claims} duplicate claims in {attempts} attempts; "
        f"{drills._count(trials)}",
    )
    for slot in twice:
        result.note(
            f"slot {slot!r} attempts: "
            + "; ".join(
                f"trial {t.number} {t.state.name} worker {drills._worker_pid(t)} "
                f"{t.datetime_start and t.datetime_start.time()}-"
                f"{t.datetime_complete and t.datetime_complete.time()} "
                f"retry of {t.system_attrs.get('failed_trial')} {t.user_attrs.get(REASON_ATTR)}"
                for t in trials
                if t.system_attrs.get(SLOT_ATTR) == slot
            )
        )
    return trials


def drill_proxy_sigterm(result: DrillResult, workdir: Path, server: str, workers: int = 3) -> None:
    """SIGTERM each of ``workers`` workers behind the proxy while its trial runs: each exits
    130 with its trial FAIL (``nos.reason``), none RUNNING; fresh workers retry those slots
    with the same genome and finish the search, every slot decided once."""
    with drills.fresh_database(server) as url:
        if not _init(result, url, workdir, sleep_s=1.5):
            return
        proxy, grpc_url = drills.start_proxy(url, workdir)
        procs: list[drills._Proc] = []
        fresh: list[drills._Proc] = []
        try:
            if not result.check(proxy.process.poll() is None, "proxy serves"):
                result.note(proxy.stderr.strip()[-500:])
                return
            args = ["worker", "--storage", grpc_url, "--study", "p"]
            procs = [drills._start(args, workdir, f"w{k}") for k in range(workers)]
            pids = {str(p.process.pid): p for p in procs}
            victims: dict[str, FrozenTrial] = {}
            deadline = time.monotonic() + 240
            while len(victims) < workers and time.monotonic() < deadline:
                for pid, trial in _started_by(url).items():
                    if pid in pids and pid not in victims:
                        pids[pid].process.send_signal(signal.SIGTERM)
                        victims[pid] = trial
                time.sleep(0.05)
            result.check(
                len(victims) == workers,
                f"SIGTERM landed mid-trial in trials "
                f"{sorted(t.number for t in victims.values())} of {workers} workers",
            )
            codes = [p.wait(60) for p in procs]
            by_number = {t.number: t for t in drills._trials(url, "p")}
            result.check(all(c == 130 for c in codes), f"exit statuses {codes} (expected 130)")
            for victim in victims.values():
                after = by_number[victim.number]
                reason = after.user_attrs.get(REASON_ATTR)
                result.check(
                    after.state == TrialState.FAIL and reason == "interrupted: signal SIGTERM",
                    f"trial {victim.number} is {after.state.name}, nos.reason={reason!r}",
                )
            left = [n for n, t in by_number.items() if t.state == TrialState.RUNNING]
            result.check(not left, f"trials left RUNNING after the SIGTERMs: {left}")
            tracebacks = sum(drills._tracebacks(p.stderr) for p in procs)
            result.check(tracebacks == 0, f"{tracebacks} tracebacks on the workers' stderr")
            fresh = [drills._start(args, workdir, f"fresh{k}") for k in range(2)]
            codes = [p.wait(400) for p in fresh]
        finally:
            drills._stop_all([*procs, *fresh, proxy])
        trials = _check_decided_once(result, url, codes)
    for victim in victims.values():
        slot, genome = victim.system_attrs.get(SLOT_ATTR), victim.system_attrs.get(GENOME_ATTR)
        retried = [
            t.number
            for t in trials
            if t.number > victim.number
            and t.state.is_finished()
            and t.system_attrs.get(SLOT_ATTR) == slot
            and t.system_attrs.get(GENOME_ATTR) == genome
        ]
        result.check(
            bool(retried),
            f"slot {slot!r} of trial {victim.number} retried with the same genome in {retried}",
        )
    if not result.passed:
        for k, proc in enumerate([*procs, *fresh]):
            result.note(f"worker {k} stderr: {_last_traceback(proc.stderr)}")


def drill_proxy_restart(
    result: DrillResult, workdir: Path, server: str, workers: int = 3, down_s: float = 8.0
) -> None:
    """SIGKILL the proxy mid-search and start it again ``down_s`` s later on the same port:
    workers ride through the outage (or exit and are restarted); no finished trial is lost
    or changed, the search finishes with every slot decided once and none RUNNING."""
    with drills.fresh_database(server) as url:
        if not _init(result, url, workdir, sleep_s=1.0):
            return
        port = drills.free_port()
        proxies = [drills.start_proxy(url, workdir, "proxy0", port)[0]]
        procs: list[drills._Proc] = []
        everyone: list[drills._Proc] = []
        restarts = 0
        try:
            if not result.check(proxies[0].process.poll() is None, f"proxy serves port {port}"):
                result.note(proxies[0].stderr.strip()[-500:])
                return
            args = ["worker", "--storage", f"grpc://127.0.0.1:{port}", "--study", "p"]
            procs = [drills._start(args, workdir, f"w{k}") for k in range(workers)]
            everyone = list(procs)
            enough = drills._wait_for(
                lambda: (
                    len(_started_by(url)) >= 1
                    and sum(t.state == TrialState.COMPLETE for t in drills._trials(url, "p")) >= 4
                ),
                240,
                0.2,
            )
            before = drills._snapshot(drills._trials(url, "p"))
            running = sorted(t.number for t in _started_by(url).values())
            result.note(
                f"{len(before)} finished trials, trials {running} mid-objective, when "
                "the proxy is killed" + ("" if enough else " (waited 240 s)")
            )
            proxies[0].process.send_signal(signal.SIGKILL)
            proxies[0].wait(30)
            time.sleep(down_s)
            proxies.append(drills.start_proxy(url, workdir, "proxy1", port)[0])
            result.check(
                proxies[1].process.poll() is None,
                f"proxy restarted on port {port} after {down_s:.0f} s",
            )
            deadline = time.monotonic() + 400
            codes: list[int | None] = [None] * workers
            while time.monotonic() < deadline and any(c != 0 for c in codes):
                for k, proc in enumerate(procs):
                    codes[k] = proc.process.poll()
                    if codes[k] not in (None, 0):
                        result.note(
                            f"worker {k} exited {codes[k]}; restarted. Its stderr: "
                            f"{_last_traceback(proc.stderr)}"
                        )
                        procs[k] = drills._start(args, workdir, f"w{k}r{restarts}")
                        everyone.append(procs[k])
                        restarts += 1
                time.sleep(0.5)
        finally:
            drills._stop_all([*everyone, *proxies])
        after = drills._snapshot(drills._trials(url, "p"))
        lost = [n for n in before if n not in after]
        changed = [n for n in before if n in after and after[n] != before[n]]
        result.check(not lost and not changed, f"finished trials lost {lost}, changed {changed}")
        trials = _check_decided_once(result, url, codes)
    errs = [p.stderr for p in everyone]
    outages = sum(e.count("storage unavailable") for e in errs)
    dropped = sum(e.count("failed by another worker while it ran") for e in errs)
    failed = {
        t.number: t.user_attrs.get(REASON_ATTR, "no heartbeat")
        for t in trials
        if t.state == TrialState.FAIL
    }
    fates = {t.number: t.state.name for t in trials if t.number in running}
    result.note(
        f"trials mid-objective at the kill ended {fates}; worker restarts {restarts}; "
        f"'storage unavailable' lines {outages}; FAIL trials {failed}; results dropped "
        f"for a trial failed elsewhere {dropped}"
    )
    tracebacks = sum(drills._tracebacks(e) for e in errs)
    result.check(tracebacks == 0, f"{tracebacks} tracebacks on the workers' stderr")
    if not result.passed:
        for k, text in enumerate(errs):
            result.note(f"worker {k} stderr: {_last_traceback(text)}")
        result.note(f"restarted proxy stderr tail: {proxies[-1].stderr.strip()[-600:]}")


PROXY_DRILLS = {
    "proxy-sigterm": (drill_proxy_sigterm, True),
    "proxy-restart": (drill_proxy_restart, True),
}


def run_drill(name: str, server: str = DEFAULT_SERVER, **options: Any) -> DrillResult:
    """Run one drill of :data:`PROXY_DRILLS` (:func:`testkit.drills.run_drill`)."""
    return drills.run_drill(name, server, table=PROXY_DRILLS, **options)
