"""Worker liveness: who runs a trial, and making sure no trial is left RUNNING.

A trial is RUNNING from the moment a worker creates it (or pops a queued retry) until the
worker tells its outcome. Every way out of that window is covered:

* the worker dies (SIGKILL, power loss): the trial carries a heartbeat from its first moment
  (the storage records one at creation and at pop), so it goes stale after the grace
  period and another worker fails and requeues it; a trial with no heartbeat row at all
  (a death between the creating statement and the heartbeat) is failed once it is older
  than the grace period (:func:`optuna_nos.study.liveness.orphan_trial_ids`);
* the worker is interrupted (Ctrl-C, SIGTERM) or loses the storage:
  :func:`fail_own_running_trials` fails every trial this process still holds RUNNING.

:func:`worker_id` names this process in the trials it runs: ``host:pid:token``, with a
random token, so that two containers whose workers are both PID 1 never share an id.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from optuna_nos.study.liveness import has_retry
from optuna_nos.study.stored import REASON_ATTR

__all__ = ["fail_own_running_trials", "worker_id"]

_logger = logging.getLogger("optuna_nos.sampler")
_ids: dict[int, str] = {}


def worker_id() -> str:
    """``host:pid:token`` of this process, unique per process (a fork gets a new token)."""
    pid = os.getpid()
    found = _ids.get(pid)
    if found is None:
        found = _ids[pid] = f"{socket.gethostname()}:{pid}:{secrets.token_hex(4)}"
    return found


def fail_own_running_trials(study: optuna.Study, reason: str, *, retry: bool = False) -> list[int]:
    """Mark FAIL, with ``nos.reason``, the trials this process started that are still
    RUNNING; return their numbers.

    "Started" means created or popped from the queue by this process's storage (which keeps
    their ids, see :mod:`optuna_nos.study.storage`), so a trial interrupted before the sampler
    wrote anything into it is found as well. With ``retry`` each one is handed to the
    storage's heartbeat-stale callback before it is failed, as a stale trial would be, and so
    is queued again with the same genome.
    """
    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in a cache
    started = sorted(getattr(backend, "started_trial_ids", ()))
    callback = _stale_callback(storage) if retry else None
    failed: list[int] = []
    for trial_id in started:
        trial = storage.get_trial(trial_id)
        if trial.state != TrialState.RUNNING:
            continue
        storage.set_trial_user_attr(trial_id, REASON_ATTR, reason)
        if callback is not None and not has_retry(storage, study._study_id, trial.number):
            # Queued before the FAIL, so that the slot is never open in between.
            callback(study, storage.get_trial(trial_id))
        try:
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue
        failed.append(trial.number)
    return failed


def _stale_callback(
    storage: object,
) -> Callable[[optuna.Study, FrozenTrial], None] | None:
    """The storage's heartbeat-stale callback (Optuna's supported accessor), if any."""
    getter = getattr(storage, "get_heartbeat_stale_trial_callback", None)
    return getter() if getter is not None else None
