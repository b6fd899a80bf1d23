"""Opening a study storage for workers: URL normalisation, heartbeat, retries, clear errors.

Every worker of a distributed search opens the same database the same way: a small
connection pool that survives server restarts, a heartbeat so that a killed worker's trial
goes ``FAIL``, and :class:`~optuna_nos.study.liveness.RetryStaleTrial` so that such a trial is
queued again with the same genome (the retry queued before the ``FAIL``). Messages never
show a password.
"""

from __future__ import annotations

import datetime
import logging
import re
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
import sqlalchemy.exc
import sqlalchemy.orm
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import URL, make_url

from optuna_nos.core.errors import NOSError
from optuna_nos.core.validation import is_int
from optuna_nos.study.storage_schema import check_schema, open_with_retry

__all__ = [
    "CONNECT_TIMEOUT_S",
    "ENGINE_KWARGS",
    "make_storage",
    "normalize_url",
    "parse_storage_url",
    "redact_url",
]

#: Connection pool of one worker: one connection for the trial, one for the heartbeat thread.
ENGINE_KWARGS: dict[str, Any] = {"pool_size": 1, "max_overflow": 1, "pool_pre_ping": True}
#: Seconds a worker waits for a PostgreSQL server before reporting it unreachable.
CONNECT_TIMEOUT_S = 10

