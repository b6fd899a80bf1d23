"""The compiled training step (``compile`` = "model" / "all") against the eager reference.

In float64 on the CPU (inductor), a compiled run records the eager run's accuracies and stop
reasons exactly and ends with the same parameters and BN statistics to a relative 1e-9 (an
absolute 1e-10 near zero; fused kernels may round differently): through a copy that
diverges and leaves the stack mid-run (a new shape), validation, dropout, packs and the
compiled optimizer step. Graphs are shared by every stack of one shape, and bad values are
refused with one line.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_fitness import _spec
from torch._dynamo.utils import counters

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import PAPER_SETTINGS
from optuna_nos.optim.compiled_step import CompiledGenomeOptimizer
from optuna_nos.space.parse import parse_equation
from proxy.compiled import shared_graphs
from proxy.data import load_digits
from proxy.fitness import FitnessConfig
from proxy.screen import (
    Candidate,
    RunResult,
    RunSeeds,
    RunSpec,
    genome_optimizer,
    train_packed,
    train_stack,
)
from proxy.stack import StackedConvNet
from proxy.tasks import digits, fitness_config

ADAM = "None ~ (v hat) / (sqrt(|s hat|))"
#: SGD with Nesterov momentum: linear in g, so rounding differences stay rounding-sized (Adam
#: would blow the ~1e-17 gradients of the conv biases that BN cancels up to lr-sized steps).
SGD_NESTEROV = "Nest ~ id(id(g))"
#: Copy 0 overflows at step 1 (no warmup), so the stack goes from 3 copies to 2 mid-run.
LRS = [1e308, 1e-2, 1e-1]


@pytest.fixture(scope="module")
def digits_data():  # type: ignore[no-untyped-def]
    return load_digits()


def _run_spec(data, compile: str) -> RunSpec:  # type: ignore[no-untyped-def]
    return _spec(
        data,
        parse_equation(SGD_NESTEROV),
        val=data.val,
        warmup_steps=0,
        epochs=2,
        steps_per_epoch=3,
        compile=compile,
    )


def _assert_same_runs(ours: list[RunResult], theirs: list[RunResult]) -> None:
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.to_dict() == reference.to_dict()


def _assert_same_stacks(ours: StackedConvNet, theirs: StackedConvNet) -> None:
    assert ours.active == theirs.active
    for mine, reference in zip(ours.leaves, theirs.leaves, strict=True):
        for a, b in zip(mine, reference, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, equal_nan=True)
    for a, b in zip(
        (*ours.running_mean, *ours.running_var),
        (*theirs.running_mean, *theirs.running_var),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("compile", "mode"),
    [("model", None), ("all", None), ("model", "reduce-overhead")],
    ids=["model", "all", "model-reduce-overhead"],
)
def test_compiled_runs_equal_eager_runs(digits_data, compile: str, mode: str | None) -> None:  # type: ignore[no-untyped-def]
    """(On a CPU, "reduce-overhead" runs its step markers and static-input marks, without
    CUDA graphs.)"""
    seeds = RunSeeds.derive(5)
    reference, reference_stack = train_stack(_run_spec(digits_data, "none"), LRS, seeds)
    assert reference[0].stop == "non-finite loss at step 1" and reference_stack.active == [1, 2]
    assert reference_stack.dropout > 0
    spec = replace(_run_spec(digits_data, compile), compile_mode=mode)
    ours, stack = train_stack(spec, LRS, seeds)
    _assert_same_runs(ours, reference)
    _assert_same_stacks(stack, reference_stack)


def test_compile_all_builds_a_compiled_optimizer(digits_data) -> None:  # type: ignore[no-untyped-def]
    leaf = torch.zeros(3, requires_grad=True)
    groups = [{"params": [leaf], "lr": 1e-2}]
    spec = _run_spec(digits_data, "all")
    assert isinstance(
        genome_optimizer(spec, parse_equation(ADAM), groups, 0), CompiledGenomeOptimizer
    )
    plain = genome_optimizer(replace(spec, compile="model"), parse_equation(ADAM), groups, 0)
    assert not isinstance(plain, CompiledGenomeOptimizer)


@pytest.mark.slow
def test_compiled_packs_equal_eager_packs(digits_data) -> None:  # type: ignore[no-untyped-def]
    spec = _run_spec(digits_data, "none")
    candidates = [
        Candidate(parse_equation(equation), replace(RunSeeds.derive(20 + i), data=4))
        for i, equation in enumerate([SGD_NESTEROV, ADAM])
    ]
    runs = list(zip(candidates, [[1e308, 1e-2], [1e-1]], strict=True))
    reference = train_packed(spec, runs)
    ours = train_packed(replace(spec, compile="model"), runs)
    assert reference[0][0].stop == "non-finite loss at step 1"
    for mine, theirs in zip(ours, reference, strict=True):
        _assert_same_runs(mine, theirs)


@pytest.mark.slow
def test_a_second_stack_of_one_shape_compiles_nothing(digits_data) -> None:  # type: ignore[no-untyped-def]
    spec = _run_spec(digits_data, "model")
    train_stack(spec, LRS, RunSeeds.derive(6))
    graphs = len(shared_graphs(None)._graphs)
    compiled = counters["stats"]["unique_graphs"]
    train_stack(spec, LRS, RunSeeds.derive(7))
    assert len(shared_graphs(None)._graphs) == graphs
    assert counters["stats"]["unique_graphs"] == compiled


def test_compile_is_refused_in_paper_mode(digits_data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NOSError, match="compile='model' is refused in paper mode"):
        replace(_run_spec(digits_data, "model"), settings=PAPER_SETTINGS)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compile": "model"}, "compile='model' is refused in paper mode"),
        ({"bf16": True}, "bf16=True is refused in paper mode"),
    ],
)
def test_the_paper_mode_task_refuses_fast_paths_up_front(options, message: str) -> None:  # type: ignore[no-untyped-def]
    """Refused when the objective is built (as ``optuna-nos init`` does), not per trial."""
    with pytest.raises(NOSError, match=message):
        digits(settings=PAPER_SETTINGS, **options)


def test_bad_compile_values_are_refused(digits_data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NOSError, match="compile must be one of none, model, all, got 'yes'"):
        _run_spec(digits_data, "yes")
    with pytest.raises(NOSError, match="compile_mode must be one of .*, got 'fast'"):
        FitnessConfig(compile="model", compile_mode="fast")
    with pytest.raises(
        NOSError, match=r"'objective.compile' = True is not allowed; allowed: none"
    ):
        fitness_config({"compile": True})
    with pytest.raises(NOSError, match=r"'objective.compile_mode' = 'cuda' is not allowed"):
        fitness_config({"compile_mode": "cuda"})
    with pytest.raises(NOSError, match="compile_mode='reduce-overhead' needs compile='model'"):
        fitness_config({"compile_mode": "reduce-overhead"})
    config = fitness_config({"compile": "all", "compile_mode": "reduce-overhead"})
    assert (config.compile, config.compile_mode) == ("all", "reduce-overhead")
