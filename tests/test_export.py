"""The exported standalone optimizer follows GenomeOptimizer's trajectory in float64."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import PAPER_SETTINGS
from optuna_nos.optim.export import export_source
from optuna_nos.optim.torch_optim import GenomeOptimizer
from optuna_nos.space.decays import DECAY_HIDDEN
from optuna_nos.space.genome import Genome
from optuna_nos.space.parse import parse_equation
from optuna_nos.space.random_genome import draw_genome

STEPS, WARMUP, HOLD = 30, 4, 3


def _load(source: str, tmp_path: Path, name: str) -> ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _features(genome: Genome) -> set[tuple[str, int]]:
    """The op families an active genome exercises: operands, ops, decay ops, schedules."""
    found: set[tuple[str, int]] = {("momentum", int(genome.momentum))}
    for column in genome.topological_order():
        node = genome.node(column)
        found.add(("binary", node.binary_op) if node.binary else ("unary", node.unary_op))
        found.update(("operand", c) for c in node.inputs if c < 20)
    for decay in genome.active_decays():
        nodes = (decay.root, decay.hidden) if decay.uses_hidden else (decay.root,)
        for node in nodes:
            found.add(
                ("decay_binary", node.binary_op) if node.binary else ("decay_unary", node.unary_op)
            )
            found.update(("base", i) for i in node.inputs if i != DECAY_HIDDEN)
    return found


ALL_FEATURES = (
    {("momentum", m) for m in range(3)}
    | {("unary", u) for u in range(-1, 25)}
    | {("binary", b) for b in range(10)}
    | {("operand", c) for c in range(20)}
    | {("decay_unary", u) for u in range(13)}
    | {("decay_binary", b) for b in range(7)}
    | {("base", i) for i in range(14)}
)


def _covering_genomes() -> list[Genome]:
    """Random genomes, kept only while they add op families, until every family is covered."""
    rng = np.random.default_rng(7)
    chosen: list[Genome] = []
    covered: set[tuple[str, int]] = set()
    for _ in range(20_000):
        genome = draw_genome(rng)
        if genome is None:
            continue
        new = _features(genome) - covered
        if new:
            chosen.append(genome)
            covered |= new
        if covered >= ALL_FEATURES:
            break
    assert covered >= ALL_FEATURES, sorted(ALL_FEATURES - covered)
    return chosen


def _trajectory(make_optimizer, seed: int = 0) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    model.double()
    optimizer = make_optimizer(model.parameters())
    data = torch.randn(16, 3, dtype=torch.float64)
    target = torch.randn(16, 2, dtype=torch.float64)
    for _ in range(STEPS):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(data), target).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


GENOMES = _covering_genomes()


@pytest.mark.parametrize("index", range(len(GENOMES)))
def test_exported_trajectory_equals_genome_optimizer(index: int, tmp_path: Path) -> None:
    genome = GENOMES[index]
    module = _load(export_source(genome), tmp_path, f"exported_{index}")
    kwargs = {
        "lr": 0.05,
        "total_steps": STEPS,
        "warmup_steps": WARMUP,
        "hold_steps": HOLD,
        "seed": 3,
    }
    expected = _trajectory(lambda p: GenomeOptimizer(p, genome, **kwargs))
    actual = _trajectory(lambda p: module.EvolvedOptimizer(p, **kwargs))
    for want, got in zip(expected, actual, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14, equal_nan=True)


def test_paper_settings_and_flip_are_baked_in(tmp_path: Path) -> None:
    genome = parse_equation("Mom ~ id(expMovAvg(g))").replace(flip=True)
    source = export_source(genome, settings=PAPER_SETTINGS)
    module = _load(source, tmp_path, "exported_paper")
    kwargs = {"lr": 0.01, "total_steps": STEPS, "warmup_steps": WARMUP}
    expected = _trajectory(lambda p: GenomeOptimizer(p, genome, settings=PAPER_SETTINGS, **kwargs))
    actual = _trajectory(lambda p: module.EvolvedOptimizer(p, **kwargs))
    for want, got in zip(expected, actual, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14, equal_nan=True)


def test_module_imports_only_torch_and_names_its_origin() -> None:
    genome = parse_equation("Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))")
    source = export_source(genome, class_name="Found", origin="study 's', trial 7, fitness 0.8")
    assert source.startswith("# Exported by optuna-nos from study 's', trial 7, fitness 0.8.")
    assert "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))" in source
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
    assert modules <= {"math", "torch", "__future__"}
    assert "class Found(torch.optim.Optimizer)" in source


@pytest.mark.parametrize("name", ["", "class", "1abc", "a-b"])
def test_bad_class_name(name: str) -> None:
    genome = parse_equation("None ~ id(id(g))")
    with pytest.raises(NOSError, match="class_name"):
        export_source(genome, class_name=name)


def test_state_dict_of_another_genome_is_refused(tmp_path: Path) -> None:
    adam = _load(
        export_source(parse_equation("None ~ (v hat) / (sqrt(|s hat|))")),
        tmp_path,
        "exported_adam",
    )
    nesterov = _load(
        export_source(parse_equation("Nest ~ id(id(sign(v hat)))")), tmp_path, "exported_nesterov"
    )
    w = torch.zeros(2, requires_grad=True)
    opt = nesterov.EvolvedOptimizer([w], lr=0.1, total_steps=5)
    w.grad = torch.ones(2)
    opt.step()
    with pytest.raises(ValueError, match="momentum_buffer"):
        adam.EvolvedOptimizer([w], lr=0.1, total_steps=5).load_state_dict(opt.state_dict())
