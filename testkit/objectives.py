"""Fast objective factories for CLI tests: fitness = -(sphere loss of the integrity check).

Used as ``objective.target = "testkit.objectives:fast"`` (see
:func:`testkit.config.objective_table`).
"""

from __future__ import annotations

from typing import Any

import optuna

from optuna_nos.optim.integrity import integrity_check
from optuna_nos.study.artifacts import upload_schedule_artifact
from optuna_nos.study.stored import FIDELITY_USER_ATTR, LR_ATTR, REASON_ATTR
from optuna_nos.study.suggest import suggest_genome, trial_fidelity


def fast(config: Any) -> Any:
    def objective(trial: optuna.Trial) -> float:
        genome = suggest_genome(trial, config.variant, config.settings)
        trial.set_user_attr(FIDELITY_USER_ATTR, trial_fidelity(trial))
        result = integrity_check(genome, config.settings)
        if config.artifact_dir:
            upload_schedule_artifact(
                trial, genome, config.artifact_dir, lr=0.1, total_steps=100, warmup_steps=10
            )
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
        trial.set_user_attr(LR_ATTR, 0.1)
        if self.config.artifact_dir:
            upload_schedule_artifact(
                trial, genome, self.config.artifact_dir, lr=0.1, total_steps=100, warmup_steps=10
            )
        loss = self._loss(genome)
        if loss > 1.0:
            reason = f"sphere loss {loss:.3g} above 1"
            trial.set_user_attr(REASON_ATTR, reason)
            raise optuna.TrialPruned(reason)
        return -loss

    def evaluate_baseline(self, name: str, fidelity: str) -> float:
        from optuna_nos.space.parse import parse_equation
        from proxy.tasks import BASELINES

        return -self._loss(parse_equation(BASELINES[name]))


def showcase(config: Any) -> Any:
    return _Showcase(config)


class FastPacked:
    """``fast`` as a packed objective (``worker --pack K``): each trial of a pack is scored
    and told in turn. With ``objective.held_file`` set, the numbers of the trials a pack
    holds are written there (one pack per line) and ``objective.sleep_s`` seconds pass before
    any is told, so a test can kill the worker while it holds them."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.score = fast(config)
        self.held_file = config.objective_options.get("held_file")
        self.sleep_s = float(config.objective_options.get("sleep_s", 0.0))

    def __call__(self, trial: optuna.Trial) -> float:
        return float(self.score(trial))

    def evaluate_pack(self, pack: Any) -> None:
        import time

        genomes = {}
        for trial in pack.trials:
            try:
                genomes[trial.number] = suggest_genome(
                    trial, self.config.space, self.config.settings
                )
            except optuna.TrialPruned as exc:
                pack.prune(trial, str(exc))
        if self.held_file and genomes:
            with open(self.held_file, "a") as out:
                out.write(" ".join(str(n) for n in genomes) + "\n")
            time.sleep(self.sleep_s)
        for trial in pack.undecided:
            result = integrity_check(genomes[trial.number], self.config.settings)
            pack.complete(trial, -float(result.loss if result.loss is not None else 1e9))

    def auto_pack(self) -> int:
        return 2


def fast_packed(config: Any) -> FastPacked:
    return FastPacked(config)


def broken_disk(config: Any) -> Any:
    """``fast`` on a worker whose disk fails: every trial raises FileNotFoundError after its
    genome is placed (an infrastructure fault, not the genome's)."""

    def objective(trial: optuna.Trial) -> float:
        suggest_genome(trial, config.space, config.settings)
        raise FileNotFoundError(2, "No such file or directory", "/nonexistent/batch.npy")

    return objective
