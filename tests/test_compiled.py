"""The compiled optimizer step equals the eager one (float64, CPU), through the warmup and
decay of the learning rate (a new eta_t every step) and with a momentum buffer."""

from __future__ import annotations

import pytest
import torch

from optuna_nos.space.parse import parse_equation
from optuna_nos.torch_optim import GenomeOptimizer
from proxy.compiled import compile_step

pytestmark = pytest.mark.slow


def _params() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(6, 5, generator=generator, dtype=torch.float64).requires_grad_(),
            torch.randn(5, generator=generator, dtype=torch.float64).requires_grad_()]


@pytest.mark.parametrize("equation", [
    "None ~ (v hat) / (sqrt(|s hat|))",
    "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))",
])
def test_compiled_step_equals_eager(equation: str) -> None:
    genome = parse_equation(equation)
    eager_params, compiled_params = _params(), _params()
    settings = {"lr": 1e-2, "total_steps": 8, "warmup_steps": 3, "seed": 0}
    eager = GenomeOptimizer(eager_params, genome, **settings)  # type: ignore[arg-type]
    step = compile_step(GenomeOptimizer(compiled_params, genome, **settings))  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(1)
    for _ in range(6):
        for mine, theirs in zip(compiled_params, eager_params, strict=True):
            grad = torch.randn(mine.shape, generator=generator, dtype=torch.float64)
            mine.grad, theirs.grad = grad.clone(), grad.clone()
        eager.step()
        step()
        for mine, theirs in zip(compiled_params, eager_params, strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-14)
