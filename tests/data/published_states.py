"""Writes ``published_states.pt``: mid-run state dicts of every published optimizer.

``published_states.pt`` was written by running this script on the version whose
``PublishedOptimizer.state_dict()`` had the layout ``{"state", "param_groups" (lr only),
"nos": {"step", "config"}}`` (the schedule settings lived in ``nos.config``). It is kept so
that tests/test_optimizers.py can check that such state dicts still load and resume.

Run from the repository root: ``PYTHONPATH=. python tests/data/published_states.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from optuna_nos import optimizers

#: (case name, class name, constructor options beyond lr and the schedule).
CASES: list[tuple[str, str, dict[str, Any]]] = [
    *[(name, name, {}) for name in optimizers.PUBLISHED_OPTIMIZERS],
    (
        "Opt4-variant1-no-eps-no-decay",
        "Opt4",
        {"variant": 1, "eps_in_denominator": False, "use_decay": False},
    ),
    ("Opt7-no-decay", "Opt7", {"use_decay": False}),
    ("Opt9-search", "Opt9", {"nesterov": "search"}),
    ("Opt10-search-no-decay", "Opt10", {"nesterov": "search", "use_decay": False}),
    ("AdamClip-variant3", "AdamClip", {"variant": 3}),
]
TOTAL_STEPS, WARMUP_STEPS, HOLD_STEPS = 20, 3, 2
#: Steps taken before the state dict is saved.
SAVED_AT = 8
#: The second parameter gets its first gradient at this step (lazy state, shared t).
LATE_START = 3
LRS = (0.05, 0.02)


def initial_weights() -> list[torch.Tensor]:
    """Two float64 tensors, large enough that the 1e-5 w and 1e-4 w terms matter."""
    first = 300.0 * torch.sin(torch.arange(12, dtype=torch.float64)).reshape(3, 4)
    second = torch.linspace(-2.0, 3.0, 5, dtype=torch.float64)
    return [first, second]


def gradient(weight: torch.Tensor, step: int) -> torch.Tensor:
    """A gradient that depends on the weight and the step."""
    return torch.sin(0.01 * weight + 0.3 * step) + 0.05 * torch.cos(weight)


def make(
    class_name: str, options: dict[str, Any], params: list[torch.Tensor]
) -> torch.optim.Optimizer:
    """The case's optimizer over one param group per tensor."""
    cls = getattr(optimizers, class_name)
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, LRS, strict=True)]
    return cls(
        groups,
        total_steps=TOTAL_STEPS,
        warmup_steps=WARMUP_STEPS,
        hold_steps=HOLD_STEPS,
        **options,
    )


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
    for case, class_name, options in CASES:
        params = [w.clone().requires_grad_() for w in initial_weights()]
        optimizer = make(class_name, options, params)
        run(optimizer, params, range(SAVED_AT))
        saved[case] = {
            "weights": [p.detach().clone() for p in params],
            "optimizer": optimizer.state_dict(),
        }
    torch.save(saved, Path(__file__).with_name("published_states.pt"))


if __name__ == "__main__":
    main()
