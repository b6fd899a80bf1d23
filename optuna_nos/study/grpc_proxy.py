"""Many workers through Optuna's gRPC storage proxy, with heartbeats that pass through it.

``optuna-nos proxy --storage URL --host H --port P`` serves the database to workers started
with ``--storage grpc://H:P``. The proxy holds a fixed pool of database connections however
many workers there are, and each worker's reads are incremental (finished trials are cached
in the worker; only new and unfinished trials cross the wire).

Liveness (:mod:`optuna_nos.study.liveness`): Optuna's ``GrpcStorageProxy`` has no heartbeat, so
:class:`LivenessGrpcStorage` adds one. Optuna's own heartbeat thread calls
:meth:`~LivenessGrpcStorage.record_heartbeat`, which writes the trial system attr
``nos:beat``; Optuna's ``fail_stale_trials`` (run by every worker before each trial and by
the ParticleSampler while it waits) asks :meth:`~LivenessGrpcStorage._get_stale_trial_ids`,
which judges beats on the worker's own clock. The proxy host runs the same sweep
(:func:`~optuna_nos.study.liveness.fail_stale`) every few seconds over every optuna-nos study, with
each study's ``[workers]`` grace period and retry limit, so a dead worker's trial is retried
even while every other worker is deep in a long trial.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import optuna
from optuna.storages import BaseStorage, GrpcStorageProxy
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from optuna_nos.core.errors import NOSError
from optuna_nos.core.validation import check_int
from optuna_nos.study.liveness import (
    BEAT_ATTR,
    BeatObserver,
    RetryStaleTrial,
    StaleCallback,
    fail_stale,
    queue_retries_first,
)
from optuna_nos.study.storage import normalize_url, redact_url

__all__ = [
    "LivenessGrpcStorage",
    "is_grpc_url",
    "is_proxy_outage",
    "make_grpc_storage",
    "parse_grpc_url",
    "serve_proxy",
    "served_storage",
]

_GRPC_URL = re.compile(r"grpc://(?P<host>\[[0-9a-fA-F:.]+\]|[^:/\[\]@?#\s]+):(?P<port>\d{1,5})/?")
#: Seconds a worker waits for the proxy before reporting it unreachable.
CONNECT_TIMEOUT_S = 10.0
#: Seconds between the proxy host's stale-trial sweeps.
SWEEP_INTERVAL_S = 2.0

_logger = logging.getLogger(__name__)


def is_grpc_url(url: object) -> bool:
    return isinstance(url, str) and url.strip().lower().startswith("grpc://")


def parse_grpc_url(url: str) -> tuple[str, int]:
    """``grpc://HOST:PORT`` -> (HOST, PORT); a bad URL raises :class:`NOSError`."""
    match = _GRPC_URL.fullmatch(url.strip())
    port = int(match["port"]) if match else 0
    if match is None or not 0 < port < 65536:
        raise NOSError(
            f"a gRPC proxy URL is grpc://HOST:PORT (port 1-65535), got {redact_url(url)!r}"
        )
    return match["host"].strip("[]"), port


def is_proxy_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the proxy (or the database behind it) is unreachable for now."""
    try:
        import grpc
    except ImportError:
        return False
    return isinstance(exc, grpc.RpcError) and getattr(exc, "code", lambda: None)() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )


class LivenessGrpcStorage(GrpcStorageProxy, BaseHeartbeat):
    """``GrpcStorageProxy`` with a heartbeat kept in the trial system attr ``nos:beat``.

    A beat that cannot be written (proxy restarting, trial just finished) is skipped with
    one warning per outage; the next beat tries again.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        heartbeat_interval: int | None,
        grace_period: int | None,
        stale_callback: StaleCallback | None,
    ) -> None:
        super().__init__(host=host, port=port)
        self._heartbeat_interval = heartbeat_interval
        grace = grace_period or 2 * (heartbeat_interval or 1)
        self._observer = BeatObserver(grace)
        self._stale_callback = stale_callback
        self._beats = 0
        self._beat_failing = False

    def record_heartbeat(self, trial_id: int) -> None:
        import grpc

        self._beats += 1
        try:
            self.set_trial_system_attr(trial_id, BEAT_ATTR, self._beats)
        except optuna.exceptions.UpdateFinishedTrialError:
            return
        except grpc.RpcError as exc:
            if not self._beat_failing:
                _logger.warning(
                    "heartbeat of trial %d not recorded (%s); retrying",
                    trial_id,
                    exc.code() if hasattr(exc, "code") else type(exc).__name__,
                )
            self._beat_failing = True
            return
        self._beat_failing = False

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return queue_retries_first(
            self, study_id, self._observer.stale(running), self._stale_callback
        )

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_callback


