"""A stale trial's retry against every interleaving that could decide its slot twice.

Each test forces one interleaving by patching the call at its window (the stale sweep's
``FAIL``, a worker's claim, a retry's creation) in one process, then plays the trials out
and counts the attempts that evaluated the slot. The slot under test is a child, so that a
fresh claim would evaluate a new mutant and the retry the dead trial's genome.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from optuna_nos import ParticleSampler, suggest_genome
from optuna_nos.sampler._sampler import RETRY_REASON, TAKEN_REASON
from optuna_nos.study import liveness
from optuna_nos.study.liveness import DUPLICATE_REASON, RetryStaleTrial, fail_stale
from optuna_nos.study.storage import make_storage
from optuna_nos.study.stored import GENOME_ATTR, IDLE_ATTR, REASON_ATTR, SLOT_ATTR

#: One particle, one step of two children: after ``init 0`` the slots ``p0 s0``,
#: ``p0 s1 c0`` and ``p0 s1 c1`` are open at once.
SIZES = {
    "n_particles": 1,
    "init_factor": 1,
    "steps": 1,
    "mutations": 2,
    "max_redraws": 2,
    "seed": 3,
    "poll_interval": 0.01,
}


class _Stale:
    """Liveness that judges the given trials stale while they run."""

    def __init__(self, *trial_ids: int) -> None:
        self.trial_ids = trial_ids

    def stale_ids(self, study: optuna.Study) -> list[int]:
        return [
            i for i in self.trial_ids if study._storage.get_trial(i).state == TrialState.RUNNING
        ]

    def grace_seconds(self, study: optuna.Study) -> float:
        return 3.0


def _optuna_retry() -> Callable[[optuna.Study, FrozenTrial], None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=3)


def _children_running(
    storage: optuna.storages.BaseStorage | None = None,
) -> tuple[optuna.Study, optuna.Trial]:
    """A study whose ``init 0`` is done and whose three next slots are held by running trials;
    returns it and the trial holding ``p0 s1 c0`` (the victim, its genome written)."""
    study = optuna.create_study(
        direction="maximize", storage=storage, sampler=ParticleSampler(**SIZES)
    )
    first = study.ask()
    suggest_genome(first)
    study.tell(first, 1.0)
    running = [study.ask() for _ in range(3)]
    for trial in running:
        suggest_genome(trial)
    victim = next(t for t in running if _slot(study, t._trial_id) == "p0 s1 c0")
    return study, victim


def _slot(study: optuna.Study, trial_id: int) -> str | None:
    return study._storage.get_trial_system_attrs(trial_id).get(SLOT_ATTR)


def _play_out(study: optuna.Study, trials: Sequence[optuna.Trial]) -> None:
    """Each trial's worker runs its objective (value 0.5) or sees it pruned, and tells."""
    for trial in trials:
        if study._storage.get_trial(trial._trial_id).state.is_finished():
            continue
        try:
            suggest_genome(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        study.tell(trial, 0.5)


def _evaluations(study: optuna.Study, slot: str | None) -> list[FrozenTrial]:
    """Trials that evaluated ``slot`` to an outcome (COMPLETE or PRUNED with its genome)."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.system_attrs.get(SLOT_ATTR) == slot
        and GENOME_ATTR in t.system_attrs
        and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]


def _retries_of(study: optuna.Study, number: int) -> list[FrozenTrial]:
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if (t.system_attrs.get("retry_history") or [None])[-1] == number
    ]


@pytest.mark.parametrize(
    "callback", [_optuna_retry, RetryStaleTrial], ids=["optuna-callback", "nos-callback"]
)
def test_a_claim_in_the_sweep_window_never_takes_the_dead_trial_s_slot(
    callback: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker places a trial the moment the sweep's FAIL lands; should it go for the
    victim's slot, a third worker pops the victim's retry just before that claim is written
    (the sweep's next step queues it). The slot ends evaluated once, by the retry, with the
    victim's genome."""
    study, victim = _children_running()
    storage = study._storage
    slot = _slot(study, victim._trial_id)
    genome = storage.get_trial_system_attrs(victim._trial_id)[GENOME_ATTR]
    retry_callback = callback()
    sampler = study.sampler
    assert isinstance(sampler, ParticleSampler)
    placed: list[optuna.Trial] = []
    popped: list[optuna.Trial] = []
    claim = sampler._claim

    def racing_claim(study_: optuna.Study, trial: FrozenTrial, target: Any, beat: bool) -> bool:
        if target.name == slot and not popped:
            if not _retries_of(study, victim.number):
                retry_callback(study, storage.get_trial(victim._trial_id))
            popped.append(study.ask())
        return claim(study_, trial, target, beat)

    set_state = storage.set_trial_state_values

    def failing(trial_id: int, state: TrialState, values: Any = None) -> bool:
        changed = set_state(trial_id, state, values)
        if trial_id == victim._trial_id and state == TrialState.FAIL and not placed:
            placed.append(optuna.Trial(study, storage.create_new_trial(study._study_id)))
        return changed

    monkeypatch.setattr(sampler, "_claim", racing_claim)
    monkeypatch.setattr(storage, "set_trial_state_values", failing)
    assert fail_stale(study, _Stale(victim._trial_id), retry_callback) == [victim._trial_id]
    monkeypatch.undo()

    rival = placed[0]
    assert _slot(study, rival._trial_id) != slot
    assert storage.get_trial_system_attrs(rival._trial_id)[IDLE_ATTR] == RETRY_REASON
    retry = popped[0] if popped else study.ask()
    assert retry.number > victim.number
    _play_out(study, [rival, retry])
    evaluated = _evaluations(study, slot)
    assert [t.number for t in evaluated] == [retry.number]
    assert evaluated[0].system_attrs[GENOME_ATTR] == genome
    assert len(_retries_of(study, victim.number)) == 1


def test_racing_sweepers_run_one_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sweepers judge the victim stale; the second's whole sweep lands while the first
    creates its retry (past its check for one). The later retry is withdrawn at once; one
    retry evaluates the slot, with the victim's genome; one sweeper failed the victim."""
    study, victim = _children_running()
    storage = study._storage
    slot = _slot(study, victim._trial_id)
    genome = storage.get_trial_system_attrs(victim._trial_id)[GENOME_ATTR]
    create = storage.create_new_trial
    second: list[list[int]] = []

    def creating(study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is not None and not second:
            second.append([])
            second[0] = fail_stale(study, _Stale(victim._trial_id), RetryStaleTrial(3))
        return create(study_id, template_trial)

    monkeypatch.setattr(storage, "create_new_trial", creating)
    first = fail_stale(study, _Stale(victim._trial_id), RetryStaleTrial(3))
    monkeypatch.undo()
    assert sorted(first + second[0]) == [victim._trial_id]
    retries = _retries_of(study, victim.number)
    assert len(retries) == 1  # the later one was withdrawn by its sweeper
    withdrawn = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get(REASON_ATTR) == DUPLICATE_REASON
    ]
    assert len(withdrawn) == 1 and withdrawn[0].number > retries[0].number
    assert withdrawn[0].state == TrialState.PRUNED
    assert withdrawn[0].system_attrs.get(SLOT_ATTR) is None
    assert fail_stale(study, _Stale(victim._trial_id), RetryStaleTrial(3)) == []
    assert len(_retries_of(study, victim.number)) == 1

    retry = study.ask()
    _play_out(study, [retry])
    evaluated = _evaluations(study, slot)
    assert [t.number for t in evaluated] == [retries[0].number] == [retry.number]
    assert evaluated[0].system_attrs[GENOME_ATTR] == genome


def test_a_duplicate_retry_a_worker_finished_first_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Racing sweepers as above, but a worker pops the later (duplicate) retry and finishes
    it (giving way) before its sweeper comes to withdraw it: the sweep leaves it as it is
    instead of failing on the finished trial."""
    study, victim = _children_running()
    storage = study._storage
    create = storage.create_new_trial
    withdraw = liveness._withdraw_if_duplicate
    nested: list[list[int]] = []
    finished: list[int] = []

    def creating(study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is not None and not nested:
            nested.append([])
            nested[0] = fail_stale(study, _Stale(victim._trial_id), RetryStaleTrial(3))
        return create(study_id, template_trial)

    def finished_first(storage_: Any, study_id: int, number: int, mine: int) -> None:
        if not finished and mine != min(t._trial_id for t in _retries_of(study, number)):
            storage_.set_trial_state_values(mine, TrialState.RUNNING)
            storage_.set_trial_state_values(mine, TrialState.PRUNED)
            finished.append(mine)
        withdraw(storage_, study_id, number, mine)

    monkeypatch.setattr(storage, "create_new_trial", creating)
    monkeypatch.setattr(liveness, "_withdraw_if_duplicate", finished_first)
    first = fail_stale(study, _Stale(victim._trial_id), RetryStaleTrial(3))
    monkeypatch.undo()
    assert sorted(first + nested[0]) == [victim._trial_id]
    assert len(finished) == 1
    assert storage.get_trial(finished[0]).state == TrialState.PRUNED
    assert storage.get_trial(finished[0]).user_attrs.get(REASON_ATTR) is None


def test_a_late_result_beats_the_sweep_and_its_queued_retry_gives_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The victim's worker was alive: its result lands between the sweep queuing the retry and
    the sweep's FAIL. The victim's result stands, the retry gives way; one evaluation."""
    study, victim = _children_running()
    storage = study._storage
    slot = _slot(study, victim._trial_id)
    set_state = storage.set_trial_state_values

    def late(trial_id: int, state: TrialState, values: Any = None) -> bool:
        if trial_id == victim._trial_id and state == TrialState.FAIL:
            study.tell(victim, 0.75)  # the late worker's result
        return set_state(trial_id, state, values)

    monkeypatch.setattr(storage, "set_trial_state_values", late)
    assert fail_stale(study, _Stale(victim._trial_id), RetryStaleTrial(3)) == []
    monkeypatch.undo()
    retry = study.ask()
    assert _retries_of(study, victim.number)[0].number == retry.number
    _play_out(study, [retry])
    assert [t.number for t in _evaluations(study, slot)] == [victim.number]
    after = storage.get_trial(retry._trial_id)
    assert after.state == TrialState.PRUNED and after.user_attrs[REASON_ATTR] == TAKEN_REASON


def test_a_retry_popped_before_its_original_fails_runs_and_the_late_result_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The retry is popped between its creation and the sweep's FAIL (a slow or dead sweeper):
    it never gives way to its own original but fails it; the original's late result is then
    refused, and the slot is evaluated once, by the retry, with the victim's genome."""
    study, victim = _children_running()
    storage = study._storage
    slot = _slot(study, victim._trial_id)
    genome = storage.get_trial_system_attrs(victim._trial_id)[GENOME_ATTR]
    set_state = storage.set_trial_state_values
    popped: list[optuna.Trial] = []
    sweeps: list[int] = []

    def slow(trial_id: int, state: TrialState, values: Any = None) -> bool:
        if trial_id == victim._trial_id and state == TrialState.FAIL and not sweeps:
            sweeps.append(trial_id)
            popped.append(study.ask())  # its FAIL of the victim passes straight through
        return set_state(trial_id, state, values)

    monkeypatch.setattr(storage, "set_trial_state_values", slow)
    assert fail_stale(study, _Stale(victim._trial_id), RetryStaleTrial(3)) == []
    monkeypatch.undo()
    retry = popped[0]
    assert storage.get_trial(victim._trial_id).state == TrialState.FAIL
    with pytest.raises((ValueError, UpdateFinishedTrialError)):
        study.tell(victim, 0.75)
    _play_out(study, [retry])
    evaluated = _evaluations(study, slot)
    assert [t.number for t in evaluated] == [retry.number]
    assert evaluated[0].system_attrs[GENOME_ATTR] == genome


def test_optuna_s_own_sweep_finds_the_retry_queued_before_the_fail(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna's ``fail_stale_trials`` (run by every worker before each trial) fails what the
    storage reports stale and calls the retry callback after; the storage queues the retry
    before reporting, so the retry exists when the FAIL lands, and only one is queued."""
    import time

    storage = make_storage(
        f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1, max_retry=3
    )
    study, victim = _children_running(storage)
    seen: list[int] = []
    set_state = storage.set_trial_state_values

    def failing(trial_id: int, state: TrialState, values: Any = None) -> bool:
        if trial_id == victim._trial_id and state == TrialState.FAIL:
            seen.append(len(_retries_of(study, victim.number)))
        return set_state(trial_id, state, values)

    monkeypatch.setattr(storage, "set_trial_state_values", failing)
    time.sleep(2.2)  # every running trial's heartbeat is now older than the grace period
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    assert seen == [1]
    assert len(_retries_of(study, victim.number)) == 1
    storage.engine.dispose()
