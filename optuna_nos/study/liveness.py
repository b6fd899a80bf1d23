"""The stale-trial sweep: RUNNING trials whose worker is gone go ``FAIL`` and are retried.

A trial is *stale* when its worker has stopped marking it alive for ``grace_period`` seconds.
One sweep (:func:`fail_stale`) serves two ways of reading liveness:

* :class:`HeartbeatRows` - the storage's own heartbeat: Optuna's RDB heartbeat table (a row
  older than the grace period, by the database clock), plus RUNNING trials without any
  heartbeat row that are older than the grace period (:func:`orphan_trial_ids`);
* :class:`BeatObserver` - a heartbeat that travels through any storage, the gRPC proxy's
  included: workers write the system attr ``nos:beat`` (a counter) every
  ``heartbeat_interval`` seconds, and a trial is stale when an observer has seen it RUNNING
  with the same beat for ``grace_period`` seconds of the observer's own monotonic clock
  (no clocks of different hosts are compared, so clock skew cannot fail a live trial).

A stale trial is queued again first and failed second: the retry (a ``WAITING`` copy, same
params and attrs, :class:`RetryStaleTrial`) exists before the trial goes ``FAIL``, so its slot
is held at every moment and no other worker can claim it in between. One sweeper wins the
``FAIL`` (the storage refuses to finish a trial twice); a sweeper finding a retry already
queued queues none. Should the trial finish by its own worker instead (a late result), its
queued retry gives way when popped (the sampler reads the original's state, and fails it
itself when the original is still ``RUNNING``: a queued retry means a sweeper judged it
stale). Sweepers racing past the check may both queue one; the later one is withdrawn by
its sweeper at once, and gives way should a worker pop it first.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState, create_trial

from optuna_nos.study.stored import BEAT_ATTR, REASON_ATTR, SLOT_ATTR

__all__ = [
    "BEAT_ATTR",
    "DUPLICATE_REASON",
    "FAILED_TRIAL",
    "RETRY_HISTORY",
    "BeatObserver",
    "HeartbeatRows",
    "Liveness",
    "RetryStaleTrial",
    "fail_stale",
    "fail_stale_trials",
    "has_retry",
    "orphan_trial_ids",
    "queue_retries_first",
    "retried_number",
]

#: Optuna's system attrs of a queued retry: the first trial of the chain, and every trial
#: retried so far (the last one is the trial this retry repeats).
FAILED_TRIAL = "failed_trial"
RETRY_HISTORY = "retry_history"


_logger = logging.getLogger(__name__)
StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class Liveness(Protocol):
    """A way of reading which of a study's RUNNING trials are stale."""

    def stale_ids(self, study: optuna.Study) -> list[int]:
        """Ids of the study's RUNNING trials whose worker is gone."""
        ...

    def grace_seconds(self, study: optuna.Study) -> float:
        """The grace period, for the log line."""
        ...


class BeatObserver:
    """Remembers, per RUNNING trial, its last beat and when (monotonic) that beat was first
    seen. ``stale(trials)`` lists trial ids whose beat has not changed for ``grace_period``
    seconds; a trial first seen now starts its clock now, so an observer that has just
    started fails nothing for ``grace_period`` seconds."""

    def __init__(self, grace_period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_period = float(grace_period)
        self._clock = clock
        self._seen: dict[int, tuple[object, float]] = {}
        self._lock = threading.Lock()

    def stale(self, running: Iterable[FrozenTrial]) -> list[int]:
        now = self._clock()
        found: list[int] = []
        with self._lock:
            current: dict[int, tuple[object, float]] = {}
            for trial in running:
                if trial.state != TrialState.RUNNING:
                    continue
                beat = trial.system_attrs.get(BEAT_ATTR)
                last = self._seen.get(trial._trial_id)
                since = last[1] if last is not None and last[0] == beat else now
                current[trial._trial_id] = (beat, since)
                if now - since >= self.grace_period:
                    found.append(trial._trial_id)
            self._seen = current  # finished trials drop out
        return found

    def stale_ids(self, study: optuna.Study) -> list[int]:
        return self.stale(
            study._storage.get_all_trials(
                study._study_id, deepcopy=False, states=(TrialState.RUNNING,)
            )
        )

    def grace_seconds(self, study: optuna.Study) -> float:
        return self.grace_period


class HeartbeatRows:
    """The storage's own heartbeat (``_get_stale_trial_ids`` of a heartbeat-enabled storage:
    the RDB heartbeat table and :func:`orphan_trial_ids`, or a gRPC worker's observer)."""

    def stale_ids(self, study: optuna.Study) -> list[int]:
        storage = study._storage
        if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
            return []
        return list(storage._get_stale_trial_ids(study._study_id))

    def grace_seconds(self, study: optuna.Study) -> float:
        storage = study._storage
        grace = getattr(storage, "grace_period", None)
        interval = storage.get_heartbeat_interval() if isinstance(storage, BaseHeartbeat) else None
        return float(grace or 2 * (interval or 0))


def orphan_trial_ids(
    running: Iterable[tuple[int, datetime.datetime | None, bool]],
    grace_period_s: float,
    now: datetime.datetime | None = None,
) -> list[int]:
    """Ids of RUNNING trials without any heartbeat that started over ``grace_period_s`` ago.

    ``running`` holds ``(trial_id, datetime_start, has_heartbeat)``. ``datetime_start`` is the
    creating worker's local clock, so ``now`` defaults to this host's local time: workers
    whose clocks differ by more than the grace period could fail each other's fresh trials.
    """
    now = now if now is not None else datetime.datetime.now()
    limit = datetime.timedelta(seconds=grace_period_s)
    return [
        trial_id
        for trial_id, started, has_heartbeat in running
        if not has_heartbeat and started is not None and now - started > limit
    ]


def retried_number(trial: FrozenTrial) -> int | None:
    """The number of the trial that ``trial`` repeats (a queued retry), else None."""
    history = trial.system_attrs.get(RETRY_HISTORY) or ()
    return int(history[-1]) if history else None


def has_retry(storage: BaseStorage, study_id: int, number: int) -> bool:
    """Whether some trial of the study is a retry of trial ``number``."""
    return any(
        retried_number(t) == number for t in storage.get_all_trials(study_id, deepcopy=False)
    )


class RetryStaleTrial:
    """Queue a stale trial again: a ``WAITING`` copy with the same params, user attrs and
    system attrs, plus ``failed_trial`` (the chain's first trial) and ``retry_history`` (every
    trial of the chain), as Optuna's ``RetryHeartbeatStaleTrialCallback`` makes, at most
    ``max_retry`` times per chain (None: without limit).

    Unlike Optuna's callback it is called *before* the trial is failed, and it queues nothing
    when the trial already has a retry (so Optuna's sweep, which calls it after failing the
    trial, adds no second one)."""

    def __init__(self, max_retry: int | None = None) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.queue(study._storage, study._study_id, trial)

    def queue(self, storage: BaseStorage, study_id: int, trial: FrozenTrial) -> bool:
        """Queue the retry of ``trial`` unless it has one; whether it has one now."""
        if has_retry(storage, study_id, trial.number):
            return True
        history = [*(trial.system_attrs.get(RETRY_HISTORY) or ()), trial.number]
        if self.max_retry is not None and self.max_retry < len(history):
            return False
        attrs = {FAILED_TRIAL: trial.number, **trial.system_attrs, RETRY_HISTORY: history}
        mine = storage.create_new_trial(
            study_id,
            template_trial=create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs=trial.user_attrs,
                system_attrs=attrs,
            ),
        )
        _withdraw_if_duplicate(storage, study_id, trial.number, mine)
        return True


