"""Shared fixtures. PostgreSQL tests use a real server and a fresh database per test run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

#: Server the PostgreSQL tests use (trust auth); a fresh database is created on it per run.
POSTGRES_SERVER = os.environ.get("OPTUNA_NOS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REQUIRE_POSTGRES = os.environ.get("OPTUNA_NOS_REQUIRE_POSTGRES") == "1"


def _admin_connect():  # type: ignore[no-untyped-def]
    import psycopg2

    conn = psycopg2.connect(f"{POSTGRES_SERVER}/postgres", connect_timeout=3)
    conn.autocommit = True
    return conn


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database, dropped afterwards."""
    try:
        admin = _admin_connect()
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server"
        message = f"PostgreSQL at {POSTGRES_SERVER} is unreachable ({type(exc).__name__})"
        if REQUIRE_POSTGRES:
            pytest.fail(message + "; OPTUNA_NOS_REQUIRE_POSTGRES=1 makes this an error")
        pytest.skip(message + "; start it, or set OPTUNA_NOS_TEST_POSTGRES=postgresql://"
                    "user@host:port, and set OPTUNA_NOS_REQUIRE_POSTGRES=1 to make it required")
    name = f"nos_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
