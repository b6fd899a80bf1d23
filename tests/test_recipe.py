"""A discovered optimizer on its own: a user-driven lr, the schedule switch, the recipe."""

from __future__ import annotations

import pytest
import torch

from optuna_nos import GenomeOptimizer, export_source, parse_equation
from optuna_nos.core.schedules import lr_schedule

EQUATION = "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))"


def _load(source: str) -> dict[str, object]:
    namespace: dict[str, object] = {}
    exec(compile(source, "exported", "exec"), namespace)  # noqa: S102 - our own generated code
    return namespace


@pytest.mark.parametrize("lr", [0.3, 1e-3, 0.0123])
def test_a_changed_lr_follows_the_schedule_of_the_new_peak(lr: float) -> None:
    param = torch.nn.Parameter(torch.ones(3))
    opt = GenomeOptimizer(
        [param], parse_equation(EQUATION), lr=1.0, total_steps=50, warmup_steps=5, hold_steps=3
    )
    opt.param_groups[0]["lr"] = lr
    reference = lr_schedule(lr, 50, 5, 3).tolist()
    assert [opt.lr_at(t) for t in range(50)] == reference


def test_lr_schedule_off_keeps_the_groups_lr_under_a_torch_scheduler() -> None:
    param = torch.nn.Parameter(torch.ones(3))
    opt = GenomeOptimizer(
        [param],
        parse_equation(EQUATION),
        lr=0.1,
        total_steps=20,
        warmup_steps=2,
        lr_schedule=False,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
    for t in range(20):
        assert opt.lr_at(t) == opt.param_groups[0]["lr"]
        param.grad = torch.ones(3)
        opt.step()
        scheduler.step()


def test_export_carries_the_recipe() -> None:
    recipe = {"lr": 0.01, "total_steps": 40, "warmup_steps": 4}
    source = export_source(parse_equation(EQUATION), recipe=recipe)
    module = _load(source)
    assert module["RECIPE"] == recipe and "lr=0.01, total_steps=40" in source
    param = torch.nn.Parameter(torch.ones(3))
    opt = module["EvolvedOptimizer"]([param], **recipe)  # type: ignore[operator]
    reference = GenomeOptimizer(
        [torch.nn.Parameter(torch.ones(3))], parse_equation(EQUATION), **recipe
    )
    assert [opt._lr_at(0.01, t) for t in range(40)] == [reference.lr_at(t) for t in range(40)]
    assert _load(export_source(parse_equation(EQUATION)))["RECIPE"] is None
