"""CompiledGenomeOptimizer against the eager GenomeOptimizer: parameters and every state, float64.

``aot_eager`` runs the traced graph without code generation and must match bit for bit;
``inductor`` generates fused kernels and must match to a relative 1e-12.
"""

from __future__ import annotations

import pytest
import torch
from test_torch_optim import (
    ADAM,
    ADD,
    AGG_S,
    DELTA_CHANGE,
    DIV,
    DROP_50,
    EXP_MOV_AVG,
    LINEAR_DECAY,
    MAX_VALUE,
    N0,
    N1,
    QHM_V,
    S_HAT,
    SQRT,
    G,
    genome,
    make_model,
    train,
)
from torch import nn
from torch._dynamo.utils import counters

from optuna_nos.core.settings import PAPER_SETTINGS
from optuna_nos.optim.compiled_step import CompiledGenomeOptimizer
from optuna_nos.optim.torch_optim import GenomeOptimizer
from optuna_nos.space import Genome, Momentum, Node

NESTEROV_ADAM = genome(
    Node(inputs=(S_HAT, N0), binary_op=DIV),
    Node(inputs=(S_HAT,), unary_op=SQRT),
    momentum=Momentum.NESTEROV,
)
STATEFUL_DECAYED = genome(
    Node(inputs=(QHM_V, N1), binary_op=DIV, decays={QHM_V: LINEAR_DECAY}),
    Node(inputs=(S_HAT,), unary_op=EXP_MOV_AVG),
    Node(inputs=(N0,), unary_op=SQRT),
    momentum=Momentum.MOMENTUM,
)
DELTA_MAX = genome(
    Node(inputs=(N0, N1), binary_op=ADD),
    Node(inputs=(G,), unary_op=DELTA_CHANGE, decays={G: LINEAR_DECAY}),
    Node(inputs=(AGG_S,), unary_op=MAX_VALUE),
)
GENOMES = {
    "adam": ADAM,
    "nesterov": NESTEROV_ADAM,
    "ema_decay": STATEFUL_DECAYED,
    "delta_max": DELTA_MAX,
}
STEPS = 50
SCHEDULE = {"lr": 0.01, "total_steps": 60, "warmup_steps": 5, "hold_steps": 3}


def _pair(
    genome_: Genome, backend: str, **kwargs: object
) -> tuple[nn.Module, GenomeOptimizer, nn.Module, CompiledGenomeOptimizer]:
    eager_model, compiled_model = make_model(), make_model()
    options = {**SCHEDULE, **kwargs}
    eager = GenomeOptimizer(eager_model.parameters(), genome_, seed=0, **options)  # type: ignore[arg-type]
    compiled = CompiledGenomeOptimizer(
        compiled_model.parameters(), genome_, seed=0, backend=backend, **options
    )  # type: ignore[arg-type]
    return eager_model, eager, compiled_model, compiled


def _compare(
    eager_model: nn.Module,
    eager: GenomeOptimizer,
    compiled_model: nn.Module,
    compiled: GenomeOptimizer,
    tol: float,
) -> None:
    for p, q in zip(eager_model.parameters(), compiled_model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=tol, atol=0.0, equal_nan=True)
        assert sorted(compiled.state[q]) == sorted(eager.state[p])
        for key, value in eager.state[p].items():
            torch.testing.assert_close(
                compiled.state[q][key], value, rtol=tol, atol=0.0, equal_nan=True
            )


def _run(genome_: Genome, backend: str, tol: float, **kwargs: object) -> None:
    torch._dynamo.reset()
    counters.clear()
    eager_model, eager, compiled_model, compiled = _pair(genome_, backend, **kwargs)
    train(eager_model, eager, range(STEPS))
    train(compiled_model, compiled, range(STEPS))
    _compare(eager_model, eager, compiled_model, compiled, tol)
    assert compiled.step_count == STEPS
    # One graph for all steps: t, eta_t, mu_t, decays and corrections are inputs, not constants.
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["recompiles"]
    assert not counters["graph_break"]


@pytest.mark.parametrize("name", sorted(GENOMES))
def test_traced_step_equals_eager_bit_for_bit(name: str) -> None:
    _run(GENOMES[name], "aot_eager", 0.0)


def test_traced_step_in_paper_mode_and_constant_lr() -> None:
    """Paper mode (eta held at 0, expMovAvg divides by 0) and no schedule at all."""
    _run(STATEFUL_DECAYED, "aot_eager", 0.0, settings=PAPER_SETTINGS)
    torch._dynamo.reset()
    counters.clear()
    eager_model, compiled_model = make_model(), make_model()
    eager = GenomeOptimizer(eager_model.parameters(), NESTEROV_ADAM, lr=0.02, momentum=0.9)
    compiled = CompiledGenomeOptimizer(
        compiled_model.parameters(), NESTEROV_ADAM, lr=0.02, momentum=0.9, backend="aot_eager"
    )
    for opt, model in ((eager, eager_model), (compiled, compiled_model)):
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)
        for step in range(STEPS):
            opt.zero_grad()
            train(model, opt, range(step, step + 1))
            scheduler.step()
    _compare(eager_model, eager, compiled_model, compiled, 0.0)
    assert not counters["recompiles"]


def test_dropout_genome_takes_the_eager_step() -> None:
    dropout = genome(Node(inputs=(N0,)), Node(inputs=(G,), unary_op=DROP_50))
    torch._dynamo.reset()
    counters.clear()
    eager_model, eager, compiled_model, compiled = _pair(dropout, "aot_eager")
    train(eager_model, eager, range(10))
    train(compiled_model, compiled, range(10))
    _compare(eager_model, eager, compiled_model, compiled, 0.0)
    assert not counters["stats"]["unique_graphs"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adam", "nesterov", "ema_decay"])
def test_inductor_step_equals_eager(name: str) -> None:
    _run(GENOMES[name], "inductor", 1e-12)


def test_every_optimizer_keeps_its_own_graph() -> None:
    """More optimizers than torch.compile's per-function recompile limit all run compiled."""
    torch._dynamo.reset()
    counters.clear()
    count = torch._dynamo.config.recompile_limit + 2
    for _ in range(count):
        weight = torch.zeros(3, requires_grad=True)
        opt = CompiledGenomeOptimizer([weight], ADAM, lr=0.1, backend="aot_eager")
        for _ in range(2):
            weight.grad = torch.ones(3)
            opt.step()
    assert counters["stats"]["unique_graphs"] == count
    assert not counters["recompiles"]
