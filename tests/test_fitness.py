"""The fitness protocol: thresholds on hand-made curves, batched screen
training against a plain ConvNet + GenomeOptimizer, and the Optuna objective."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import optuna
import pytest
import torch

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import PAPER_SETTINGS
from optuna_nos.optim.torch_optim import GenomeOptimizer
from optuna_nos.space.genome import Genome
from optuna_nos.space.parse import parse_equation
from proxy.data import Augmentation, load_digits, normalization
from proxy.fitness import (
    PAPER_FITNESS,
    Fidelity,
    FitnessConfig,
    ProxyTask,
    evaluate_genome,
    measure_fitness,
    run_protocol,
)
from proxy.model import ConvNet
from proxy.protocol import (
    EarlyStop,
    ScreenDecision,
    decide_screen,
    fitness_of,
    run_epochs,
    run_record,
)
from proxy.screen import RunResult, RunSeeds, RunSpec, train_runs, train_stack
from testkit.reference import reference_run

NAN = math.nan
ADAM = "None ~ (v hat) / (sqrt(|s hat|))"
STAGE1 = PAPER_FITNESS.screen_early_stop
FINAL = PAPER_FITNESS.final_early_stop


# -- thresholds on hand-made curves -------------------------------------------------------------


class CurveTrainer:
    """A trainer that replays hand-made accuracy curves through the early-stop rules."""

    def __init__(
        self,
        train: dict[float, list[float]],
        val: list[float],
        final_train: list[float] | None = None,
        *,
        numpy_nan: bool = False,
    ) -> None:
        self.train, self.val, self.numpy_nan = train, val, numpy_nan
        self.final_train = final_train if final_train is not None else [0.9] * len(val)
        self.screened: list[tuple[float, ...]] = []
        self.final_lr: float | None = None

    def screen(self, lrs: Sequence[float]) -> list[RunResult]:
        self.screened.append(tuple(lrs))
        return [
            RunResult(lr, run_epochs(self.train[lr], STAGE1, numpy_nan=self.numpy_nan))
            for lr in lrs
        ]

    def final(self, lr: float) -> RunResult:
        self.final_lr = lr
        kept = run_epochs(self.final_train, FINAL, numpy_nan=self.numpy_nan)
        return RunResult(lr, kept, self.val[: len(kept)])


def _curves(**records: list[float]) -> dict[float, list[float]]:
    """Curves for the 7 screen lrs; unnamed ones stay at chance level."""
    names = {
        "lr10": 10.0,
        "lr1e2": 1e-2,
        "lr1e5": 1e-5,
        "lr1": 1.0,
        "lr1e1": 1e-1,
        "lr1e3": 1e-3,
        "lr1e4": 1e-4,
    }
    curves = {lr: [0.1, 0.1, 0.1, 0.1] for lr in names.values()}
    for name, curve in records.items():
        curves[names[name]] = curve
    return curves


def test_all_stage1_runs_below_025_fail_before_stage2() -> None:
    trainer = CurveTrainer(
        _curves(lr10=[0.2, 0.24, 0.2, 0.1], lr1=[0.9, 0.9, 0.9, 0.9]), val=[0.5]
    )
    result = run_protocol(trainer, PAPER_FITNESS, numpy_nan=False)
    assert result.failed and "stage 1" in (result.reason or "")
    assert trainer.screened == [(10.0, 1e-2, 1e-5)] and trainer.final_lr is None
    assert len(result.screen) == 3


def test_one_stage1_run_at_025_passes_to_stage2() -> None:
    trainer = CurveTrainer(
        _curves(lr1e5=[0.1, 0.25, 0.2, 0.2], lr1e1=[0.3, 0.5, 0.6, 0.7]), val=[0.4, 0.6, 0.55]
    )
    result = run_protocol(trainer, PAPER_FITNESS, numpy_nan=False)
    assert trainer.screened == [(10.0, 1e-2, 1e-5), (1.0, 1e-1, 1e-3, 1e-4)]
    assert result.lr == 1e-1 and result.fitness == 0.6


def test_best_record_below_040_fails_after_stage2() -> None:
    trainer = CurveTrainer(
        _curves(lr1e2=[0.3, 0.39, 0.38, 0.3], lr1=[0.2, 0.399, 0.3, 0.3]), val=[0.9]
    )
    result = run_protocol(trainer, PAPER_FITNESS, numpy_nan=False)
    assert result.failed and "below 0.4" in (result.reason or "")
    assert len(trainer.screened) == 2 and trainer.final_lr is None
    assert len(result.screen) == 7


def test_argmax_order_and_ties() -> None:
    # 1e-2 (stage 1) ties with 1 and 1e-3 (stage 2): the first in screen order wins.
    tie = [0.3, 0.5, 0.7, 0.6]
    trainer = CurveTrainer(_curves(lr1e2=tie, lr1=tie, lr1e3=tie), val=[0.5])
    assert run_protocol(trainer, PAPER_FITNESS, numpy_nan=False).lr == 1e-2
    # A tie inside stage 2 goes to the earlier of [1, 1e-1, 1e-3, 1e-4].
    trainer = CurveTrainer(_curves(lr1e5=[0.3] * 4, lr1e3=tie, lr1e1=tie), val=[0.5])
    assert run_protocol(trainer, PAPER_FITNESS, numpy_nan=False).lr == 1e-1
    # The record is the run's best epoch, not its last.
    trainer = CurveTrainer(
        _curves(lr10=[0.3, 0.95, 0.3, 0.3], lr1e4=[0.5, 0.6, 0.7, 0.8]), val=[0.5]
    )
    assert run_protocol(trainer, PAPER_FITNESS, numpy_nan=False).lr == 10.0


def test_fitness_is_the_best_validation_epoch() -> None:
    trainer = CurveTrainer(
        _curves(lr1e5=[0.3] * 4, lr1=[0.5, 0.6, 0.7, 0.8]), val=[0.3, 0.8, 0.75, 0.79]
    )
    result = run_protocol(trainer, PAPER_FITNESS, numpy_nan=False)
    assert result.fitness == 0.8 and result.lr == 1.0 and result.final is not None


def test_screen_early_stop() -> None:
    # Epochs 0 and 1 never stop a run; epoch >= 2 below 0.25 does, and that epoch counts.
    assert run_epochs([0.1, 0.1, 0.24, 0.9], STAGE1, numpy_nan=False) == [0.1, 0.1, 0.24]
    assert run_epochs([0.1, 0.1, 0.25, 0.1], STAGE1, numpy_nan=False) == [0.1, 0.1, 0.25, 0.1]
    assert run_record([0.1, 0.1, 0.25, 0.1], numpy_nan=False) == 0.25


def test_final_early_stop_is_not_a_failure() -> None:
    train = [0.2, 0.3, 0.3, 0.35, 0.39, 0.9, 0.9]
    assert run_epochs(train, FINAL, numpy_nan=False) == train[:5]
    trainer = CurveTrainer(
        _curves(lr10=[0.3] * 4, lr1=[0.5, 0.6, 0.7, 0.8]),
        val=[0.2, 0.3, 0.45, 0.4, 0.41, 0.9, 0.9],
        final_train=train,
    )
    result = run_protocol(trainer, PAPER_FITNESS, numpy_nan=False)
    assert not result.failed and result.fitness == 0.45
    assert result.final is not None and len(result.final.val_acc) == 5


def _decide(
    lrs: Sequence[float], records: list[float], numpy_nan: bool, complete: bool
) -> ScreenDecision:
    """:func:`decide_screen` with stage 1 of 3 runs, failing below 0.25, the screen below 0.4."""
    return decide_screen(
        lrs,
        records,
        stage1_size=3,
        stage1_below=0.25,
        screen_below=0.4,
        numpy_nan=numpy_nan,
        complete=complete,
    )


def test_nan_records_project_default() -> None:
    # NaN counts as -inf: below every threshold, never the argmax, an empty run is -inf.
    assert STAGE1.stops(3, NAN, numpy_nan=False)
    assert run_record([], numpy_nan=False) == -math.inf
    assert run_record([0.3, NAN], numpy_nan=False) == 0.3
    trainer = CurveTrainer(_curves(lr10=[0.1, NAN], lr1e2=[0.2], lr1e5=[]), val=[0.5])
    assert run_protocol(trainer, PAPER_FITNESS, numpy_nan=False).failed
    lrs = PAPER_FITNESS.screen_lrs
    records = [NAN, 0.5, 0.1, 0.6, 0.1, 0.1, NAN]
    decision = _decide(lrs, records, numpy_nan=False, complete=True)
    assert decision.lr == 1.0
    assert fitness_of([NAN], numpy_nan=False) is None
    assert fitness_of([], numpy_nan=False) is None
    assert fitness_of([0.5, NAN], numpy_nan=False) == 0.5


def test_nan_records_paper_mode() -> None:
    # numpy: NaN < x is false, max propagates NaN, argmax picks the first NaN.
    assert not STAGE1.stops(3, NAN, numpy_nan=True)
    assert math.isnan(run_record([], numpy_nan=True))
    assert math.isnan(run_record([0.3, NAN], numpy_nan=True))
    lrs = PAPER_FITNESS.screen_lrs
    stage1 = [NAN, 0.1, 0.1]
    assert _decide(lrs[:3], stage1, numpy_nan=True, complete=False).reason is None
    records = [0.3, 0.5, 0.1, NAN, 0.9, 0.1, NAN]
    decision = _decide(lrs, records, numpy_nan=True, complete=True)
    assert decision.lr == 1.0  # the first NaN record
    assert math.isnan(fitness_of([0.5, NAN], numpy_nan=True) or 0.0)
    assert math.isnan(fitness_of([], numpy_nan=True) or 0.0)
    trainer = CurveTrainer(_curves(lr10=[0.1, 0.1, NAN, 0.1]), val=[0.7], numpy_nan=True)
    result = run_protocol(trainer, PAPER_FITNESS, numpy_nan=True)
    assert result.lr == 10.0 and result.fitness == 0.7


def _fidelity(**changes: Any) -> Fidelity:
    """A small ``init`` fidelity of 100 steps, with ``changes``."""
    fields: dict[str, Any] = {
        "width": 8,
        "normalization": "scale",
        "augmentation": None,
        "total_steps": 100,
        "warmup_steps": 10,
        "final_epochs": 1,
        "final_steps_per_epoch": 10,
    }
    return Fidelity("init", **{**fields, **changes})


def test_config_validation() -> None:
    with pytest.raises(NOSError, match="exceed total_steps"):
        _fidelity(final_epochs=11)
    with pytest.raises(NOSError, match="normalization"):
        _fidelity(normalization="whiten", screen_epochs=1, screen_steps_per_epoch=10)
    with pytest.raises(NOSError, match="learning rates"):
        FitnessConfig(stage1_lrs=(1.0, -1.0))
    with pytest.raises(NOSError, match="fidelity"):
        PAPER_FITNESS.fidelity("final")
    assert PAPER_FITNESS.screen_lrs == (10.0, 1e-2, 1e-5, 1.0, 1e-1, 1e-3, 1e-4)
    assert PAPER_FITNESS.init.total_steps == 8000 and PAPER_FITNESS.evolution.width == 48
    assert (
        PAPER_FITNESS.evolution.final_epochs * PAPER_FITNESS.evolution.final_steps_per_epoch
        == 16000
    )


# -- real training ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_data():  # type: ignore[no-untyped-def]
    return load_digits()


def _spec(data, genome: Genome, **changes) -> RunSpec:  # type: ignore[no-untyped-def]
    base = RunSpec(
        genome=genome,
        width=4,
        train=data.train,
        norm=normalization(data, "standardize"),
        augmentation=Augmentation(pad=1, flip=True, cutout=2),
        total_steps=40,
        warmup_steps=4,
        epochs=2,
        steps_per_epoch=4,
        early_stop=EarlyStop(0, 0.0),
        batch_size=32,
        dtype=torch.float64,
    )
    return replace(base, **changes)


def _reference_run(spec: RunSpec, lr: float, seeds: RunSeeds) -> tuple[ConvNet, list[float]]:
    """One run, written plainly: a ConvNet, a GenomeOptimizer and the batch stream."""
    return reference_run(
        spec,
        seeds,
        lambda params: GenomeOptimizer(
            params,
            spec.genome,
            lr=lr,
            total_steps=spec.total_steps,
            warmup_steps=spec.warmup_steps,
            settings=spec.settings,
            seed=seeds.optimizer,
        ),
    )


@pytest.mark.parametrize(
    "equation",
    [
        "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))",  # decays + Nesterov: flat layout
        "None ~ norm([sqrt(a6)][(lam hat)+(((1-0.7)*g+0.7*v hat))])",  # norm: per-tensor layout
        "Mom ~ (v hat)-(MaxValue(mean(beta*s-g^2)))",  # stateful op + momentum
    ],
)
def test_batched_runs_equal_lone_runs(digits_data, equation: str) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(digits_data, parse_equation(equation))
    seeds = RunSeeds.derive(11)
    lrs = [1e-1, 1e-2, 1e-3]
    results, stack = train_stack(spec, lrs, seeds)
    assert stack.active == [0, 1, 2]
    for k, lr in enumerate(lrs):
        model, accuracies = _reference_run(spec, lr, seeds)
        assert results[k].train_acc == accuracies and results[k].stop is None
        mine = stack.model(k)
        for a, b in zip(mine.parameters(), model.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
        for layer in range(3):
            for ours, theirs in zip(
                mine.running_stats(layer), model.running_stats(layer), strict=True
            ):
                torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_non_finite_loss_stops_only_its_own_run(digits_data) -> None:  # type: ignore[no-untyped-def]
    # eta_0 = 1e308 (no warmup) overflows the first copy's activations: NaN loss at step 1.
    spec = _spec(digits_data, parse_equation(ADAM), warmup_steps=0, epochs=2, steps_per_epoch=3)
    seeds = RunSeeds.derive(3)
    results, stack = train_stack(spec, [1e308, 1e-2], seeds)
    assert results[0].stop == "non-finite loss at step 1"
    assert results[0].train_acc == []  # the broken epoch is not recorded
    assert stack.active == [1]
    alone, alone_stack = train_stack(spec, [1e-2], seeds)
    assert results[1].train_acc == alone[0].train_acc and results[1].stop is None
    for a, b in zip(stack.model(0).parameters(), alone_stack.model(0).parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_paper_mode_records_the_broken_epoch(digits_data) -> None:  # type: ignore[no-untyped-def]
    """Keras' TerminateOnNaN keeps the unfinished epoch in the released code's history: its
    accuracy over the batches up to and including the one whose loss is not finite."""
    spec = _spec(
        digits_data,
        parse_equation(ADAM),
        warmup_steps=0,
        epochs=2,
        steps_per_epoch=3,
        settings=PAPER_SETTINGS,
    )
    seeds = RunSeeds.derive(3)
    results, _ = train_stack(spec, [1e308, 1e-2], seeds)
    assert results[0].stop == "non-finite loss at step 1"
    _, through_bad_step = _reference_run(replace(spec, epochs=1, steps_per_epoch=2), 1e308, seeds)
    assert results[0].train_acc == through_bad_step
    _, lone = _reference_run(spec, 1e-2, seeds)
    assert results[1].train_acc == lone and results[1].stop is None


def test_screen_early_stop_in_training(digits_data) -> None:  # type: ignore[no-untyped-def]
    # lr 0 never learns: chance accuracy stops the run after epoch 2 (and that epoch counts).
    spec = _spec(
        digits_data,
        parse_equation(ADAM),
        width=8,
        batch_size=64,
        epochs=4,
        steps_per_epoch=5,
        early_stop=STAGE1,
    )
    results = train_runs(spec, [0.0, 0.1], RunSeeds.derive(0), batched=False)
    assert len(results[0].train_acc) == 3 and "after epoch 2" in (results[0].stop or "")
    assert len(results[1].train_acc) == 4 and max(results[1].train_acc) > 0.25
    assert results == train_runs(spec, [0.0, 0.1], RunSeeds.derive(0), batched=True)


def test_batching_by_default_on_small_cpu_models_only(digits_data) -> None:  # type: ignore[no-untyped-def]
    from proxy.data import ImageSplit
    from proxy.screen import batching_pays

    assert batching_pays(_spec(digits_data, parse_equation(ADAM), width=12, batch_size=128))
    cifar_like = ImageSplit(
        torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)
    )
    assert not batching_pays(
        _spec(digits_data, parse_equation(ADAM), width=32, batch_size=128, train=cifar_like)
    )


TINY_FIDELITY = Fidelity(
    "init",
    width=8,
    normalization="scale",
    augmentation=None,
    total_steps=80,
    warmup_steps=4,
    final_epochs=4,
    final_steps_per_epoch=10,
    screen_epochs=3,
    screen_steps_per_epoch=8,
)
TINY = FitnessConfig(
    init=TINY_FIDELITY,
    evolution=replace(
        TINY_FIDELITY,
        name="evolution",
        normalization="standardize",
        augmentation=Augmentation(pad=1, flip=False, cutout=2),
    ),
    batch_size=64,
)


def _task(**changes) -> ProxyTask:  # type: ignore[no-untyped-def]
    return ProxyTask(load_digits, replace(TINY, **changes), device="cpu", seed=0)


def test_measure_fitness_end_to_end() -> None:
    result = measure_fitness(parse_equation(ADAM), _task(), "evolution")
    assert not result.failed and result.final is not None
    assert result.lr in TINY.screen_lrs and len(result.screen) == 7
    assert result.fitness == max(result.final.val_acc) and 0.0 <= result.fitness <= 1.0


def test_objective_reports_and_records() -> None:
    genome = parse_equation(ADAM)
    task = _task()
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda trial: evaluate_genome(genome, task, "init", trial=trial), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.user_attrs["lr"] in TINY.screen_lrs
    assert [run["lr"] for run in trial.system_attrs["nos:screen"]] == list(TINY.screen_lrs)
    assert trial.value == max(trial.intermediate_values.values())
    assert sorted(trial.intermediate_values) == list(range(len(trial.intermediate_values)))


def test_screen_failure_prunes_with_a_reason() -> None:
    genome = parse_equation(ADAM)
    task = _task(stage1_fail_below=1.01)
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda trial: evaluate_genome(genome, task, "init", trial=trial), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert "stage 1" in trial.user_attrs["nos.reason"]
    assert len(trial.system_attrs["nos:screen"]) == 3 and "lr" not in trial.user_attrs


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_pruner_stops_the_final_run() -> None:
    genome = parse_equation(ADAM)
    study = optuna.create_study(direction="maximize", pruner=_AlwaysPrune())
    study.optimize(lambda trial: evaluate_genome(genome, _task(), "init", trial=trial), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]
    assert trial.user_attrs["nos.reason"].startswith("pruned after epoch 0")
    assert "lr" in trial.user_attrs


def test_digits_objective_factory() -> None:
    from optuna_nos.study.suggest import genome_params
    from proxy.tasks import digits

    small = {
        "width": 8,
        "total_steps": 80,
        "warmup_steps": 4,
        "final_epochs": 2,
        "final_steps_per_epoch": 10,
        "screen_epochs": 3,
        "screen_steps_per_epoch": 8,
    }
    objective = digits(device="cpu", evolution=small, batch_size=64)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(genome_params(parse_equation(ADAM)))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.user_attrs.get("fidelity") == "evolution"  # no ParticleSampler placed it
    assert trial.state == optuna.trial.TrialState.COMPLETE, trial.user_attrs.get("nos.reason")
    assert trial.user_attrs["equation"] == ADAM
    assert trial.value == max(trial.intermediate_values.values())


def test_task_options_are_checked() -> None:
    from proxy.tasks import cifar10, digits

    with pytest.raises(NOSError, match="objective.data_root"):
        cifar10()
    with pytest.raises(NOSError, match="objective.colour"):
        digits(colour="red")
    with pytest.raises(NOSError, match="objective.init.depth"):
        digits(init={"depth": 3})
    with pytest.raises(NOSError, match="objective.stage1_lrs"):
        digits(stage1_lrs=[1.0, "x"])
    paper = digits(settings=PAPER_SETTINGS)
    assert paper.task.settings.numpy_nan_semantics
    with pytest.raises(NOSError, match="cpu_threads"):
        digits(cpu_threads=0)


def test_factories_read_the_study_config() -> None:
    from optuna_nos.study.config import parse_config
    from proxy.tasks import cifar10, digits

    config = parse_config(
        {
            "study": {"paper_mode": True, "space": "adam_variants"},
            "objective": {
                "target": "proxy.tasks:digits",
                "device": "cpu",
                "seed": 5,
                "stage2_lrs": [1, 0.1],
                "evolution": {"augmentation": False},
            },
        }
    )
    objective = digits(config)
    assert objective.space == "adam_variants" and objective.task.settings.paper_mode
    assert objective.task.device == "cpu" and objective.task.seed == 5
    assert objective.task.cpu_threads == 1
    assert objective.task.config.stage2_lrs == (1.0, 0.1)
    assert objective.task.config.evolution.augmentation is None
    assert digits(config, seed=6).task.seed == 6  # keyword arguments win
    cifar = cifar10(
        parse_config(
            {"objective": {"target": "proxy.tasks:cifar10", "data_root": "/data", "val_size": 100}}
        )
    )
    assert cifar.task.config == PAPER_FITNESS and cifar.task.cpu_threads is None


def test_cpu_threads_are_set_during_an_evaluation_only() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        during: list[int] = []
        task = replace(_task(), cpu_threads=1)
        measure_fitness(
            parse_equation(ADAM),
            task,
            "init",
            on_epoch=lambda epoch, run: during.append(torch.get_num_threads()),
        )
        assert during and set(during) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
