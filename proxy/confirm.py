"""Confirm a record: a genome that would become the search's best is scored with a second seed.

A search keeps the best of N one-seed scores f_i = mu_i + e_i (seed noise e_i, sigma about
0.007 on MNIST-1D), so its best is biased upward by the luck of the winning seed. With
confirmation, a trial whose first fitness f1 beats the *incumbent* (the best completed value
at the same fidelity in the study) is trained again with a second seed, and its fitness is
the mean (f1 + f2) / 2, whose noise is sigma / sqrt(2). A trial at or below the incumbent
keeps f1: it cannot become the best, so its luck cannot mislead the selection. The cost is
one extra training per record, about ln N over N trials when scores are exchangeable.

A second run that fails the protocol (screen failure, non-finite fitness) scores 0.0: a
genome that trains on one seed only should not become the best.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from optuna_nos.study.stored import CONFIRM_ATTR
from optuna_nos.study.stored import FIDELITY_USER_ATTR as FIDELITY_ATTR
from proxy.fitness import Fidelity, ProxyTask, evaluate_genome, measure_fitness

__all__ = ["CONFIRM_ATTR", "FIDELITY_ATTR", "confirmed_fitness", "evaluate_confirmed", "incumbent"]


def incumbent(trials: Sequence[Any], fidelity: str) -> float | None:
    """The best finite value among completed ``trials`` whose ``fidelity`` attr matches."""
    from optuna.trial import TrialState

    values = [
        t.value
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.user_attrs.get(FIDELITY_ATTR) == fidelity
        and t.value is not None
        and math.isfinite(t.value)
    ]
    return max(values) if values else None


def confirmed_fitness(
    first: float, best: float | None, rescore: Callable[[], float]
) -> tuple[float, tuple[float, ...]]:
    """(fitness, scores): ``first`` alone when it does not beat ``best``; else the mean of
    ``first`` and ``rescore()`` (called once). ``best`` None: nothing to beat, a record."""
    if best is not None and not first > best:
        return first, (first,)
    second = rescore()
    return (first + second) / 2.0, (first, second)


def evaluate_confirmed(
    genome: Any, task: ProxyTask, fidelity: str | Fidelity, trial: Any
) -> float:
    """:func:`proxy.fitness.evaluate_genome` for ``trial``, then :func:`confirmed_fitness`
    against the study's incumbent at that fidelity. The second seed derives from the trial's
    evaluation seed; the scores go to the ``nos.confirm_scores`` user attr."""
    from optuna.trial import TrialState

    name = fidelity if isinstance(fidelity, str) else fidelity.name
    trial.set_user_attr(FIDELITY_ATTR, name)
    first = evaluate_genome(genome, task, fidelity, trial=trial)
    finished = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def rescore() -> float:
        seed = int(
            np.random.SeedSequence([task.evaluation_seed(trial.number), 1]).generate_state(1)[0]
        )
        result = measure_fitness(genome, task, fidelity, seed=seed)
        value = result.fitness
        return value if not result.failed and value is not None and math.isfinite(value) else 0.0

    fitness, scores = confirmed_fitness(first, incumbent(finished, name), rescore)
    trial.set_user_attr(CONFIRM_ATTR, list(scores))
    return fitness
