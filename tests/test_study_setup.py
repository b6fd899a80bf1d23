"""Concurrent ``init``s on real PostgreSQL: one config wins, schema creation races are retried.

The windows are forced, not hoped for: the config read is delayed until both ``init``s have
read "no config yet", and a competitor creates Optuna's schema between a worker's check for
the tables and its ``CREATE``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import optuna
import pytest
import sqlalchemy

from optuna_nos.core.errors import NOSError
from optuna_nos.study import study_setup
from optuna_nos.study.storage import make_storage, normalize_url
from optuna_nos.study.study_setup import create_configured_study, stored_config

CONFIG_A = {"ga": {"n_particles": 2}}
CONFIG_B = {"ga": {"n_particles": 3}}


def test_concurrent_inits_store_one_config(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_storage(postgres_url)  # the schema, so that both inits race only on the config
    both_read = threading.Barrier(2, timeout=30)
    real_read = study_setup.stored_config
    first_reads: set[int] = set()

    def slow_read(storage: Any, study_id: int) -> Any:
        value = real_read(storage, study_id)
        me = threading.get_ident()
        if me not in first_reads:  # the window between reading and writing the config
            first_reads.add(me)
            both_read.wait()
            time.sleep(0.2)
        return value

    monkeypatch.setattr(study_setup, "stored_config", slow_read)
    outcomes: dict[str, str] = {}

    def init(name: str, raw: dict[str, Any]) -> None:
        try:
            create_configured_study(make_storage(postgres_url), "s", raw)
            outcomes[name] = "ready"
        except NOSError as exc:
            outcomes[name] = str(exc)

    threads = [
        threading.Thread(target=init, args=(name, raw))
        for name, raw in (("a", CONFIG_A), ("b", CONFIG_B))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(first_reads) == 2
    winners = [name for name, outcome in outcomes.items() if outcome == "ready"]
    assert len(winners) == 1, outcomes
    loser = "b" if winners == ["a"] else "a"
    assert "already holds a different config" in outcomes[loser]
    storage = make_storage(postgres_url)
    stored = stored_config(storage, storage.get_study_id_from_name("s"))
    assert stored == (CONFIG_A if winners == ["a"] else CONFIG_B)


def test_a_study_whose_config_could_not_be_stored_is_removed(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 's.db'}")

    def fail(*args: Any) -> bool:
        raise NOSError("the config row could not be written")

    monkeypatch.setattr(study_setup, "_insert_config", fail)
    with pytest.raises(NOSError):
        create_configured_study(storage, "s", CONFIG_A)
    assert optuna.get_all_study_names(storage) == []


def test_a_loaded_study_is_kept_when_its_config_differs(tmp_path: Any) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 's.db'}")
    create_configured_study(storage, "s", CONFIG_A)
    with pytest.raises(NOSError, match="different config"):
        create_configured_study(storage, "s", CONFIG_B)
    assert stored_config(storage, storage.get_study_id_from_name("s")) == CONFIG_A


def test_schema_created_by_a_competitor_meanwhile_is_retried(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from optuna.storages._rdb import models

    metadata = models.BaseModel.metadata
    real_create_all = metadata.create_all
    calls: list[bool] = []

    def racing_create_all(bind: Any, **kwargs: Any) -> None:
        calls.append(True)
        if len(calls) == 1:  # another process creates the schema after our check ...
            competitor = sqlalchemy.create_engine(normalize_url(postgres_url))
            real_create_all(competitor)
            competitor.dispose()
            real_create_all(bind, checkfirst=False)  # ... so our CREATE TYPE collides
        real_create_all(bind, **kwargs)

    monkeypatch.setattr(metadata, "create_all", racing_create_all)
    storage = make_storage(postgres_url)
    assert len(calls) == 2
    assert optuna.get_all_study_names(storage) == []
