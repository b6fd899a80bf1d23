"""Creating a study and storing its config and GA record exactly once, safe against
concurrent ``init``s.

The config lives in the study user attr ``nos.config``. Reading it and then writing it would
let two concurrent ``init``s with different configs both succeed, one silently overwritten.
Instead the config row is inserted, and the database's unique constraint on (study, key)
decides: the loser reads the winner's config and is refused if it differs (compare-and-set).
The winner then writes the GA record (the sizes, space and settings every worker's sampler
is checked against) from the same parsed config, the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.storages import BaseStorage

from optuna_nos.core.errors import NOSError
from optuna_nos.study.config import parse_config
from optuna_nos.study.stored import (
    CONFIG_ATTR,
    check_ga_record,
    ensure_ga_record,
    insert_study_attr_once,
    read_ga_record,
)

__all__ = ["create_configured_study", "write_config_once"]

#: Who a GA record refuses at set-up, in its error message.
_WHO = "this config"


def stored_config(storage: BaseStorage, study_id: int) -> Any:
    """The study's stored config (a JSON value), or None."""
    return storage.get_study_user_attrs(study_id).get(CONFIG_ATTR)


def _insert_config(storage: BaseStorage, study_id: int, text: str) -> bool:
    """Insert the config row; False if a row for the study already exists."""
    return insert_study_attr_once(storage, study_id, CONFIG_ATTR, json.loads(text), system=False)


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


def create_configured_study(
    storage: BaseStorage, name: str, raw: Mapping[str, Any], **study_kwargs: Any
) -> optuna.Study:
    """Load or create the maximizing study ``name`` and store its config, then its GA record
    (derived from the config), once each; a study whose GA record differs is refused.

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
        record = parse_config(raw).ga_record()
        recorded = read_ga_record(storage, study._study_id)
        if recorded is not None and CONFIG_ATTR not in study.user_attrs:
            # a study made in Python: refuse a config its sampler disagrees with before
            # the config is stored
            check_ga_record(name, recorded, record, _WHO)
        write_config_once(study, raw)
        ensure_ga_record(storage, study._study_id, name, record, _WHO)
    except BaseException:
        if created and stored_config(storage, study._study_id) is None:
            storage.delete_study(study._study_id)
        raise
    return study
