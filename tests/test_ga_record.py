"""The GA record: written once when a study is set up, read by every worker and reader.

``optuna-nos init`` writes it from the config before any worker runs; a study made in Python
gets it from its first ParticleSampler. Either way the first writer wins and every later
sampler is checked against it (only the seed may differ).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from optuna_nos import suggest_genome
from optuna_nos.cli.commands import main
from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import Settings
from optuna_nos.sampler import ParticleSampler
from optuna_nos.study.storage import make_storage
from optuna_nos.study.stored import (
    CONFIG_ATTR,
    insert_study_attr_once,
    read_ga_record,
    write_ga_record,
)
from testkit.config import FAST_SIZES, ga_table, objective_table, workers_table
from transfer.optimizers import trial_spec

#: The record of FAST_SIZES, seed 0, the paper space and paper mode, written out by hand.
PAPER_MODE_RECORD = {
    "version": 1,
    "n_particles": 2,
    "init_factor": 2,
    "steps": 1,
    "mutations": 2,
    "max_redraws": 2,
    "elitism": False,
    "seed": 0,
    "space": "paper",
    "settings": {"paper_mode": True, "unary_root_decay_prob": 0.85, "change_op_max_unary": 23},
}


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(
        "[study]\npaper_mode = true\n"
        + ga_table(seed=0)
        + workers_table(2, 5, 2)
        + objective_table("fast")
    )
    return path


def _init(storage: str, config: Path) -> int:
    return main(["init", "--storage", storage, "--study", "s", "--config", str(config)])


def _record(storage: str) -> Any:
    backend = make_storage(storage)
    return read_ga_record(backend, backend.get_study_id_from_name("s"))


def test_init_stores_the_ga_record_before_any_worker(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    assert _init(storage, _config(tmp_path)) == 0
    assert _record(storage) == PAPER_MODE_RECORD
    assert optuna.load_study(study_name="s", storage=storage).trials == []


def test_a_worker_that_disagrees_is_refused_in_one_line(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    assert _init(storage, _config(tmp_path)) == 0
    paper = Settings(paper_mode=True)
    for kwargs, fragment in (
        ({"n_particles": 3}, "n_particles=3"),
        ({"space": "adam_variants"}, "space='adam_variants'"),
        ({"settings": Settings()}, "'paper_mode': False"),
    ):
        sampler = ParticleSampler(**{**FAST_SIZES, "settings": paper, **kwargs})  # type: ignore[arg-type]
        study = optuna.load_study(study_name="s", storage=storage, sampler=sampler)
        with pytest.raises(NOSError) as refused:
            study.ask()
        message = str(refused.value)
        assert "\n" not in message and fragment in message and "'s'" in message
    other_seed = ParticleSampler(**FAST_SIZES, seed=7, settings=paper)  # type: ignore[arg-type]
    optuna.load_study(study_name="s", storage=storage, sampler=other_seed).ask()
    assert _record(storage) == PAPER_MODE_RECORD


def test_init_refuses_a_config_that_disagrees_with_a_python_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    sampler = ParticleSampler(**{**FAST_SIZES, "n_particles": 3})  # type: ignore[arg-type]
    optuna.create_study(
        study_name="s", storage=storage, direction="maximize", sampler=sampler
    ).ask()
    assert _init(storage, _config(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "this config has n_particles=2" in err
    study = optuna.load_study(study_name="s", storage=storage)
    assert CONFIG_ATTR not in study.user_attrs
    assert _record(storage)["n_particles"] == 3


def test_a_python_study_gets_its_record_from_its_first_sampler(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    paper = Settings(paper_mode=True)
    first = ParticleSampler(**FAST_SIZES, seed=0, settings=paper)  # type: ignore[arg-type]
    study = optuna.create_study(
        study_name="s", storage=storage, direction="maximize", sampler=first
    )
    assert _record(storage) is None
    trial = study.ask()
    study.tell(trial, 1.0)
    assert _record(storage) == PAPER_MODE_RECORD
    second = ParticleSampler(**FAST_SIZES, seed=9, settings=paper)  # type: ignore[arg-type]
    optuna.load_study(study_name="s", storage=storage, sampler=second).ask()
    assert _record(storage)["seed"] == 0


def test_a_sampler_made_from_a_record_writes_the_same_record(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(
        study_name="s",
        storage=storage,
        direction="maximize",
        sampler=ParticleSampler.from_ga_record(PAPER_MODE_RECORD),
    )
    study.ask()
    assert _record(storage) == PAPER_MODE_RECORD


def test_the_first_writer_of_the_record_wins() -> None:
    study = optuna.create_study()
    storage, study_id = study._storage, study._study_id
    first, second = ({**PAPER_MODE_RECORD, "n_particles": n} for n in (4, 5))
    assert write_ga_record(storage, study_id, first) == first
    assert write_ga_record(storage, study_id, second) == first
    assert insert_study_attr_once(storage, study_id, "k", 1, system=True)
    assert not insert_study_attr_once(storage, study_id, "k", 2, system=True)
    assert storage.get_study_system_attrs(study_id)["k"] == 1


@pytest.mark.postgres
def test_racing_writers_store_one_record(postgres_url: str) -> None:
    backend = make_storage(postgres_url)
    study_id = backend.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "s")
    start = threading.Barrier(6, timeout=30)
    returned: list[Any] = []

    def write(n_particles: int) -> None:
        storage = make_storage(postgres_url)
        start.wait()
        returned.append(
            write_ga_record(storage, study_id, {**PAPER_MODE_RECORD, "n_particles": n_particles})
        )

    threads = [threading.Thread(target=write, args=(n,)) for n in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(returned) == 6
    assert all(record == returned[0] for record in returned)
    assert read_ga_record(backend, study_id) == returned[0]


def test_trial_spec_runs_the_genome_with_the_study_settings(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    sampler = ParticleSampler.from_ga_record(PAPER_MODE_RECORD)
    study = optuna.create_study(
        study_name="s", storage=storage, direction="maximize", sampler=sampler
    )
    trial = study.ask()
    suggest_genome(trial)
    study.tell(trial, 1.0)
    spec = trial_spec(storage, "s", trial.number)
    optimizer = spec.factory([torch.nn.Parameter(torch.zeros(2))], lr=0.1, total_steps=10)
    assert optimizer._settings == Settings(paper_mode=True)  # type: ignore[attr-defined]


def test_a_worker_of_a_study_set_up_before_records_writes_one(tmp_path: Path) -> None:
    """A study whose config was stored without a GA record (older ``init``s) still runs: its
    first worker's sampler, built from the config, writes the record."""
    from optuna_nos.study.config import load_config
    from optuna_nos.study.study_setup import write_config_once

    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    write_config_once(study, load_config(_config(tmp_path)).raw)
    assert _record(storage) is None
    assert main(["worker", "--storage", storage, "--study", "s", "--n-trials", "1"]) == 0
    assert _record(storage) == PAPER_MODE_RECORD
