"""``optuna-nos`` with one fault injected at an exact window, for liveness tests and drills.

    python -m testkit.fault_worker FAULT [MARKER] -- worker --storage URL --study NAME

FAULT is one of :data:`FAULTS`; MARKER (a path) is written when the fault's window is
reached, for faults that then wait for the test to act.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage

from optuna_nos.cli.commands import main
from optuna_nos.sampler import _liveness, _sampler
from optuna_nos.study.stored import SLOT_ATTR

MARKER: Path | None = None


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _touch() -> None:
    if MARKER is not None:
        MARKER.write_text("reached")


def kill_after_slot() -> None:
    """SIGKILL on the first sampler heartbeat after ``nos:slot`` is written."""
    original = _sampler._record_heartbeat

    def record(storage: Any, trial_id: int) -> None:
        if storage.get_trial(trial_id).system_attrs.get(SLOT_ATTR) is not None:
            _die()
        original(storage, trial_id)

    _sampler._record_heartbeat = record


def kill_after_create() -> None:
    """SIGKILL right after the statement that creates a RUNNING trial."""
    original = RDBStorage._create_new_trial

    def create(self: RDBStorage, study_id: int, template_trial: Any = None) -> Any:
        trial = original(self, study_id, template_trial)
        if template_trial is None:
            _die()
        return trial

    RDBStorage._create_new_trial = create  # type: ignore[method-assign]


def kill_in_retry() -> None:
    """SIGKILL inside ``Trial.__init__`` of a popped retry (before the sampler places it)."""
    original = _sampler.ParticleSampler.before_trial

    def before(self: Any, study: optuna.Study, trial: Any) -> None:
        if "retry_history" in trial.system_attrs:
            _die()
        original(self, study, trial)

    _sampler.ParticleSampler.before_trial = before  # type: ignore[method-assign]


def kill_in_objective() -> None:
    """SIGKILL when the first objective starts (``drill.started``, set by the objective)."""
    original = optuna.Trial.set_user_attr

    def set_user_attr(self: optuna.Trial, key: str, value: Any) -> None:
        original(self, key, value)
        if key == "drill.started":
            _die()

    optuna.Trial.set_user_attr = set_user_attr  # type: ignore[method-assign]


def interrupt_before_sampler() -> None:
    """KeyboardInterrupt just before the first ``before_trial`` (the trial exists)."""
    original = _sampler.ParticleSampler.before_trial
    fired = [False]

    def before(self: Any, study: optuna.Study, trial: Any) -> None:
        if not fired[0]:
            fired[0] = True
            raise KeyboardInterrupt
        original(self, study, trial)

    _sampler.ParticleSampler.before_trial = before  # type: ignore[method-assign]


def interrupt_before_optimize() -> None:
    """KeyboardInterrupt before any trial exists."""

    def optimize(self: optuna.Study, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    optuna.Study.optimize = optimize  # type: ignore[method-assign]


def no_objective_heartbeat() -> None:
    """No heartbeat while the objective runs (as a worker stopped with SIGSTOP)."""
    from optuna.storages._heartbeat import HeartbeatThread

    HeartbeatThread.start = lambda self: None  # type: ignore[method-assign]
    HeartbeatThread.join = lambda self: None  # type: ignore[method-assign]


def slow_cleanup() -> None:
    """Touch MARKER, then take 3 s to fail the interrupted trial (a second signal lands)."""
    original = _liveness.fail_own_running_trials

    def fail(*args: Any, **kwargs: Any) -> list[int]:
        _touch()
        time.sleep(3.0)
        return original(*args, **kwargs)

    _liveness.fail_own_running_trials = fail


FAULTS: dict[str, Callable[[], None]] = {
    "kill-after-slot": kill_after_slot,
    "kill-after-create": kill_after_create,
    "kill-in-retry": kill_in_retry,
    "kill-in-objective": kill_in_objective,
    "interrupt-before-sampler": interrupt_before_sampler,
    "interrupt-before-optimize": interrupt_before_optimize,
    "no-objective-heartbeat": no_objective_heartbeat,
    "slow-cleanup": slow_cleanup,
}


if __name__ == "__main__":
    split = sys.argv.index("--")
    head, cli_args = sys.argv[1:split], sys.argv[split + 1 :]
    if len(head) > 1:
        MARKER = Path(head[1])
    FAULTS[head[0]]()
    raise SystemExit(main(cli_args))
