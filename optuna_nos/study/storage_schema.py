"""What a storage database holds before Optuna touches it, and creating Optuna's schema safely.

Optuna's ``RDBStorage`` creates its tables on every open. A read-only command must not, so
:func:`check_schema` looks first: a read-only open of a database without Optuna's tables
is refused (no file, no table is created), and a ``studies`` table of another application
is refused in any mode. :func:`open_with_retry` opens the storage again when another process
created the same schema at the same moment (PostgreSQL then reports a type or table that
"already exists").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.engine import URL

from optuna_nos.core.errors import NOSError

__all__ = ["OPTUNA_TABLES", "SCHEMA_ATTEMPTS", "check_schema", "open_with_retry"]

#: Tables a database must hold for a read-only command to find studies in it.
OPTUNA_TABLES = ("studies", "version_info", "alembic_version")
#: Columns that tell Optuna's ``studies`` table from another application's.
_STUDY_COLUMNS = {"study_id", "study_name"}
#: How often a storage is opened when concurrent schema creation gets in the way.
SCHEMA_ATTEMPTS = 5
_RACE_MARKERS = ("already exists", "duplicate key")

T = TypeVar("T")


def _sqlite_file(url: URL) -> str | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    if database.startswith("file:"):
        database = database[len("file:") :]
    return database


def check_schema(url: URL, engine_kwargs: dict[str, Any], shown: str, *, read_only: bool) -> None:
    """Refuse a database that is not (yet) Optuna's, without writing to it.

    * read-only: a SQLite file that does not exist, or a database without Optuna's tables,
      holds no study;
    * always: a ``studies`` table without ``study_id`` and ``study_name`` belongs to another
      application.

    Database errors propagate (the caller words them).
    """
    if url.get_backend_name() == "sqlite":
        path = _sqlite_file(url)
        if path is not None and read_only and not os.path.exists(path):
            raise NOSError(f"database file {path!r} of storage {shown} does not exist")
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        with engine.connect() as connection:
            inspector = sqlalchemy.inspect(connection)
            tables = set(inspector.get_table_names())
            if "studies" in tables:
                columns = {c["name"] for c in inspector.get_columns("studies")}
                if not _STUDY_COLUMNS <= columns:
                    raise NOSError(
                        f"storage {shown} holds a 'studies' table that is not "
                        "Optuna's; use another database"
                    )
            missing = [t for t in OPTUNA_TABLES if t not in tables]
            if read_only and missing:
                raise NOSError(
                    f"storage {shown} holds no Optuna studies (no table {missing[0]!r})"
                )
    finally:
        engine.dispose()


def _is_schema_race(exc: sqlalchemy.exc.DBAPIError) -> bool:
    message = str(exc.orig or exc).lower()
    return any(marker in message for marker in _RACE_MARKERS)


def open_with_retry(open_storage: Callable[[], T]) -> T:
    """``open_storage()``, again (up to :data:`SCHEMA_ATTEMPTS` times) while it fails because a
    concurrent process created the same tables, types or version row first."""
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            return open_storage()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            if attempt == SCHEMA_ATTEMPTS or not _is_schema_race(exc):
                raise
    raise AssertionError("unreachable")
