"""What optuna-nos keeps in a study's storage: every attr name, the genome reader, the GA record.

Workers share no process and no coordinator: everything one worker tells another travels as
Optuna attrs of the study and its trials. This module is the one place that names them.

System attrs (``nos:*``) are machine state; user attrs are for people and dashboards.

==========================  =======  ========================================================
Name                        Where    Value
==========================  =======  ========================================================
``nos:slot``                trial    the slot a trial claims or holds (``init 7``, ``p3 s0``,
                                     ``p3 s2 c4``), None when it holds none
``nos:ga``                  trial    the trial's lineage: slot, particle, step, child,
                                     parent, equation, behaviour key, mutation
``nos:genome``              trial    the full genome as versioned JSON
``nos:fidelity``            trial    ``"init"`` or ``"evolution"``: what to train at
``nos:idle``                trial    why the sampler has no work for the trial
``nos:worker``              trial    ``host:pid:token`` of the worker that runs it
``nos:beat``                trial    heartbeat counter of a worker behind the gRPC proxy
``nos:fault``               trial    ``"infrastructure"``: failed for its worker, not genome
``nos:recipe``              trial    how the objective trained the genome (lr, steps, ...)
``nos:screen``              trial    the proxy's learning-rate screen summary
``nos:final``               trial    the proxy's final training run
``nos:ga_config``           study    the GA record (:func:`ga_record`), written once: by
                                     ``optuna-nos init`` from the config, or by the first
                                     ParticleSampler of a study made in Python
``nos:encoding``            study    the param encoding version of the genome params
``nos.config``              study    the validated TOML configuration of ``optuna-nos init``
                                     (its GA part is also the GA record; read that)
``nos.baselines``           study    the baselines' scores (present once they are scored)
``best equation``           study    the leaderboard's best genome and its fitness, for the
``best fitness``                     dashboard
(study ``<s>:baselines``)   storage  a marker study: one worker claimed the baselines
``nos.reason``              trial    why a trial was pruned, failed or interrupted
``nos.confirm_scores``      trial    the scores of a confirmation run, one per seed
``slot`` ``particle``       trial    lineage copies for browsing (of ``nos:ga``)
``step`` ``parent``
``mutation``
``fidelity``                trial    copy of ``nos:fidelity`` (or a confirmation's name)
``equation``                trial    the genome in paper notation, ``equation_readable``
``equation_readable``                in readable notation, and its ``flip``
``flip``
``lr``                      trial    the learning rate the objective trained with
``genome``                  trial    genome JSON of studies made before ``nos:genome``
``fixed_params``            trial    Optuna's own: the params of an enqueued trial
==========================  =======  ========================================================
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from optuna_nos.core.errors import NOSError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

    from optuna_nos.core.settings import Settings
    from optuna_nos.space.genome import Genome
    from optuna_nos.study.config import GAConfig

__all__ = [
    "BASELINES_ATTR",
    "BASELINES_MARKER_SUFFIX",
    "BEAT_ATTR",
    "BEST_EQUATION_ATTR",
    "BEST_FITNESS_ATTR",
    "CONFIG_ATTR",
    "CONFIRM_ATTR",
    "ENCODING_ATTR",
    "EQUATION_ATTR",
    "EQUATION_READABLE_ATTR",
    "FAULT_ATTR",
    "FIDELITY_ATTR",
    "FIDELITY_USER_ATTR",
    "FINAL_ATTR",
    "FIXED_PARAMS_ATTR",
    "FLIP_ATTR",
    "GA_ATTR",
    "GA_CONFIG_ATTR",
    "GA_RECORD_VERSION",
    "GENOME_ATTR",
    "IDLE_ATTR",
    "INFRASTRUCTURE",
    "LEGACY_GENOME_ATTR",
    "LINEAGE_ATTRS",
    "LR_ATTR",
    "MUTATION_ATTR",
    "PARENT_ATTR",
    "PARTICLE_ATTR",
    "REASON_ATTR",
    "RECIPE_ATTR",
    "SCREEN_ATTR",
    "SLOT_ATTR",
    "SLOT_USER_ATTR",
    "STEP_ATTR",
    "WORKER_ATTR",
    "check_ga_record",
    "ensure_ga_record",
    "ga_record",
    "insert_study_attr_once",
    "read_ga_record",
    "search_record",
    "trial_genome",
    "write_ga_record",
]

# -- trial system attrs ---------------------------------------------------------------------
SLOT_ATTR = "nos:slot"
GA_ATTR = "nos:ga"
GENOME_ATTR = "nos:genome"
FIDELITY_ATTR = "nos:fidelity"
IDLE_ATTR = "nos:idle"
WORKER_ATTR = "nos:worker"
BEAT_ATTR = "nos:beat"
FAULT_ATTR = "nos:fault"
#: The value of ``nos:fault`` on a trial that failed for its worker's environment.
INFRASTRUCTURE = "infrastructure"
RECIPE_ATTR = "nos:recipe"
#: Optuna's own attr: the params of an enqueued trial.
FIXED_PARAMS_ATTR = "fixed_params"
SCREEN_ATTR = "nos:screen"
FINAL_ATTR = "nos:final"

# -- study attrs ----------------------------------------------------------------------------
GA_CONFIG_ATTR = "nos:ga_config"
ENCODING_ATTR = "nos:encoding"
CONFIG_ATTR = "nos.config"
BASELINES_ATTR = "nos.baselines"
#: The study that marks a claim to score the baselines: ``<study>:baselines``.
BASELINES_MARKER_SUFFIX = ":baselines"
BEST_EQUATION_ATTR = "best equation"
BEST_FITNESS_ATTR = "best fitness"

# -- trial user attrs -----------------------------------------------------------------------
REASON_ATTR = "nos.reason"
CONFIRM_ATTR = "nos.confirm_scores"
SLOT_USER_ATTR = "slot"
PARTICLE_ATTR = "particle"
STEP_ATTR = "step"
PARENT_ATTR = "parent"
MUTATION_ATTR = "mutation"
FIDELITY_USER_ATTR = "fidelity"
EQUATION_ATTR = "equation"
EQUATION_READABLE_ATTR = "equation_readable"
FLIP_ATTR = "flip"
LR_ATTR = "lr"
LEGACY_GENOME_ATTR = "genome"
#: The lineage keys of ``nos:ga`` copied into user attrs for browsing.
LINEAGE_ATTRS = (SLOT_USER_ATTR, PARTICLE_ATTR, STEP_ATTR, PARENT_ATTR, MUTATION_ATTR)


def trial_genome(trial: FrozenTrial) -> Genome | None:
    """The trial's full genome (``nos:genome``, or the older user attr ``genome``), or None
    when it carries none."""
    from optuna_nos.space.genome import Genome

    text = trial.system_attrs.get(GENOME_ATTR, trial.user_attrs.get(LEGACY_GENOME_ATTR))
    return Genome.from_json(text) if isinstance(text, str) else None


# -- the GA record --------------------------------------------------------------------------

#: Version of the GA record's layout; a record without ``version`` is version 1.
GA_RECORD_VERSION = 1
#: Record keys that may differ between workers of one study (each worker seeds itself).
_PER_WORKER = ("version", "seed")


def ga_record(
    sizes: Mapping[str, Any], seed: int | None, space: str, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The GA record: ``{"version", <sizes>, "seed", "space", "settings"}``, where ``space``
    is the resolved search-space variant and ``settings`` the behaviour switches."""
    return {
        "version": GA_RECORD_VERSION,
        **sizes,
        "seed": seed,
        "space": space,
        "settings": dict(settings),
    }


