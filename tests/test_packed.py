"""Packed candidates: many genomes x learning rates trained as one stacked model equal the
same runs trained alone (a plain ConvNet + GenomeOptimizer, float64), and one diverging or
pruned candidate leaves its stack-mates untouched."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_fitness import _reference_run, _spec

from optuna_nos.space.parse import parse_equation
from proxy.data import load_digits
from proxy.fitness import DIGITS_FITNESS, ProxyTask, measure_fitness
from proxy.packed import measure_pack, pack_seeds
from proxy.screen import Candidate, RunSeeds, train_packed

GENOMES = [
    "None ~ (v hat) / (sqrt(|s hat|))",
    "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))",
    "None ~ norm([sqrt(a6)][(lam hat)+(((1-0.7)*g+0.7*v hat))])",  # needs per-tensor layout
]


@pytest.fixture(scope="module")
def digits_data():  # type: ignore[no-untyped-def]
    return load_digits()


def _candidates(data_seed: int) -> list[Candidate]:
    return [
        Candidate(parse_equation(eq), replace(RunSeeds.derive(100 + i), data=data_seed))
        for i, eq in enumerate(GENOMES)
    ]


def test_packed_genomes_equal_their_lone_runs(digits_data) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(digits_data, parse_equation(GENOMES[0]))
    candidates = _candidates(data_seed=7)
    lrs = [[1e-1, 1e-2], [1e-2], [1e-1, 1e-3]]
    results = train_packed(spec, list(zip(candidates, lrs, strict=True)))
    for candidate, candidate_lrs, runs in zip(candidates, lrs, results, strict=True):
        for lr, run in zip(candidate_lrs, runs, strict=True):
            _, accuracies = _reference_run(
                replace(spec, genome=candidate.genome), lr, candidate.seeds
            )
            assert run.lr == lr and run.train_acc == accuracies and run.stop is None


def test_a_diverging_candidate_leaves_its_stack_mates_alone(digits_data) -> None:  # type: ignore[no-untyped-def]
    # eta_0 = 1e308 (no warmup) overflows candidate 0's activations: NaN loss at step 1.
    spec = _spec(
        digits_data, parse_equation(GENOMES[0]), warmup_steps=0, epochs=2, steps_per_epoch=3
    )
    first, second, _ = _candidates(data_seed=3)
    broken, healthy = train_packed(spec, [(first, [1e308]), (second, [1e-2, 1e-1])])
    assert broken[0].stop == "non-finite loss at step 1" and broken[0].train_acc == []
    for lr, run in zip([1e-2, 1e-1], healthy, strict=True):
        _, accuracies = _reference_run(replace(spec, genome=second.genome), lr, second.seeds)
        assert run.train_acc == accuracies and run.stop is None


def test_a_pruned_candidate_leaves_its_stack_mates_alone(digits_data) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(digits_data, parse_equation(GENOMES[0]), epochs=3, steps_per_epoch=2)
    first, second, _ = _candidates(data_seed=5)
    pruned, kept = train_packed(
        spec,
        [(first, [1e-2]), (second, [1e-2])],
        on_epoch=lambda index, epoch, run: index == 0 and epoch == 0,
    )
    assert len(pruned[0].train_acc) == 1 and pruned[0].stop == "pruned after epoch 0"
    _, accuracies = _reference_run(replace(spec, genome=second.genome), 1e-2, second.seeds)
    assert kept[0].train_acc == accuracies


def test_a_pack_needs_one_data_seed(digits_data) -> None:  # type: ignore[no-untyped-def]
    from optuna_nos.core.errors import NOSError

    spec = _spec(digits_data, parse_equation(GENOMES[0]))
    first, second, _ = _candidates(data_seed=1)
    with pytest.raises(NOSError, match="one data seed"):
        train_packed(spec, [(first, [1e-2]), (replace(second, seeds=RunSeeds.derive(9)), [1e-2])])


def test_measure_pack_equals_the_protocol_per_genome() -> None:
    small = replace(
        DIGITS_FITNESS,
        init=replace(
            DIGITS_FITNESS.init,
            total_steps=60,
            final_epochs=2,
            final_steps_per_epoch=10,
            screen_epochs=2,
            screen_steps_per_epoch=5,
        ),
        stage1_lrs=(1e-2, 1e-3),
        stage2_lrs=(1e-1,),
        stage1_fail_below=0.0,
        screen_fail_below=0.0,
    )
    task = ProxyTask(load_digits, small, device="cpu", dtype=torch.float64, cpu_threads=1)
    genomes = [parse_equation(eq) for eq in GENOMES[:2]]
    done: list[int] = []
    packed = measure_pack(
        genomes, [11, 12], task, "init", on_done=lambda index, result: done.append(index)
    )
    assert sorted(done) == [0, 1]
    for genome, seed, result in zip(genomes, [11, 12], packed, strict=True):
        seeds = pack_seeds(task, seed)
        alone = _measure_with_seeds(genome, task, seeds)
        assert result.fitness == alone.fitness and result.lr == alone.lr
        assert [r.train_acc for r in result.screen] == [r.train_acc for r in alone.screen]


def _measure_with_seeds(genome, task, seeds):  # type: ignore[no-untyped-def]
    """measure_fitness with exactly ``seeds`` (it derives them from one seed otherwise)."""
    from unittest import mock

    with mock.patch("proxy.fitness.RunSeeds.derive", return_value=seeds):
        return measure_fitness(genome, task, "init", seed=0)


def test_packed_proxy_objective_tells_each_trial_with_its_attrs() -> None:
    import optuna

    from optuna_nos.sampler import ParticleSampler
    from optuna_nos.study.packing import optimize_packed
    from proxy.tasks import digits

    tiny = {
        "total_steps": 40,
        "warmup_steps": 4,
        "final_epochs": 2,
        "final_steps_per_epoch": 4,
        "screen_epochs": 2,
        "screen_steps_per_epoch": 3,
    }
    objective = digits(
        stage1_lrs=[1e-2, 1e-1],
        stage2_lrs=[1e-3],
        stage1_fail_below=0.0,
        init=tiny,
        evolution=tiny,
    )
    sampler = ParticleSampler(n_particles=2, init_factor=2, steps=1, mutations=1, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    optimize_packed(study, objective.evaluate_pack, 3, n_trials=3)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 3 and all(t.state.is_finished() for t in trials)
    for trial in trials:
        assert trial.user_attrs["fidelity"] == "init"
        assert len(trial.system_attrs["nos:screen"]) == 3
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert trial.system_attrs["nos:final"]["val_acc"][-1] is not None
            assert trial.value == pytest.approx(
                max(trial.system_attrs["nos:final"]["val_acc"]), abs=1e-6
            )
