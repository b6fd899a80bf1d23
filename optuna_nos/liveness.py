"""Trial liveness that travels through any storage: a heartbeat kept in a trial system attr.

Optuna's own heartbeat lives in an RDB table that the gRPC storage proxy does not expose, so
workers behind the proxy mark liveness by writing the system attr ``nos:beat`` (a counter)
every ``heartbeat_interval`` seconds. A trial is *stale* when an observer has seen it
RUNNING with the same beat for ``grace_period`` seconds of the observer's own monotonic
clock: no clocks of different hosts are ever compared, so clock skew cannot fail a live trial.

A stale trial goes ``FAIL`` (one sweeper wins: the storage refuses to finish a trial twice)
and is handed to the retry callback, which queues it again with the same genome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from optuna_nos.stored import BEAT_ATTR

__all__ = ["BEAT_ATTR", "BeatObserver", "fail_stale"]


_logger = logging.getLogger(__name__)
StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


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


def fail_stale(study: optuna.Study, observer: BeatObserver,
               callback: StaleCallback | None) -> list[int]:
    """Mark the study's stale RUNNING trials ``FAIL`` and pass each one this call failed to
    ``callback`` (e.g. ``RetryHeartbeatStaleTrialCallback``). Returns their trial ids."""
    storage = study._storage
    running = storage.get_all_trials(study._study_id, deepcopy=False,
                                     states=(TrialState.RUNNING,))
    failed: list[int] = []
    for trial_id in observer.stale(running):
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial_id)
        except UpdateFinishedTrialError:
            pass  # finished meanwhile, or another sweeper failed it first
    for trial_id in failed:
        trial = storage.get_trial(trial_id)
        _logger.warning("trial %d had no heartbeat for %.0f s; marked FAIL", trial.number,
                        observer.grace_period)
        if callback is not None:
            callback(study, trial)
    return failed
