"""Writes ``genome_states.pt``: mid-run state dicts of GenomeOptimizer and an exported class.

``genome_states.pt`` was written by running this script on the version whose step counter and
dropout generators were plain attributes, saved by ``state_dict()`` under
``"genome_optimizer"`` (GenomeOptimizer) and ``"evolved"`` (exported classes). It is kept so
that tests/test_torch_optim.py can check that such state dicts still load and resume.

Run from the repository root: ``PYTHONPATH=. python tests/data/genome_states.py``.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import torch

from optuna_nos.export import export_source
from optuna_nos.space.parse import parse_equation
from optuna_nos.torch_optim import GenomeOptimizer

#: Dropout, a stateful node and Nesterov momentum: the state dict carries every kind of state.
EQUATION = "Nest ~ (drop(g, 0.5))+(MaxValue(v hat))"
#: case name -> foreach argument of GenomeOptimizer, or None for the exported class.
CASES: dict[str, bool | None] = {"genome-foreach": True, "genome-reference": False,
                                 "exported": None}
TOTAL_STEPS, WARMUP_STEPS, HOLD_STEPS = 20, 3, 2
SEED = 5
#: Steps taken before the state dict is saved.
SAVED_AT = 8
#: The second parameter gets its first gradient at this step (lazy state, shared t).
LATE_START = 3
LRS = (0.05, 0.02)


def exported_class() -> type[torch.optim.Optimizer]:
    """The class export_source writes for EQUATION, imported as a module."""
    name = "exported_genome_states"
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(export_source(parse_equation(EQUATION)), name, "exec"),  # noqa: S102
         module.__dict__)
    return module.EvolvedOptimizer  # type: ignore[no-any-return]


def initial_weights() -> list[torch.Tensor]:
    first = torch.sin(torch.arange(12, dtype=torch.float64)).reshape(3, 4)
    second = torch.linspace(-2.0, 3.0, 5, dtype=torch.float64)
    return [first, second]


def gradient(weight: torch.Tensor, step: int) -> torch.Tensor:
    """A gradient that depends on the weight and the step."""
    return torch.sin(weight + 0.3 * step) + 0.05 * torch.cos(weight)


def make(case: str, params: list[torch.Tensor], seed: int = SEED) -> torch.optim.Optimizer:
    """The case's optimizer over one param group per tensor."""
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, LRS, strict=True)]
    schedule: dict[str, Any] = {"lr": LRS[0], "total_steps": TOTAL_STEPS,
                                "warmup_steps": WARMUP_STEPS, "hold_steps": HOLD_STEPS,
                                "seed": seed}
    foreach = CASES[case]
    if foreach is None:
        return exported_class()(groups, **schedule)
    return GenomeOptimizer(groups, parse_equation(EQUATION), foreach=foreach, **schedule)


def run(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], steps: range) -> None:
    """Set each parameter's gradient and step, for each step in ``steps``."""
    for step in steps:
        for index, param in enumerate(params):
            if index == 1 and step < LATE_START:
                param.grad = None
            else:
                param.grad = gradient(param.detach(), step)
        optimizer.step()


def main() -> None:
    saved: dict[str, Any] = {}
    for case in CASES:
        params = [w.clone().requires_grad_() for w in initial_weights()]
        optimizer = make(case, params)
        run(optimizer, params, range(SAVED_AT))
        saved[case] = {"weights": [p.detach().clone() for p in params],
                       "optimizer": optimizer.state_dict()}
    torch.save(saved, Path(__file__).with_name("genome_states.pt"))


if __name__ == "__main__":
    main()
