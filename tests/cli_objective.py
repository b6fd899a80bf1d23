"""A fast objective factory for CLI tests: fitness = -(sphere loss of the integrity check).

Used as ``objective.target = "cli_objective:fast"`` with ``tests/`` on PYTHONPATH.
"""

from __future__ import annotations

from typing import Any

import optuna

from optuna_nos.artifacts import upload_schedule_artifact
from optuna_nos.integrity import integrity_check
from optuna_nos.suggest import suggest_genome, trial_fidelity


def fast(config: Any) -> Any:
    def objective(trial: optuna.Trial) -> float:
        genome = suggest_genome(trial, config.space, config.settings)
        trial.set_user_attr("fidelity", trial_fidelity(trial))
        result = integrity_check(genome, config.settings)
        if config.artifact_dir:
            upload_schedule_artifact(trial, genome, config.artifact_dir, lr=0.1,
                                     total_steps=100, warmup_steps=10)
        return -float(result.loss if result.loss is not None else 1e9)

    return objective


def sleepy(config: Any) -> Any:
    """``fast``, but each trial first sleeps ``objective.sleep_s`` seconds (default 2.0).

    Reliability drills use it so that a signal or a server restart lands mid-trial; the user
    attr ``drill.started`` marks a trial whose objective is running.
    """
    import time

    sleep_s = float(config.objective_options.get("sleep_s", 2.0))
    inner = fast(config)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("drill.started", True)
        time.sleep(sleep_s)
        return float(inner(trial))

    return objective


def broken_disk(config: Any) -> Any:
    """``fast`` on a worker whose disk fails: every trial raises FileNotFoundError after its
    genome is placed (an infrastructure fault, not the genome's)."""

    def objective(trial: optuna.Trial) -> float:
        suggest_genome(trial, config.space, config.settings)
        raise FileNotFoundError(2, "No such file or directory", "/nonexistent/batch.npy")

    return objective
