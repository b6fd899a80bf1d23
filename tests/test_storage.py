"""Worker storage: URL normalisation, password redaction, pool and heartbeat, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.storages import RDBStorage
from sqlalchemy.engine import make_url

from optuna_nos.core.errors import NOSError
from optuna_nos.study.liveness import RetryStaleTrial
from optuna_nos.study.storage import make_storage, normalize_url, redact_url

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    "url,expected",
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg2://u@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("PostgreSQL://h/db", "postgresql+psycopg2://h/db"),
        ("postgresql+psycopg2://h/db", "postgresql+psycopg2://h/db"),
        ("sqlite:///optuna.db", "sqlite:///optuna.db"),
        ("  mysql+pymysql://u@h/db ", "mysql+pymysql://u@h/db"),
    ],
)
def test_bare_postgres_urls_get_the_psycopg2_driver(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize("url", ["", "   ", None, 5])
def test_empty_urls_are_refused(url: object) -> None:
    with pytest.raises(NOSError, match="storage URL"):
        normalize_url(url)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url,expected",
    [
        (
            f"postgresql://nos:{SECRET}@db.example:5432/study",
            "postgresql://nos:***@db.example:5432/study",
        ),
        (
            f"postgresql://nos:{SECRET}@h/db?sslmode=require",
            "postgresql://nos:***@h/db?sslmode=require",
        ),
        (f"postgresql://nos:pa@ss{SECRET}@h/db", "postgresql://nos:***@h/db"),
        (
            f"postgresql://h/db?user=nos&password={SECRET}",
            "postgresql://h/db?user=nos&password=***",
        ),
        (f"broken url://nos:{SECRET}@h", "broken url://nos:***@h"),
        ("postgresql://nos@h/db", "postgresql://nos@h/db"),
        ("sqlite:////tmp/a:b@c.db", "sqlite:////tmp/a:b@c.db"),
    ],
)
def test_passwords_are_redacted(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert SECRET not in redact_url(url)


def test_sqlite_storage_has_heartbeat_and_retries(tmp_path: Path) -> None:
    storage = make_storage(
        f"sqlite:///{tmp_path / 'x.db'}", heartbeat_interval=1, grace_period=2, max_retry=5
    )
    assert isinstance(storage, RDBStorage)
    assert storage.get_heartbeat_interval() == 1 and storage.grace_period == 2
    callback = storage.get_heartbeat_stale_trial_callback()
    # Ours queues the retry before the trial is failed (Optuna's queues it after).
    assert isinstance(callback, RetryStaleTrial)
    assert callback.max_retry == 5


def test_no_heartbeat_means_no_retry_callback(tmp_path: Path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'x.db'}", heartbeat_interval=None)
    assert storage.get_heartbeat_interval() is None
    assert storage.get_heartbeat_stale_trial_callback() is None


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"heartbeat_interval": 1.5}, "heartbeat_interval"),
        ({"grace_period": -1}, "grace_period"),
        ({"heartbeat_interval": None, "grace_period": 5}, "grace_period"),
        ({"max_retry": -1}, "max_retry"),
    ],
)
def test_bad_arguments_name_the_value(
    tmp_path: Path, kwargs: dict[str, object], name: str
) -> None:
    with pytest.raises(NOSError, match=name):
        make_storage(f"sqlite:///{tmp_path / 'x.db'}", **kwargs)  # type: ignore[arg-type]


def test_an_unparsable_url_is_refused() -> None:
    with pytest.raises(NOSError, match="cannot parse"):
        make_storage(f"nonsense:{SECRET}")


def test_an_unreachable_server_is_named_without_its_password() -> None:
    with pytest.raises(NOSError, match="unreachable") as caught:
        make_storage(f"postgresql://nos:{SECRET}@127.0.0.1:1/study")
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_postgres_storage_uses_the_small_pool(postgres_url: str) -> None:
    storage = make_storage(postgres_url, heartbeat_interval=1, grace_period=2, max_retry=3)
    engine = storage.engine
    assert engine.url.drivername == "postgresql+psycopg2"
    assert engine.pool.size() == 1  # type: ignore[attr-defined]
    assert engine.pool._max_overflow == 1  # type: ignore[attr-defined]
    assert engine.pool._pre_ping  # type: ignore[attr-defined]
    engine.dispose()


def test_a_rejected_login_is_named_without_its_password(postgres_url: str) -> None:
    url = make_url(postgres_url).set(username="nos_no_such_role", password=SECRET)
    with pytest.raises(NOSError, match="rejected the user name or password") as caught:
        make_storage(url.render_as_string(hide_password=False))
    assert SECRET not in str(caught.value)


def test_a_missing_database_is_named(postgres_url: str) -> None:
    url = make_url(postgres_url).set(database="nos_test_missing_database")
    with pytest.raises(NOSError, match="does not exist"):
        make_storage(url.render_as_string(hide_password=False))
