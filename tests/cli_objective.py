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
        genome = suggest_genome(trial, config.variant, config.settings)
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


class _Showcase:
    """``fast``, with a prune (and its reason) for every genome whose loss exceeds 1, and two
    baselines scored the same way: a small study with every kind of trial for the dashboard."""

    baselines = ("adam", "sgd_nesterov")

    def __init__(self, config: Any) -> None:
        self.config = config

    def _loss(self, genome: Any) -> float:
        result = integrity_check(genome, self.config.settings)
        return float(result.loss if result.loss is not None else 1e9)

    def __call__(self, trial: optuna.Trial) -> float:
        genome = suggest_genome(trial, self.config.space, self.config.settings)
        trial.set_user_attr("lr", 0.1)
        if self.config.artifact_dir:
            upload_schedule_artifact(trial, genome, self.config.artifact_dir, lr=0.1,
                                     total_steps=100, warmup_steps=10)
        loss = self._loss(genome)
        if loss > 1.0:
            reason = f"sphere loss {loss:.3g} above 1"
            trial.set_user_attr("nos.reason", reason)
            raise optuna.TrialPruned(reason)
        return -loss

    def evaluate_baseline(self, name: str, fidelity: str) -> float:
        from optuna_nos.space.parse import parse_equation
        from proxy.tasks import BASELINES

        return -self._loss(parse_equation(BASELINES[name]))


def showcase(config: Any) -> Any:
    return _Showcase(config)
