"""Confirming records with a second seed (proxy.confirm): which trials are re-scored, what
they score, and the incumbent they must beat, in a real Optuna study."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

import proxy.confirm as confirm
from proxy.confirm import CONFIRM_ATTR, confirmed_fitness, evaluate_confirmed, incumbent
from proxy.fitness import FitnessResult


def _no_rescore() -> float:
    raise AssertionError("a trial that cannot become the best was re-scored")


def test_a_record_is_rescored_and_averaged() -> None:
    calls: list[int] = []

    def rescore() -> float:
        calls.append(1)
        return 0.90

    assert confirmed_fitness(0.96, 0.95, rescore) == (pytest.approx(0.93), (0.96, 0.90))
    assert confirmed_fitness(0.70, None, rescore) == (pytest.approx(0.80), (0.70, 0.90))
    assert len(calls) == 2


@pytest.mark.parametrize("first", [0.95, 0.94])
def test_a_score_at_or_below_the_incumbent_is_kept(first: float) -> None:
    assert confirmed_fitness(first, 0.95, _no_rescore) == (first, (first,))


def test_incumbent_is_the_best_completed_value_of_the_fidelity() -> None:
    def trial(
        value: float | None,
        fidelity: str,
        state: optuna.trial.TrialState = optuna.trial.TrialState.COMPLETE,
    ) -> Any:
        return optuna.trial.create_trial(
            value=value, state=state, user_attrs={"fidelity": fidelity}
        )

    trials = [
        trial(0.99, "init"),
        trial(0.90, "evolution"),
        trial(0.80, "evolution"),
        trial(None, "evolution", optuna.trial.TrialState.PRUNED),
    ]
    assert incumbent(trials, "evolution") == 0.90
    assert incumbent(trials, "init") == 0.99
    assert incumbent(trials[3:], "evolution") is None


def test_objective_confirms_only_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripted first scores 0.5, 0.4, 0.7, 0.3 and second scores 0.3, then a failed run:
    trials 0 and 2 are records (2 falls to 0.35 once its second run fails), 1 ties the
    incumbent 0.4 and 3 is below it."""
    firsts = iter([0.5, 0.4, 0.7, 0.3])
    seconds = iter([FitnessResult(0.3, None, 0.1), FitnessResult(None, "screen failed", None)])
    second_seeds: list[int] = []

    def first_score(genome: Any, task: Any, fidelity: Any, *, trial: Any) -> float:
        return next(firsts)

    def second_score(genome: Any, task: Any, fidelity: Any, *, seed: int) -> FitnessResult:
        second_seeds.append(seed)
        return next(seconds)

    class Task:
        def evaluation_seed(self, number: int) -> int:
            return 100 + number

    monkeypatch.setattr(confirm, "evaluate_genome", first_score)
    monkeypatch.setattr(confirm, "measure_fitness", second_score)
    study = optuna.create_study(direction="maximize")
    task: Any = Task()
    study.optimize(lambda trial: evaluate_confirmed(None, task, "evolution", trial), n_trials=4)
    values = [t.value for t in study.trials]
    assert values == pytest.approx([0.4, 0.4, 0.35, 0.3])
    assert [t.user_attrs[CONFIRM_ATTR] for t in study.trials] == [
        [0.5, 0.3],
        [0.4],
        [0.7, 0.0],
        [0.3],
    ]
    assert len(second_seeds) == 2 and not {100, 102} & set(second_seeds)
