"""Whose fault is a failed trial: the candidate's or the worker's environment?

A genome that diverges, goes NaN or trips an operation is the candidate's failure: the
objective prunes it (or its exception ends the trial ``FAIL``) and the GA counts it. A worker
whose data are missing, whose device is absent or whose disk is full would fail every genome
it is given; charging those failures to the genomes would decide slots on nothing. So:

* :func:`check_environment` runs the objective's own check (``objective.check_environment()``,
  e.g. load the data onto the device) before the worker claims any slot;
* :func:`guard_objective` marks a trial whose objective raised an infrastructure error
  (:func:`is_infrastructure`) with ``nos:fault = "infrastructure"``, which the GA ignores, and
  notes a trial that was failed by another worker (stale heartbeat) while its objective ran,
  so that the worker drops its result instead of crashing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from optuna_nos.core.errors import NOSError
from optuna_nos.study.stored import FAULT_ATTR, INFRASTRUCTURE, REASON_ATTR

__all__ = ["ObjectiveGuard", "check_environment", "describe", "is_infrastructure"]

_logger = logging.getLogger("optuna_nos")

#: Words of a runtime error message that name the device rather than the computation.
_DEVICE_WORDS = (
    "cuda",
    "cudnn",
    "cublas",
    "nccl",
    "out of memory",
    "device-side",
    "no kernel image",
    "driver",
    "accelerator",
    "mps backend",
)
_INFRASTRUCTURE_TYPES: tuple[type[BaseException], ...] = (
    OSError,
    ImportError,
    MemoryError,
    EOFError,
    NOSError,
)


def is_infrastructure(exc: BaseException) -> bool:
    """Whether ``exc`` is the environment's failure rather than the candidate's.

    Infrastructure: files and network (``OSError``, ``EOFError``), imports, memory, an
    optuna-nos ``NOSError`` (bad data or config), database errors, and runtime errors that
    name the device (CUDA, cuDNN, out of memory, driver). Anything else (NaN checks,
    arithmetic, shape or value errors from the candidate's operations) is the candidate's.
    """
    import sqlalchemy.exc

    if isinstance(exc, _INFRASTRUCTURE_TYPES + (sqlalchemy.exc.SQLAlchemyError,)):
        return True
    if isinstance(exc, RuntimeError | AssertionError):
        text = str(exc).lower()
        return any(word in text for word in _DEVICE_WORDS)
    return False


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (no traceback)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def check_environment(objective: Any) -> None:
    """Run ``objective.check_environment()`` when the objective offers one.

    Raises :class:`NOSError` naming the problem when the environment cannot run trials, so
    that the worker stops before claiming a slot.
    """
    check = getattr(objective, "check_environment", None)
    if check is None:
        return
    try:
        check()
    except NOSError as exc:
        raise NOSError(f"this worker cannot run trials: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the check is the environment's
        raise NOSError(f"this worker cannot run trials: {describe(exc)}") from None


@dataclass
class ObjectiveGuard:
    """``objective`` wrapped: marks infrastructure faults, notices trials failed elsewhere.

    After each call, :attr:`taken` is the number of the trial if another worker had already
    finished it (failed it as stale) when the objective ended, else None; :attr:`fault` the
    description of an infrastructure error the objective raised, else None. An interrupt
    (Ctrl-C, SIGTERM) records ``nos.reason`` on the trial and its number in
    :attr:`interrupted`.
    """

    objective: Callable[[optuna.Trial], float]
    taken: int | None = None
    fault: str | None = None
    interrupted: list[int] = field(default_factory=list)

    def __call__(self, trial: optuna.Trial) -> float:
        self.taken, self.fault = None, None
        try:
            value = self.objective(trial)
        except KeyboardInterrupt as exc:
            self.interrupted.append(trial.number)
            trial.set_user_attr(REASON_ATTR, f"interrupted: {str(exc) or 'SIGINT'}")
            raise
        except optuna.TrialPruned:
            self._notice_taken(trial)
            raise
        except Exception as exc:
            if is_infrastructure(exc):
                self.fault = describe(exc)
                _mark(trial, self.fault)
            self._notice_taken(trial)
            raise
        self._notice_taken(trial)
        return value

    def _notice_taken(self, trial: optuna.Trial) -> None:
        try:
            state = trial.study._storage.get_trial(trial._trial_id).state
        except Exception:  # noqa: BLE001 - a lost storage is handled by the caller
            return
        if state.is_finished():
            self.taken = trial.number
            _logger.warning(
                "trial %d was failed by another worker while it ran (stale "
                "heartbeat); its result is dropped",
                trial.number,
            )


def _mark(trial: optuna.Trial, fault: str) -> None:
    storage = trial.study._storage
    try:
        storage.set_trial_system_attr(trial._trial_id, FAULT_ATTR, INFRASTRUCTURE)
        storage.set_trial_user_attr(trial._trial_id, REASON_ATTR, f"infrastructure: {fault}")
    except Exception:  # noqa: BLE001 - the storage itself may be the fault
        _logger.debug("could not mark trial %d's infrastructure fault", trial.number)
