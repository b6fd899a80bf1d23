"""Writes ``genome_states.pt``: mid-run state dicts of GenomeOptimizer and an exported class.

``genome_states.pt`` was written by running this script on the version whose step counter and
dropout generators were plain attributes, saved by ``state_dict()`` under
``"genome_optimizer"`` (GenomeOptimizer) and ``"evolved"`` (exported classes). It is kept so
that tests/test_torch_optim.py can check that such state dicts still load and resume.

The weights, gradients, schedule and run are those of ``published_states.py``.
Run from the repository root: ``PYTHONPATH=. python tests/data/genome_states.py``.
"""

from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path
from typing import Any

import torch

from optuna_nos.optim.export import export_source
from optuna_nos.optim.torch_optim import GenomeOptimizer
from optuna_nos.space.parse import parse_equation

_PUBLISHED = runpy.run_path(str(Path(__file__).with_name("published_states.py")))
TOTAL_STEPS, WARMUP_STEPS, HOLD_STEPS = (
    _PUBLISHED[key] for key in ("TOTAL_STEPS", "WARMUP_STEPS", "HOLD_STEPS")
)
SAVED_AT, LRS = _PUBLISHED["SAVED_AT"], _PUBLISHED["LRS"]
initial_weights, run = _PUBLISHED["initial_weights"], _PUBLISHED["run"]

#: Dropout, a stateful node and Nesterov momentum: the state dict carries every kind of state.
EQUATION = "Nest ~ (drop(g, 0.5))+(MaxValue(v hat))"
#: case name -> foreach argument of GenomeOptimizer, or None for the exported class.
CASES: dict[str, bool | None] = {
    "genome-foreach": True,
    "genome-reference": False,
    "exported": None,
}
SEED = 5


def exported_class() -> type[torch.optim.Optimizer]:
    """The class export_source writes for EQUATION, imported as a module."""
    name = "exported_genome_states"
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(
        compile(export_source(parse_equation(EQUATION)), name, "exec"),  # noqa: S102
        module.__dict__,
    )
    return module.EvolvedOptimizer  # type: ignore[no-any-return]


def make(case: str, params: list[torch.Tensor], seed: int = SEED) -> torch.optim.Optimizer:
    """The case's optimizer over one param group per tensor."""
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, LRS, strict=True)]
    schedule: dict[str, Any] = {
        "lr": LRS[0],
        "total_steps": TOTAL_STEPS,
        "warmup_steps": WARMUP_STEPS,
        "hold_steps": HOLD_STEPS,
        "seed": seed,
    }
    foreach = CASES[case]
    if foreach is None:
        return exported_class()(groups, **schedule)
    return GenomeOptimizer(groups, parse_equation(EQUATION), foreach=foreach, **schedule)


def main() -> None:
    saved: dict[str, Any] = {}
    for case in CASES:
        params = [w.clone().requires_grad_() for w in initial_weights()]
        optimizer = make(case, params)
        run(optimizer, params, range(SAVED_AT))
        saved[case] = {
            "weights": [p.detach().clone() for p in params],
            "optimizer": optimizer.state_dict(),
        }
    torch.save(saved, Path(__file__).with_name("genome_states.pt"))


if __name__ == "__main__":
    main()