def search_record(sizes: GAConfig, space: str, settings: Settings) -> dict[str, Any]:
    """The GA record of a search: the sizes and seed of ``sizes``, the resolved ``space`` and
    every field of ``settings``. The config and the sampler both build theirs here."""
    return ga_record(sizes.to_dict(), sizes.seed, space, dataclasses.asdict(settings))


def read_ga_record(storage: BaseStorage, study_id: int) -> Mapping[str, Any] | None:
    """The study's GA record, or None before ``optuna-nos init`` or a ParticleSampler wrote
    it."""
    record = storage.get_study_system_attrs(study_id).get(GA_CONFIG_ATTR)
    if record is None:
        return None
    version = record.get("version", 1) if isinstance(record, dict) else None
    if version != GA_RECORD_VERSION:
        raise NOSError(
            f"the study's GA record has format version {version!r}; this "
            f"optuna-nos reads version {GA_RECORD_VERSION}"
        )
    return record


def insert_study_attr_once(
    storage: BaseStorage, study_id: int, key: str, value: Any, *, system: bool
) -> bool:
    """Insert the study attr ``key``; False if the study already holds one.

    On a database the row is inserted and the unique constraint on (study, key) decides
    between concurrent writers: exactly one wins. Another storage (in memory, or the gRPC
    proxy) is read and then written.
    """
    import sqlalchemy
    import sqlalchemy.exc
    from optuna.storages import RDBStorage
    from optuna.storages._rdb.models import StudySystemAttributeModel, StudyUserAttributeModel

    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, RDBStorage):
        attrs = (
            storage.get_study_system_attrs(study_id)
            if system
            else storage.get_study_user_attrs(study_id)
        )
        if key in attrs:
            return False
        setter = storage.set_study_system_attr if system else storage.set_study_user_attr
        setter(study_id, key, value)
        return True
    model = StudySystemAttributeModel if system else StudyUserAttributeModel
    try:
        with backend.engine.begin() as connection:
            connection.execute(
                sqlalchemy.insert(model.__table__).values(
                    study_id=study_id, key=key, value_json=json.dumps(value, sort_keys=True)
                )
            )
    except sqlalchemy.exc.IntegrityError:
        return False
    return True


def write_ga_record(
    storage: BaseStorage, study_id: int, record: Mapping[str, Any]
) -> Mapping[str, Any]:
    """Store ``record`` as the study's GA record unless it holds one (the first writer
    wins); the record the study holds afterwards."""
    insert_study_attr_once(storage, study_id, GA_CONFIG_ATTR, dict(record), system=True)
    stored = read_ga_record(storage, study_id)
    if stored is None:
        raise NOSError("the study's GA record could not be stored")
    return stored


def ensure_ga_record(
    storage: BaseStorage, study_id: int, study_name: str, mine: Mapping[str, Any], who: str
) -> Mapping[str, Any]:
    """The study's GA record, written from ``mine`` when it holds none; refuses ``mine``
    (see :func:`check_ga_record`) when the record differs."""
    recorded = read_ga_record(storage, study_id)
    if recorded is None:
        recorded = write_ga_record(storage, study_id, mine)
    check_ga_record(study_name, recorded, mine, who)
    return recorded


def check_ga_record(
    study_name: str,
    recorded: Mapping[str, Any],
    mine: Mapping[str, Any],
    who: str = "this worker's ParticleSampler",
) -> None:
    """Refuse ``who`` (a worker's sampler, a config) when its GA (sizes, space, settings)
    differs from the study's record; only the seed may differ."""
    for key, value in mine.items():
        if key not in _PER_WORKER and recorded.get(key) != value:
            raise NOSError(
                f"{who} has {key}={value!r} but study {study_name!r} runs with "
                f"{key}={recorded.get(key)!r}"
            )
