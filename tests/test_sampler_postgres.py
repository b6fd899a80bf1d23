"""ParticleSampler with worker processes on a real PostgreSQL database.

Four worker processes share one study and a cheap synthetic objective (minus the sphere loss
of the candidate's integrity check); they are forked from a server process that imported the
package once, so they start at once. The checks rebuild the GA's decisions from the trial
table on their own: every slot decided, no trial left running or queued, each child's parent
the winner of the step before, and, when a worker is killed mid-trial, its slot retried with
the same genome. Each test needs the ``postgres_url`` fixture (fresh database) and is slow.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import signal
import time
from collections import Counter, defaultdict
from multiprocessing.process import BaseProcess
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from optuna_nos import ParticleSampler
from optuna_nos.sampler._sampler import TAKEN_REASON
from optuna_nos.study.liveness import DUPLICATE_REASON
from optuna_nos.study.storage import make_storage
from testkit.process import SAMPLER_PRELOAD

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

SIZES = {"n_particles": 4, "init_factor": 3, "steps": 2, "mutations": 3, "max_redraws": 4}
N_SLOTS = 4 * 3 + 4 * (1 + 2 * 3)
WORKER_TIMEOUT_S = 150


def _objective_for(victim: bool, marker: str):  # type: ignore[no-untyped-def]
    from optuna_nos import suggest_genome, trial_fidelity
    from optuna_nos.optim.integrity import integrity_check

    def objective(trial: optuna.Trial) -> float:
        genome = suggest_genome(trial)
        if victim and trial_fidelity(trial) == "evolution":
            with open(marker + ".tmp", "w") as f:
                f.write(str(trial.number))
            os.replace(marker + ".tmp", marker)
            time.sleep(600)  # the test kills this process here
        time.sleep(0.05)
        loss = integrity_check(genome).loss
        return -(loss if loss is not None else 10.0)  # dropout can fail a recheck

    return objective


def _worker(url: str, study_name: str, marker: str, victim: bool) -> None:
    """One worker process: its own storage connection, sampler and optimize loop."""
    from optuna_nos import StopWhenFinished

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(url, heartbeat_interval=1, grace_period=2, max_retry=3)
    sampler = ParticleSampler(**SIZES, poll_interval=0.1)
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    study.optimize(
        _objective_for(victim, marker), callbacks=[StopWhenFinished()], timeout=WORKER_TIMEOUT_S
    )


def _start_workers(
    tmp_path: Path, url: str, study_name: str, count: int, victim: int | None = None
) -> tuple[list[BaseProcess], Path]:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(SAMPLER_PRELOAD)
    marker = tmp_path / "victim_trial"
    workers: list[BaseProcess] = [
        context.Process(target=_worker, args=(url, study_name, str(marker), i == victim))
        for i in range(count)
    ]
    for worker in workers:
        worker.start()
    return workers, marker


def _wait(workers: list[BaseProcess]) -> list[int | None]:
    deadline = time.monotonic() + WORKER_TIMEOUT_S + 60
    for worker in workers:
        worker.join(timeout=max(1.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join()
    return [worker.exitcode for worker in workers]


def _create_study(url: str) -> optuna.Study:
    storage = make_storage(url, heartbeat_interval=1, grace_period=2, max_retry=3)
    return optuna.create_study(study_name="it", storage=storage, direction="maximize")


def _expected_slots() -> set[str]:
    names = {f"init {j}" for j in range(12)} | {f"p{i} s0" for i in range(4)}
    return names | {f"p{i} s{s} c{c}" for i in range(4) for s in (1, 2) for c in range(3)}


def _first_done(attempts: list[FrozenTrial]) -> FrozenTrial:
    done = [t for t in attempts if t.state == TrialState.COMPLETE]
    return min(done, key=lambda t: (t.datetime_complete or datetime.datetime.max, t.number))


def _check_search(study: optuna.Study) -> dict[str, list[FrozenTrial]]:
    """Independent checks on the finished trial table; returns the attempts per slot."""
    trials = study.get_trials(deepcopy=False)
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    by_slot: dict[str, list[FrozenTrial]] = defaultdict(list)
    for trial in trials:
        slot = trial.system_attrs.get("nos:slot")
        if slot is not None:
            by_slot[slot].append(trial)
    assert set(by_slot) == _expected_slots()
    for slot, attempts in by_slot.items():
        complete = [t for t in attempts if t.state == TrialState.COMPLETE]
        # The sphere objective never fails: one success per slot, two after a racing claim.
        assert 1 <= len(complete) <= 2, (slot, [t.number for t in attempts])
        assert not [t for t in attempts if t.state == TrialState.PRUNED]

    init = sorted(
        (_first_done(by_slot[f"init {j}"]) for j in range(12)),
        key=lambda t: (-(t.value or 0.0), int(t.user_attrs["slot"].split()[1])),
    )
    for particle in range(4):
        parent = init[particle].number
        for attempt in by_slot[f"p{particle} s0"]:
            assert attempt.user_attrs["parent"] == parent
        for step in (1, 2):
            winners = [_first_done(by_slot[f"p{particle} s{step} c{c}"]) for c in range(3)]
            for child in range(3):
                for attempt in by_slot[f"p{particle} s{step} c{child}"]:
                    assert attempt.user_attrs["parent"] == parent, (particle, step, child)
            best = max(range(3), key=lambda c: (winners[c].value, -c))
            parent = winners[best].number

    sampler = ParticleSampler(**SIZES)
    state = sampler.state(study)
    assert state.finished and state.n_decided == sampler.n_slots == N_SLOTS
    return by_slot


def test_four_workers_complete_a_search(postgres_url: str, tmp_path: Path) -> None:
    study = _create_study(postgres_url)
    workers, _ = _start_workers(tmp_path, postgres_url, study.study_name, 4)
    assert _wait(workers) == [0, 0, 0, 0]
    by_slot = _check_search(study)
    assert sum(len(v) for v in by_slot.values()) <= N_SLOTS + 4  # few racing duplicates
    reasons = Counter(
        t.user_attrs.get("nos.reason")
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.PRUNED
    )
    assert set(reasons) <= {"search finished", "yielded to a queued retry"}


def test_a_killed_worker_s_slot_is_retried(postgres_url: str, tmp_path: Path) -> None:
    study = _create_study(postgres_url)
    workers, marker = _start_workers(tmp_path, postgres_url, study.study_name, 4, victim=0)
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and workers[0].is_alive():
        time.sleep(0.1)
    assert marker.exists(), "the victim never reached an evolution trial"
    killed = int(marker.read_text())
    assert workers[0].pid is not None
    os.kill(workers[0].pid, signal.SIGKILL)
    assert _wait(workers) == [-signal.SIGKILL, 0, 0, 0]
    by_slot = _check_search(study)

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    dead = trials[killed]
    assert dead.state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert retries
    # Sweepers racing past the has-a-retry check may each queue one; every retry but one
    # withdraws itself, or yields when a worker pops it after its slot was decided.
    for duplicate in retries:
        if duplicate.state == TrialState.PRUNED:
            assert duplicate.user_attrs["nos.reason"] in (TAKEN_REASON, DUPLICATE_REASON)
    ran = [t for t in retries if t.state != TrialState.PRUNED]
    assert len(ran) <= 1
    attempts = by_slot[dead.system_attrs["nos:slot"]]
    if not ran:
        # Another worker claimed the reopened slot between the stale sweep's FAIL and the
        # retry's creation: the retry yields, and the slot is still decided exactly once.
        assert TrialState.COMPLETE in [t.state for t in attempts]
        return
    retry = ran[0]
    assert retry.system_attrs["nos:genome"] == dead.system_attrs["nos:genome"]
    assert retry.state == TrialState.COMPLETE
    assert retry.system_attrs["nos:slot"] == dead.system_attrs["nos:slot"]
    assert retry.params == dead.params
    assert retry in attempts
