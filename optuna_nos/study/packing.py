"""Packed workers: evaluate K trials of a study together.

:func:`optimize_packed` is ``study.optimize`` for objectives that train several candidates at
once (one stacked model on a GPU). It repeatedly

1. fails stale trials (so a dead worker's trials are retried, as ``study.optimize`` does);
2. asks up to K trials (``study.ask()``): the first waits for work as a lone worker would, the
   others are asked only while the sampler has open work, so a worker never waits on trials
   it holds itself (the :class:`~optuna_nos.sampler.ParticleSampler` claims one slot per ask,
   heartbeat included);
3. keeps every held trial's heartbeat alive while the objective runs;
4. calls ``objective(pack)``, which tells each trial's outcome as soon as it is known
   (:meth:`Pack.tell`); a trial the objective leaves undecided fails.

If the objective raises, only the trials this pack still holds fail (an interrupt records
``interrupted: ...``), and the exception propagates, as with ``study.optimize(catch=())``;
when the storage itself is unreachable they stay RUNNING for the caller to fail once it is
back (``optuna-nos worker --pack`` waits for it and queues their retries) and a missed
heartbeat is logged, not raised.
A worker that dies (SIGKILL, power loss) stops their heartbeats, so another worker fails them
as stale and the storage's retry callback queues them again.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from optuna_nos.core.errors import NOSError
from optuna_nos.study.stored import IDLE_ATTR, REASON_ATTR

__all__ = ["Pack", "PackedObjective", "optimize_packed", "pack_size", "packed_objective"]

_logger = logging.getLogger("optuna_nos.study.packing")

Callback = Callable[[optuna.Study, FrozenTrial], None]


class Pack:
    """The trials one packed evaluation holds; the objective tells each one's outcome."""

    def __init__(
        self,
        study: optuna.Study,
        trials: Sequence[optuna.Trial],
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.study = study
        self.trials = list(trials)
        self.callbacks = list(callbacks)
        self._decided: set[int] = set()
        self._lock = threading.Lock()

    @property
    def undecided(self) -> list[optuna.Trial]:
        """Held trials not told yet."""
        with self._lock:
            return [t for t in self.trials if t.number not in self._decided]

    def complete(self, trial: optuna.Trial, value: float) -> None:
        """Tell ``trial`` COMPLETE with ``value`` (a NaN value is recorded as FAIL by Optuna)."""
        self._tell(trial, TrialState.COMPLETE, value, None)

    def prune(self, trial: optuna.Trial, reason: str) -> None:
        """Tell ``trial`` PRUNED; ``reason`` goes to its ``nos.reason`` user attr if unset."""
        self._tell(trial, TrialState.PRUNED, None, reason)

    def fail(self, trial: optuna.Trial, reason: str) -> None:
        """Tell ``trial`` FAIL with ``reason``."""
        self._tell(trial, TrialState.FAIL, None, reason)

    def fail_undecided(self, reason: str) -> None:
        for trial in self.undecided:
            self.fail(trial, reason)

    def _tell(
        self, trial: optuna.Trial, state: TrialState, value: float | None, reason: str | None
    ) -> None:
        with self._lock:
            if trial.number in self._decided:
                raise NOSError(f"trial {trial.number} was already told")
            self._decided.add(trial.number)
        try:
            if reason is not None and (
                state == TrialState.FAIL or REASON_ATTR not in trial.user_attrs
            ):
                trial.set_user_attr(REASON_ATTR, reason)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # NaN values are told as FAIL
                if state == TrialState.COMPLETE:
                    frozen = self.study.tell(trial, value)
                else:
                    frozen = self.study.tell(trial, state=state)
        except Exception:
            with self._lock:  # not told: still held
                self._decided.discard(trial.number)
            raise
        for callback in self.callbacks:
            callback(self.study, frozen)


#: ``objective(pack)`` evaluates ``pack.trials`` and tells each one (:class:`Pack`).
PackedObjective = Callable[[Pack], None]


def packed_objective(objective: Any) -> PackedObjective:
    """The packed form of an objective: its ``evaluate_pack`` method."""
    evaluate = getattr(objective, "evaluate_pack", None)
    if not callable(evaluate):
        raise NOSError(
            f"objective {type(objective).__name__} cannot evaluate packs (it has no "
            "evaluate_pack method); run the worker without --pack"
        )
    return evaluate  # type: ignore[no-any-return]


def pack_size(text: str, objective: Any) -> int:
    """K from ``--pack``: an int >= 1, or ``auto`` (the objective's ``auto_pack()``)."""
    if text == "auto":
        auto = getattr(objective, "auto_pack", None)
        if not callable(auto):
            raise NOSError(
                f"objective {type(objective).__name__} cannot size packs "
                "(no auto_pack method); give --pack an integer"
            )
        return int(auto())
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise NOSError(f"--pack must be an integer >= 1 or 'auto', got {text!r}")
    return size


class _Heartbeat:
    """Records a heartbeat for every undecided trial of a pack, every heartbeat interval."""

    def __init__(self, study: optuna.Study, pack: Pack) -> None:
        self.storage = study._storage
        self.pack = pack
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        if is_heartbeat_enabled(self.storage):
            assert isinstance(self.storage, BaseHeartbeat)
            interval = self.storage.get_heartbeat_interval()
            assert interval is not None
            self.thread = threading.Thread(target=self._beat, args=(interval,), daemon=True)
            self._record()
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()

    def _record(self) -> None:
        assert isinstance(self.storage, BaseHeartbeat)
        for trial in self.pack.undecided:
            self.storage.record_heartbeat(trial._trial_id)

    def _beat(self, interval: float) -> None:
        while not self.stop.wait(interval):
            try:
                self._record()
            except Exception as exc:  # noqa: BLE001 - the storage may be back next beat
                _logger.warning("heartbeat not recorded (%s)", type(exc).__name__)


def _open_work(study: optuna.Study) -> int | None:
    """Slots the sampler could hand out now without waiting (None: no such notion)."""
    state = getattr(study.sampler, "state", None)
    if state is None:
        return None
    return len(state(study).open_slots)


def _ask_pack(study: optuna.Study, size: int) -> list[optuna.Trial]:
    """Up to ``size`` trials: the first waits for work, the others only take open work."""
    trials = [study.ask()]
    sampler: Any = study.sampler
    waits = getattr(sampler, "wait_for_work", None)
    while len(trials) < size:
        open_now = _open_work(study)
        if open_now is not None and open_now == 0:
            break
        if waits is not None:
            sampler.wait_for_work = False
        try:
            trials.append(study.ask())
        finally:
            if waits is not None:
                sampler.wait_for_work = waits
        if _idle(study, trials[-1]):
            break
    return trials


def _system_attrs(study: optuna.Study, trial: optuna.Trial) -> dict[str, Any]:
    return study._storage.get_trial_system_attrs(trial._trial_id)


def _idle(study: optuna.Study, trial: optuna.Trial) -> bool:
    return _system_attrs(study, trial).get(IDLE_ATTR) is not None


def _finished(study: optuna.Study, trials: Sequence[optuna.Trial]) -> bool:
    from optuna_nos.sampler import FINISHED_REASON

    if any(_system_attrs(study, t).get(IDLE_ATTR) == FINISHED_REASON for t in trials):
        return True
    is_finished = getattr(study.sampler, "is_finished", None)
    return bool(is_finished(study)) if is_finished is not None else False


def _fail_stale(study: optuna.Study) -> None:
    from optuna_nos.study.liveness import fail_stale_trials

    fail_stale_trials(study)


def _fail_held(pack: Pack, reason: str) -> None:
    """Fail the pack's undecided trials; an unreachable storage leaves them RUNNING (the
    caller's outage handling, or their expiring heartbeats, fail them) and the objective's
    own error is the one that propagates."""
    try:
        pack.fail_undecided(reason)
    except Exception as exc:  # noqa: BLE001 - the original error matters more
        _logger.warning(
            "could not fail trials %s (%s)", [t.number for t in pack.undecided], type(exc).__name__
        )


def optimize_packed(
    study: optuna.Study,
    objective: PackedObjective,
    pack: int,
    *,
    n_trials: int | None = None,
    callbacks: Sequence[Callback] = (),
) -> None:
    """Evaluate the study's trials ``pack`` at a time until the search is finished (see the
    module docstring); ``n_trials`` caps the trials this worker asks for.

    ``callbacks`` run after each trial is told, as in ``study.optimize``.
    """
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        raise NOSError(f"pack must be an int >= 1, got {pack!r}")
    asked = 0
    while n_trials is None or asked < n_trials:
        _fail_stale(study)
        size = pack if n_trials is None else min(pack, n_trials - asked)
        trials = _ask_pack(study, size)
        asked += len(trials)
        current = Pack(study, trials, callbacks)
        _logger.debug("pack of trials %s", [t.number for t in trials])
        with _Heartbeat(study, current):
            try:
                objective(current)
            except KeyboardInterrupt as exc:
                _fail_held(current, f"interrupted: {str(exc) or 'SIGINT'}")
                raise
            except BaseException as exc:
                _fail_held(current, f"packed objective raised {type(exc).__name__}")
                raise
        current.fail_undecided("the packed objective left the trial undecided")
        if _finished(study, trials):
            return
