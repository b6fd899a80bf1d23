"""``optuna-nos worker --pack K`` on PostgreSQL, as users run it: real worker processes.

Two packed workers finish a search with every slot decided once; a worker killed (SIGKILL)
while it holds a pack leaves exactly the trials of that pack to be retried.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import warnings
from pathlib import Path

import optuna
import pytest

from optuna_nos.sampler import SLOT_ATTR, ParticleSampler
from optuna_nos.study.storage import make_storage, normalize_url
from testkit.config import ga_table, objective_table, workers_table
from testkit.process import cli_command, cli_env, run_cli

CONFIG = (
    ga_table(init_factor=3, mutations=3)
    + objective_table("fast_packed")
    + "{options}\n"
    + workers_table(1, 3, 2)
)

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def _init(url: str, tmp_path: Path, options: str = "") -> None:
    config = tmp_path / "packed.toml"
    config.write_text(CONFIG.format(options=options))
    done = run_cli(
        "init", "--storage", url, "--study", "packed", "--config", str(config), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr


def _worker(url: str, tmp_path: Path, pack: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_command("worker", "--storage", url, "--study", "packed", "--pack", pack),
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name="packed", storage=normalize_url(url))


def _sampler() -> ParticleSampler:
    return ParticleSampler(n_particles=2, init_factor=3, steps=1, mutations=3, max_redraws=2)


def test_two_packed_workers_decide_every_slot_once(postgres_url: str, tmp_path: Path) -> None:
    _init(postgres_url, tmp_path)
    workers = [_worker(postgres_url, tmp_path, "3") for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert "packed worker: 3 trials at a time" in err
    study = _study(postgres_url)
    sampler = _sampler()
    assert sampler.is_finished(study)
    trials = study.get_trials(deepcopy=False)
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
    completed = [
        t.system_attrs[SLOT_ATTR] for t in trials if t.state == optuna.trial.TrialState.COMPLETE
    ]
    # Every slot completed (two racing claims may both keep one: an extra attempt, by design).
    assert len(set(completed)) == sampler.n_slots


def test_killed_packed_worker_leaves_exactly_its_pack_to_retry(
    postgres_url: str, tmp_path: Path
) -> None:
    held_file = tmp_path / "held.txt"
    _init(postgres_url, tmp_path, f'held_file = "{held_file}"\nsleep_s = 600')
    worker = _worker(postgres_url, tmp_path, "3")
    deadline = time.monotonic() + 120
    while not held_file.exists() or not held_file.read_text().endswith("\n"):
        assert worker.poll() is None, worker.communicate()[1]
        assert time.monotonic() < deadline, "the worker never held a pack"
        time.sleep(0.2)
    held = sorted(int(n) for n in held_file.read_text().split())
    assert len(held) == 3
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate(timeout=30)
    study = _study(postgres_url)
    running = [
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.RUNNING
    ]
    assert sorted(running) == held
    time.sleep(4)  # past the grace period
    with_heartbeat = make_storage(postgres_url, heartbeat_interval=1, grace_period=3, max_retry=2)
    study = optuna.load_study(study_name="packed", storage=with_heartbeat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    failed = sorted(t.number for t in trials if t.state == optuna.trial.TrialState.FAIL)
    retried = sorted(
        t.system_attrs["failed_trial"]
        for t in trials
        if t.state == optuna.trial.TrialState.WAITING
    )
    assert failed == held and retried == held