#: ``nos.reason`` of a retry withdrawn because a racing sweeper queued one first.
DUPLICATE_REASON = "duplicate retry withdrawn"


def _withdraw_if_duplicate(storage: BaseStorage, study_id: int, number: int, mine: int) -> None:
    """Withdraw retry ``mine`` of trial ``number`` when a lower-numbered retry of it exists
    (sweepers racing past the check both queued one; trials are numbered in the order they
    are created, so the later one always sees the earlier): popped here, it forgets the trial
    it repeats and its slot, and ends PRUNED. A worker that popped it first finds the earlier
    retry and gives way."""
    siblings = [
        t for t in storage.get_all_trials(study_id, deepcopy=False) if retried_number(t) == number
    ]
    if min(t._trial_id for t in siblings) == mine:
        return
    try:
        if not storage.set_trial_state_values(mine, TrialState.RUNNING):
            return  # a worker popped it first
    except UpdateFinishedTrialError:
        return  # a worker popped it and has already finished it
    for key in (SLOT_ATTR, FAILED_TRIAL, RETRY_HISTORY):
        storage.set_trial_system_attr(mine, key, None)
    storage.set_trial_user_attr(mine, REASON_ATTR, DUPLICATE_REASON)
    storage.set_trial_state_values(mine, TrialState.PRUNED)


def queue_retries_first(
    storage: BaseStorage, study_id: int, trial_ids: list[int], callback: object
) -> list[int]:
    """Queue the retry of each stale trial in ``trial_ids`` now, before it is failed, when
    ``callback`` is a :class:`RetryStaleTrial`; returns ``trial_ids``.

    Optuna's own sweep (run before each trial) fails the ids a storage's
    ``_get_stale_trial_ids`` reports and only then calls the retry callback; a storage calls
    this on the ids it reports, so that those retries exist before the ``FAIL``."""
    if isinstance(callback, RetryStaleTrial):
        for trial_id in trial_ids:
            trial = storage.get_trial(trial_id)
            if trial.state == TrialState.RUNNING:
                callback.queue(storage, study_id, trial)
    return trial_ids


def fail_stale(
    study: optuna.Study, liveness: Liveness, callback: StaleCallback | None
) -> list[int]:
    """Queue a retry of each stale RUNNING trial of the study (as ``liveness`` reads them) with
    ``callback`` (e.g. :class:`RetryStaleTrial`), unless it has one, then mark it ``FAIL``.
    Returns the ids this call failed."""
    storage = study._storage
    failed: list[int] = []
    for trial_id in liveness.stale_ids(study):
        trial = storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            continue
        if callback is not None and not has_retry(storage, study._study_id, trial.number):
            callback(study, trial)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial_id)
        except UpdateFinishedTrialError:
            pass  # finished meanwhile (its retry gives way), or failed by another sweeper
    for trial_id in failed:
        _logger.warning(
            "trial %d had no heartbeat for %.0f s; marked FAIL",
            storage.get_trial(trial_id).number,
            liveness.grace_seconds(study),
        )
    return failed


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """:func:`fail_stale` by the storage's own heartbeat, retried by the storage's callback
    (what Optuna's ``fail_stale_trials`` does, through the one sweep)."""
    storage = study._storage
    getter = getattr(storage, "get_heartbeat_stale_trial_callback", None)
    return fail_stale(study, HeartbeatRows(), getter() if getter is not None else None)
