"""Creating a study and storing its config exactly once, safe against concurrent ``init``s.

The config lives in the study user attr ``nos.config``. Reading it and then writing it would
let two concurrent ``init``s with different configs both succeed, one silently overwritten.
Instead the config row is inserted, and the database's unique constraint on (study, key)
decides: the loser reads the winner's config and is refused if it differs (compare-and-set).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb.models import StudyUserAttributeModel

from optuna_nos.core.errors import NOSError
from optuna_nos.study.stored import CONFIG_ATTR

__all__ = ["create_configured_study", "write_config_once"]


def _rdb(storage: BaseStorage) -> RDBStorage | None:
    """The RDBStorage under Optuna's caching wrapper, if the storage is one."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def stored_config(storage: BaseStorage, study_id: int) -> Any:
    """The study's stored config (a JSON value), or None."""
    return storage.get_study_user_attrs(study_id).get(CONFIG_ATTR)


def _insert_config(storage: BaseStorage, study_id: int, text: str) -> bool:
    """Insert the config row; False if a row for the study already exists."""
    rdb = _rdb(storage)
    if rdb is None:  # one process's in-memory storage: nothing else can write
        storage.set_study_user_attr(study_id, CONFIG_ATTR, json.loads(text))
        return True
    table = StudyUserAttributeModel.__table__
    try:
        with rdb.engine.begin() as connection:
            connection.execute(sqlalchemy.insert(table).values(
                study_id=study_id, key=CONFIG_ATTR, value_json=text))
    except sqlalchemy.exc.IntegrityError:
        return False
    return True


def write_config_once(study: optuna.Study, raw: Mapping[str, Any]) -> None:
    """Store ``raw`` as the study's config unless it holds one; refuse a different one."""
    text = json.dumps(raw, sort_keys=True)
    storage, study_id = study._storage, study._study_id
    existing = stored_config(storage, study_id)
    if existing is None:
        if _insert_config(storage, study_id, text):
            return
        existing = stored_config(storage, study_id)
    if existing != json.loads(text):
        raise NOSError(
            f"study {study.study_name!r} already holds a different config; use a new study name"
        )


def create_configured_study(storage: BaseStorage, name: str, raw: Mapping[str, Any],
                            **study_kwargs: Any) -> optuna.Study:
    """Load or create the maximizing study ``name`` and store its config once.

    A study this call created is deleted again when storing the config fails and no other
    process stored one meanwhile, so a failed command leaves no study behind.
    """
    maximize = optuna.study.StudyDirection.MAXIMIZE
    try:
        storage.create_new_study([maximize], name)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        created = False
    study = optuna.load_study(study_name=name, storage=storage, **study_kwargs)
    try:
        if study.direction != maximize:
            raise NOSError(f"study {name!r} minimizes; optuna-nos studies maximize fitness")
        write_config_once(study, raw)
    except BaseException:
        if created and stored_config(storage, study._study_id) is None:
            storage.delete_study(study._study_id)
        raise
    return study