def _retry_callback(max_retry: int | None) -> StaleCallback:
    return RetryStaleTrial(max_retry)


def make_grpc_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 60,
    grace_period: int | None = None,
    max_retry: int | None = 3,
) -> LivenessGrpcStorage:
    """A worker's storage behind ``optuna-nos proxy`` at ``grpc://HOST:PORT``, with the
    heartbeat and retries of :func:`optuna_nos.study.storage.make_storage`."""
    import grpc

    host, port = parse_grpc_url(url)
    callback = _retry_callback(max_retry) if heartbeat_interval is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = LivenessGrpcStorage(
            host=host,
            port=port,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            stale_callback=callback,
        )
    try:
        storage.wait_server_ready(timeout=CONNECT_TIMEOUT_S)
    except (grpc.FutureTimeoutError, ConnectionError):
        storage.close()
        raise NOSError(
            f"storage proxy {redact_url(url.strip())} is unreachable; is "
            "'optuna-nos proxy' running there?"
        ) from None
    return storage


class _Sweeper:
    """The proxy host's stale sweep over every optuna-nos study of the backend storage."""

    def __init__(self, backend: BaseStorage) -> None:
        self._backend = backend
        self._observers: dict[int, tuple[BeatObserver, StaleCallback | None]] = {}

    def sweep_once(self) -> list[int]:
        from optuna_nos.study.config import CONFIG_ATTR, parse_config

        failed: list[int] = []
        for frozen in self._backend.get_all_studies():
            raw = frozen.user_attrs.get(CONFIG_ATTR)
            if raw is None:
                continue
            if frozen._study_id not in self._observers:
                workers = parse_config(raw).workers
                if workers.heartbeat_interval is None:
                    continue
                grace = workers.grace_period or 2 * workers.heartbeat_interval
                self._observers[frozen._study_id] = (
                    BeatObserver(grace),
                    _retry_callback(workers.max_retry),
                )
            observer, callback = self._observers[frozen._study_id]
            study = optuna.Study(frozen.study_name, storage=self._backend)
            failed += fail_stale(study, observer, callback)
        return failed

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            try:
                self.sweep_once()
            except Exception as exc:  # noqa: BLE001 - a sweep must never end the proxy
                _logger.warning("stale-trial sweep failed (%s); retrying", type(exc).__name__)


def served_storage(url: str, threads: int) -> optuna.storages.RDBStorage:
    """The database storage the proxy serves, with a pool of ``threads`` connections.

    The proxy runs no trial, so it does not adopt the trials it creates for workers (no
    ``nos:worker`` of its own): adopting wrote to the new trial after creating it, and a trial
    failed in between (stale sweep under load) made the worker's ``CreateNewTrial`` fail.
    """
    from optuna_nos.study.storage import make_storage

    return make_storage(
        url, heartbeat_interval=None, max_retry=None, pool_size=threads, adopt=False
    )


def serve_proxy(
    url: str, *, host: str, port: int, threads: int = 16, sweep_interval: float = SWEEP_INTERVAL_S
) -> None:
    """Serve ``url``'s database on ``host:port`` (Optuna's ``run_grpc_proxy_server``) until
    the process ends, sweeping stale trials in a background thread.

    ``threads`` RPCs run at once, over at most ``threads + 1`` database connections.
    """
    check_int("threads", threads, minimum=1)
    if is_grpc_url(url):
        raise NOSError(
            f"the proxy serves a database: --storage takes a database URL, not {url.strip()}"
        )
    rdb = served_storage(url, threads)
    backend = optuna.storages.get_storage(rdb)  # Optuna's in-process trial cache
    stop = threading.Event()
    threading.Thread(
        target=_Sweeper(backend).run,
        args=(stop, sweep_interval),
        name="nos-stale-sweep",
        daemon=True,
    ).start()
    _logger.info(
        "optuna-nos proxy on %s:%d (%d threads) in front of %s",
        host,
        port,
        threads,
        redact_url(normalize_url(url)),
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.run_grpc_proxy_server(
                backend, host=host, port=port, thread_pool=ThreadPoolExecutor(threads)
            )
    except RuntimeError as exc:
        raise NOSError(f"cannot serve on {host}:{port}: {exc}") from None
    finally:
        stop.set()
        rdb.engine.dispose()
