"""DivergencePruner: non-finite values, collapse to chance after a warm-up, a wrapped pruner."""

from __future__ import annotations

import math
from typing import Literal

import optuna
import pytest
from optuna.trial import TrialState

from optuna_nos import DivergencePruner
from optuna_nos.core.errors import NOSError
from optuna_nos.study.pruners import REASON_ATTR

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _run(
    pruner: optuna.pruners.BasePruner,
    reports: list[float],
    *,
    direction: Literal["minimize", "maximize"] = "maximize",
) -> optuna.trial.FrozenTrial:
    """One trial reporting ``reports`` in order, stopping when the pruner says so."""
    study = optuna.create_study(direction=direction, pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        for step, value in enumerate(reports):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return reports[-1]

    study.optimize(objective, n_trials=1)
    return study.trials[0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_pruned_at_once(bad: float) -> None:
    trial = _run(DivergencePruner(n_warmup_steps=5), [0.3, bad, 0.5])
    assert trial.state == TrialState.PRUNED
    assert trial.last_step == 1
    assert trial.user_attrs[REASON_ATTR].startswith("non-finite intermediate value")


def test_collapse_to_chance_is_pruned_after_the_warm_up_only() -> None:
    pruner = DivergencePruner(n_warmup_steps=2, chance_level=0.1, margin=0.02)
    trial = _run(pruner, [0.10, 0.11, 0.12, 0.5])
    assert trial.state == TrialState.PRUNED and trial.last_step == 2
    assert "collapsed to chance level at step 2" in trial.user_attrs[REASON_ATTR]


def test_values_above_chance_plus_margin_survive() -> None:
    pruner = DivergencePruner(n_warmup_steps=0, chance_level=0.1, margin=0.02)
    trial = _run(pruner, [0.1201, 0.5, 0.9])
    assert trial.state == TrialState.COMPLETE and REASON_ATTR not in trial.user_attrs


def test_a_minimized_loss_collapses_upwards() -> None:
    chance = math.log(10.0)  # cross-entropy of a uniform guess over ten classes
    pruner = DivergencePruner(n_warmup_steps=1, chance_level=chance, margin=0.05)
    kept = _run(pruner, [2.5, 1.9, 1.2], direction="minimize")
    assert kept.state == TrialState.COMPLETE
    pruned = _run(pruner, [2.5, 2.28, 1.2], direction="minimize")
    assert pruned.state == TrialState.PRUNED and pruned.last_step == 1


def test_without_a_chance_level_only_divergence_prunes() -> None:
    trial = _run(DivergencePruner(n_warmup_steps=0), [0.0, 0.0, 0.0])
    assert trial.state == TrialState.COMPLETE


class _PruneAtStep(optuna.pruners.BasePruner):
    def __init__(self, step: int) -> None:
        self.step = step

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.last_step == self.step


def test_a_wrapped_pruner_decides_otherwise_and_its_prune_is_explained() -> None:
    trial = _run(DivergencePruner(_PruneAtStep(2)), [0.5, 0.6, 0.7, 0.8])
    assert trial.state == TrialState.PRUNED and trial.last_step == 2
    assert trial.user_attrs[REASON_ATTR] == "pruned by _PruneAtStep at step 2"


def test_divergence_wins_over_the_wrapped_pruner() -> None:
    trial = _run(DivergencePruner(_PruneAtStep(1)), [0.5, math.nan, 0.7])
    assert trial.user_attrs[REASON_ATTR].startswith("non-finite")


def test_a_wrapped_median_pruner_works_across_trials() -> None:
    study = optuna.create_study(
        direction="maximize",
        pruner=DivergencePruner(optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)),
    )
    curves = [[0.5, 0.6], [0.5, 0.6], [0.1, 0.2]]

    def objective(trial: optuna.Trial) -> float:
        for step, value in enumerate(curves[trial.number]):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return curves[trial.number][-1]

    study.optimize(objective, n_trials=3)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED]
    assert study.trials[2].user_attrs[REASON_ATTR] == "pruned by MedianPruner at step 0"


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"n_warmup_steps": -1}, "n_warmup_steps"),
        ({"n_warmup_steps": 1.5}, "n_warmup_steps"),
        ({"chance_level": math.nan}, "chance_level"),
        ({"margin": -0.1}, "margin"),
        ({"wrapped": "median"}, "wrapped"),
    ],
)
def test_bad_arguments_name_the_value(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(NOSError, match=name):
        DivergencePruner(**kwargs)  # type: ignore[arg-type]