_BARE_POSTGRES = re.compile(r"^(postgresql|postgres)://", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&](?:password|passwd|pwd)=)[^&#]*", re.IGNORECASE)

_UNREACHABLE = (
    "could not connect",
    "connection refused",
    "could not translate host name",
    "name or service not known",
    "timeout expired",
    "timed out",
    "no route to host",
    "network is unreachable",
    "server closed the connection",
)
_BAD_CREDENTIALS = (
    "password authentication failed",
    "authentication failed",
    "no password supplied",
    'role "',
    "no pg_hba.conf entry",
    "access denied",
)


_logger = logging.getLogger(__name__)


class _HeartbeatTolerantStorage(RDBStorage):
    """RDBStorage whose heartbeat survives a lost connection and covers a trial's first moment.

    Optuna records heartbeats in a thread that dies on the first database error, after which
    a trial that outlives a server restart would go stale and be failed while it still runs.
    Here a failed heartbeat logs one warning per outage and the next one tries again.

    Optuna starts a trial's heartbeat only once the sampler has placed it, so a worker dying
    in between left a RUNNING trial that never goes stale. Here a trial this process creates
    RUNNING, or pops from the queue, gets a heartbeat and ``nos:worker`` at once, and its id
    is kept in :attr:`started_trial_ids`; stale trials include RUNNING trials that have no
    heartbeat at all and are older than the grace period. With ``adopt=False`` (a storage that
    serves other processes' trials, as the gRPC proxy's) no trial is adopted: nothing is
    written into a trial after creating or popping it, and no id is kept.
    """

    _heartbeat_failing = False

    def __init__(self, *args: Any, adopt: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.adopt = adopt
        #: Ids of the trials this process created RUNNING or popped from the queue.
        self.started_trial_ids: set[int] = set()

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except (
            optuna.exceptions.StorageInternalError,
            sqlalchemy.exc.OperationalError,
            sqlalchemy.exc.InterfaceError,
        ) as exc:
            if not self._heartbeat_failing:
                _logger.warning(
                    "heartbeat of trial %d not recorded (%s); retrying",
                    trial_id,
                    type(exc).__name__,
                )
            self._heartbeat_failing = True
            return
        self._heartbeat_failing = False

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        # Both create_new_trial and Optuna's caching wrapper create trials through here.
        trial = super()._create_new_trial(study_id, template_trial)
        if self.adopt and trial.state == TrialState.RUNNING:
            trial.system_attrs.update(self._adopt(trial._trial_id))
        return trial

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and self.adopt and state == TrialState.RUNNING:
            self._adopt(trial_id)  # a queued trial popped by this process
        return changed

    def _adopt(self, trial_id: int) -> dict[str, str]:
        """Heartbeat and ``nos:worker`` for a trial this process now runs; the attrs set."""
        from optuna_nos.sampler._liveness import worker_id
        from optuna_nos.study.stored import WORKER_ATTR

        self.started_trial_ids.add(trial_id)
        if self.heartbeat_interval is not None:
            self.record_heartbeat(trial_id)
        self.set_trial_system_attr(trial_id, WORKER_ATTR, worker_id())
        return {WORKER_ATTR: worker_id()}

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials whose heartbeat is older than the grace period (database clock), and
        those without any heartbeat that started longer ago than that (worker clocks); each
        one's retry is queued before the caller fails it
        (:func:`~optuna_nos.study.liveness.queue_retries_first`)."""
        from optuna_nos.study.liveness import orphan_trial_ids, queue_retries_first

        assert self.heartbeat_interval is not None
        grace = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        with _create_scoped_session(self.scoped_session, True) as session:
            now = session.execute(sqlalchemy.func.now()).scalar_one().replace(tzinfo=None)
            rows = (
                session.query(models.TrialModel)
                .options(sqlalchemy.orm.selectinload(models.TrialModel.heartbeats))
                .filter(models.TrialModel.state == TrialState.RUNNING)
                .filter(models.TrialModel.study_id == study_id)
                .all()
            )
            limit = datetime.timedelta(seconds=grace)
            stale = [
                row.trial_id
                for row in rows
                if row.heartbeats and now - row.heartbeats[0].heartbeat > limit
            ]
            running = [(row.trial_id, row.datetime_start, bool(row.heartbeats)) for row in rows]
        return queue_retries_first(
            self,
            study_id,
            stale + orphan_trial_ids(running, grace),
            self.heartbeat_stale_trial_callback,
        )


def normalize_url(url: str) -> str:
    """Give bare PostgreSQL URLs the psycopg2 driver.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3, which this project does not install,
    so ``postgresql://...`` and ``postgres://...`` become ``postgresql+psycopg2://...``. Other
    URLs (``sqlite:///...``, ``postgresql+psycopg2://...``, ``mysql+pymysql://...``) are
    returned unchanged.
    """
    if not isinstance(url, str) or not url.strip():
        raise NOSError(f"a storage URL must be a non-empty string, got {url!r}")
    url = url.strip()
    return _BARE_POSTGRES.sub("postgresql+psycopg2://", url, count=1)


def _password_span(text: str) -> tuple[int, int] | None:
    """Where the password of ``scheme://user:password@host/...`` lies, found textually."""
    scheme_end = text.find(":")
    if scheme_end < 0:
        return None
    start = scheme_end + 1
    while start < len(text) and text[start] == "/":
        start += 1  # "scheme://", or a malformed "scheme:/" or "scheme:"
    if start - scheme_end > 3:
        return None  # "scheme:///path": no authority, so no password (sqlite file paths)
    query = text.find("?", start)
    at = text.rfind("@", start, len(text) if query < 0 else query)
    if at < 0:
        return None
    colon = text.find(":", start, at)
    return None if colon < 0 else (colon + 1, at)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to print or log.

    Works on the text alone (no URL parser), so even a malformed URL, or a password holding
    an unescaped ``@``, is hidden: everything between the user name's ``:`` and the last
    ``@`` of the authority goes, and so does a ``password=`` query argument.
    """
    text = str(url)
    span = _password_span(text)
    if span is not None:
        text = f"{text[: span[0]]}***{text[span[1] :]}"
    return _QUERY_PASSWORD.sub(lambda m: f"{m['key']}***", text)


def _scrub(message: str, url: str) -> str:
    """``message`` with the URL's password (if any) replaced by ``***``."""
    span = _password_span(url)
    password = url[span[0] : span[1]] if span is not None else ""
    return message.replace(password, "***") if password else message


def _check_positive(name: str, value: int | None) -> None:
    if value is None:
        return
    if not is_int(value) or value <= 0:
        raise NOSError(f"{name} must be a positive integer (seconds) or None, got {value!r}")


def _describe_failure(message: str, shown_url: str) -> str:
    lowered = message.lower()
    if "does not exist" in lowered and "database" in lowered:
        return f"database of storage {shown_url} does not exist; create it first"
    if any(marker in lowered for marker in _BAD_CREDENTIALS):
        return f"storage {shown_url} rejected the user name or password"
    if any(marker in lowered for marker in _UNREACHABLE):
        return f"storage server of {shown_url} is unreachable; is it running and reachable?"
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return f"cannot open storage {shown_url}: {first_line}"


#: Query options of a SQLite URL that SQLAlchemy's driver or SQLite's URI syntax understand.
SQLITE_OPTIONS = (
    "timeout",
    "uri",
    "check_same_thread",
    "isolation_level",
    "detect_types",
    "cached_statements",
    "mode",
    "cache",
    "nolock",
    "immutable",
    "vfs",
)


def parse_storage_url(normalized: str, shown: str) -> URL:
    """The parsed URL; a malformed port, a PostgreSQL URL without host or database name, or
    an unknown SQLite option is a :class:`~optuna_nos.core.errors.NOSError`."""
    try:
        url = make_url(normalized)
        url.port  # noqa: B018 - a bad port raises on parsing or here
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise NOSError(f"cannot parse storage URL {shown!r}") from None
    backend = url.get_backend_name()
    if backend == "postgresql" and not ((url.host or url.query.get("host")) and url.database):
        raise NOSError(
            f"storage URL {shown!r} must name a host and a database, as in "
            "postgresql://user@host:5432/dbname"
        )
    if backend == "sqlite":
        unknown = sorted(set(url.query) - set(SQLITE_OPTIONS))
        if unknown:
            raise NOSError(
                f"unknown option {unknown[0]!r} in storage URL {shown!r}; allowed: "
                f"{', '.join(SQLITE_OPTIONS)}"
            )
    return url


def make_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 60,
    grace_period: int | None = None,
    max_retry: int | None = 3,
    read_only: bool = False,
    pool_size: int = 1,
    adopt: bool = True,
) -> RDBStorage:
    """An :class:`optuna.storages.RDBStorage` set up for one worker process.

    * ``url`` is normalised (:func:`normalize_url`) and checked (:func:`parse_storage_url`);
      PostgreSQL connections time out after :data:`CONNECT_TIMEOUT_S` seconds unless the URL
      sets ``connect_timeout``, and use the small pool :data:`ENGINE_KWARGS`.
    * ``heartbeat_interval`` (seconds, ``None`` = no heartbeat): a running trial records a
      heartbeat this often; one silent for ``grace_period`` seconds (default
      ``2 * heartbeat_interval``) goes ``FAIL`` and is queued again (``WAITING``, same params
      and system attrs) up to ``max_retry`` times (``None`` = without limit).
    * ``read_only``: the database must already hold Optuna's tables; nothing is created
      (not even a SQLite file).
    * ``pool_size``: connections kept open (one more may open for the heartbeat); the gRPC
      proxy, which serves many workers, keeps one per serving thread.
    * ``adopt``: a trial this process creates RUNNING or pops from the queue gets a heartbeat
      and ``nos:worker`` at once; False for a storage serving other processes' trials (the
      gRPC proxy), which runs none itself.

    Raises :class:`~optuna_nos.core.errors.NOSError` for a bad argument, an unreachable server, a
    rejected login, a missing database, a database that is not Optuna's or whose schema is of
    another Optuna version; the message shows the URL with its password hidden.
    """
    normalized = normalize_url(url)
    shown = redact_url(normalized)
    _check_positive("heartbeat_interval", heartbeat_interval)
    _check_positive("grace_period", grace_period)
    if max_retry is not None and (not is_int(max_retry) or max_retry < 0):
        raise NOSError(f"max_retry must be a non-negative integer or None, got {max_retry!r}")
    _check_positive("pool_size", pool_size)
    if grace_period is not None and heartbeat_interval is None:
        raise NOSError("grace_period needs a heartbeat_interval; set both or neither")

    parsed = parse_storage_url(normalized, shown)
    dialect = parsed.get_backend_name()
    engine_kwargs: dict[str, Any] = {}
    if dialect != "sqlite":
        engine_kwargs = {**ENGINE_KWARGS, "pool_size": pool_size}
    if dialect == "postgresql" and "connect_timeout" not in parsed.query:
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}

    from optuna_nos.study.liveness import RetryStaleTrial

    callback = RetryStaleTrial(max_retry) if heartbeat_interval is not None else None

    def open_storage() -> RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _HeartbeatTolerantStorage(
                normalized,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=callback,
                skip_table_creation=read_only,
                adopt=adopt,
            )

    try:
        check_schema(parsed, engine_kwargs, shown, read_only=read_only)
        return open_with_retry(open_storage)
    except sqlalchemy.exc.DBAPIError as exc:
        message = _scrub(str(exc.orig or exc), normalized)
        raise NOSError(_describe_failure(message, shown)) from None
    except sqlalchemy.exc.ArgumentError:
        raise NOSError(f"cannot parse storage URL {shown!r}") from None
    except RuntimeError as exc:  # Optuna: the schema belongs to another Optuna version
        raise NOSError(_describe_failure(_scrub(str(exc), normalized), shown)) from None
    except ImportError:
        raise NOSError(
            f"no database driver for storage {shown}; install the driver its URL names"
        ) from None
