"""The PostgreSQL server the tests and benchmarks use, and fresh databases on it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Server URL without a database (trust auth); ``$OPTUNA_NOS_TEST_POSTGRES`` overrides it.
DEFAULT_SERVER = os.environ.get("OPTUNA_NOS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
#: ``OPTUNA_NOS_REQUIRE_POSTGRES=1``: a missing server fails the tests instead of skipping.
REQUIRE_POSTGRES = os.environ.get("OPTUNA_NOS_REQUIRE_POSTGRES") == "1"


def _admin(server: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(f"{server}/postgres", connect_timeout=5)
    conn.autocommit = True
    return conn


def postgres_available(server: str = DEFAULT_SERVER) -> bool:
    """Whether the PostgreSQL server answers (trust auth)."""
    try:
        _admin(server).close()
    except Exception:  # noqa: BLE001 - any failure means "no server"
        return False
    return True


def require_postgres() -> None:
    """Skip the test when the server does not answer (fail it with
    ``OPTUNA_NOS_REQUIRE_POSTGRES=1``)."""
    import pytest

    if postgres_available(DEFAULT_SERVER):
        return
    message = f"PostgreSQL at {DEFAULT_SERVER} is unreachable"
    if REQUIRE_POSTGRES:
        pytest.fail(message + "; OPTUNA_NOS_REQUIRE_POSTGRES=1 makes this an error")
    pytest.skip(
        message + "; start it, or set OPTUNA_NOS_TEST_POSTGRES=postgresql://"
        "user@host:port, and set OPTUNA_NOS_REQUIRE_POSTGRES=1 to make it required"
    )


@contextmanager
def fresh_database(
    server: str = DEFAULT_SERVER, prefix: str = "nos_test", reconnect_s: float = 60.0
) -> Iterator[str]:
    """A new empty database ``PREFIX_<random hex>`` on ``server`` (its URL), dropped
    afterwards, waiting up to ``reconnect_s`` seconds for a restarted server to answer."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = _admin(server)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    try:
        yield f"{server}/{name}"
    finally:
        deadline = time.monotonic() + reconnect_s
        while not postgres_available(server) and time.monotonic() < deadline:
            time.sleep(1.0)
        admin = _admin(server)
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
