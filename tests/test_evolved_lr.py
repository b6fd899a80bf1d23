"""The evolved LR schedules: the paper's value table, the schedule, the scheduler contract.

References are written from the paper's formulas with numpy/scipy, independently of the package.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import special

from optuna_nos.core.errors import NOSError
from optuna_nos.optimizers import N_EVOLVED_LR_SCHEDULES, EvolvedLR, evolved_lr_factor

#: The paper's table: f_k at T = 96,000 for t/T in RATIOS, as printed.
RATIOS = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
PAPER_TABLE = {
    0: ("0.157", "0.171", "0.302", "0.498", "0.951", "1.68", "1.96"),
    1: ("0.157", "0.171", "0.308", "0.633", "1.83", "3.85", "4.66"),
    2: ("0.0101", "0.109", "0.357", "0.640", "1.53", "3.44", "7.39"),
    3: ("0.346", "0.382", "0.450", "0.586", "0.770", "0.927", "1.05"),
    4: ("1.10", "1.26", "1.70", "2.98", "5.29", "7.48", "9.20"),
    5: ("0.00999", "0.0931", "0.144", "0.103", "0.378", "0.685", "0.780"),
    6: ("1.01", "1.10", "1.22", "1.00", "1.22", "1.34", "1.41"),
    7: ("4.82", "1.96", "1.63", "1.54", "1.52", "1.51", "1.51"),
    8: ("0.0200", "0.197", "0.462", "0.762", "0.462", "0.664", "0.753"),
}


@pytest.mark.parametrize("schedule", sorted(PAPER_TABLE))
def test_factor_matches_spec_table(schedule: int) -> None:
    total = 96_000
    values = evolved_lr_factor(schedule, total)
    assert values.dtype == torch.float64 and values.shape == (total,)
    for ratio, printed in zip(RATIOS, PAPER_TABLE[schedule], strict=True):
        decimals = len(printed.split(".")[1])
        got = values[round(ratio * total)].item()
        assert abs(got - float(printed)) <= 0.5 * 10.0**-decimals, (ratio, printed, got)


def reference_factor(schedule: int, total: int) -> np.ndarray:
    """f_k(t), t = 0..T-1, from the paper's formulas."""
    t = np.arange(total, dtype=np.float64)
    beta = 0.95 * (1.0 - (t + 1.0) / total)
    a1, a2 = 1.0 - t / total, t / total
    a4 = 0.5 * (1.0 - np.cos(np.pi * t / total))
    a6 = 0.5 * (1.0 - np.cos(2.0 * np.pi * t / total))
    a8 = 0.5 * (1.0 - np.cos(np.pi * np.mod(2.0 * t, total) / total))
    a10 = np.mod(2.0 * t, total) / total
    a11, a12 = 0.01 ** (t / total), 1.0 - 0.01 ** (t / total)
    a14p = (0.95 - beta) / (0.05 + beta)

    def d(x: np.ndarray) -> np.ndarray:
        return 1.0 - np.tanh(x) ** 2

    def softsign(x: np.ndarray) -> np.ndarray:
        return x / (1.0 + np.abs(x))

    def deriv_soft(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.abs(x))

    return [
        lambda: special.erfc(special.erfc(a4)) / d(a8),
        lambda: special.erfc(special.erfc(a4)) / (d(a8) * d(a4)),
        lambda: np.arctan(a2) / (d(a10) * np.sqrt(deriv_soft(a14p))),
        lambda: special.expit(a2) ** 2 / special.expit(2.0 * softsign(a1)),
        lambda: 1.0 / np.sqrt(special.erf(a11)),
        lambda: np.arctan(a2) * special.erfc(a6) / np.sqrt(deriv_soft(a6)),
        lambda: 1.0 / np.sqrt(deriv_soft(a10)),
        lambda: 1.0 / (np.sqrt(softsign(np.arctan(a12))) + 1e-7),
        lambda: np.tanh(np.maximum(a10, a6)),
    ][schedule]()


def reference_base_lr(lr: float, total: int, warmup: int, hold: int) -> np.ndarray:
    """eta_base(t): warmup -> hold at eta -> cosine."""
    out = np.empty(total)
    for t in range(total):
        if t < warmup:
            out[t] = lr * t / warmup
        elif hold > 0 and t <= warmup + hold:
            out[t] = lr
        else:
            out[t] = (
                0.5
                * lr
                * (1.0 + math.cos(math.pi * (t - warmup - hold) / (total - warmup - hold)))
            )
    return out


@pytest.mark.parametrize("schedule", range(N_EVOLVED_LR_SCHEDULES))
@pytest.mark.parametrize(("warmup", "hold"), [(5, 8), (0, 0)])
def test_scheduler_sets_the_spec_rates(schedule: int, warmup: int, hold: int) -> None:
    total, lrs = 50, (0.3, 0.02)
    params = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)])
    scheduler = EvolvedLR(opt, schedule, total_steps=total, warmup_steps=warmup, hold_steps=hold)
    factor = reference_factor(schedule, total)
    base = {lr: reference_base_lr(lr, total, warmup, hold) for lr in lrs}
    for t in range(total + 1):
        for group, lr in zip(opt.param_groups, lrs, strict=True):
            if t == 0:
                expected = 1e-7  # the project's lr_0
            else:
                t_table = min(t, total - 1)  # after the last step the rate stays
                expected = base[lr][t_table] * factor[t_table] + 1e-7
            assert group["lr"] == pytest.approx(expected, rel=1e-12, abs=1e-20), (t, lr)
        opt.step()
        if t < total:
            scheduler.step()
    with pytest.raises(NOSError, match="total_steps=50"):
        scheduler.step()


# ------------------------------------------------------------------- contract, any optimizer

TOTAL, WARMUP, HOLD = 60, 6, 6
OPTIMIZERS: dict[str, Callable[[object], torch.optim.Optimizer]] = {
    "SGD": lambda params: torch.optim.SGD(params, lr=0.02, momentum=0.9),  # type: ignore[arg-type]
    "Adam": lambda params: torch.optim.Adam(params, lr=0.2),  # type: ignore[arg-type]
}


def _model(dtype: torch.dtype) -> torch.nn.Linear:
    torch.manual_seed(1)
    return torch.nn.Linear(4, 1).to(dtype)


def _loss(model: torch.nn.Linear) -> torch.Tensor:
    """Mean squared error of a fixed linear regression problem, computed in float32.

    (bfloat16 matmuls are slow on CPU; parameters, gradients and optimizer state keep the
    model's dtype.)
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    y = x @ torch.randn(4, 1, generator=gen) + 0.1 * torch.randn(64, 1, generator=gen)
    prediction = torch.nn.functional.linear(x, model.weight.float(), model.bias.float())
    return torch.nn.functional.mse_loss(prediction, y)


def _train(
    model: torch.nn.Linear, opt: torch.optim.Optimizer, scheduler: EvolvedLR, steps: int
) -> None:
    for _ in range(steps):
        opt.zero_grad()
        _loss(model).backward()
        opt.step()
        scheduler.step()


@pytest.mark.parametrize("schedule", range(N_EVOLVED_LR_SCHEDULES))
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_loss_decreases_without_nan(schedule: int, optimizer: str, dtype: torch.dtype) -> None:
    model = _model(dtype)
    before = float(_loss(model).detach())
    opt = OPTIMIZERS[optimizer](model.parameters())
    scheduler = EvolvedLR(opt, schedule, total_steps=TOTAL, warmup_steps=WARMUP, hold_steps=HOLD)
    _train(model, opt, scheduler, 40)
    after = float(_loss(model).detach())
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert math.isfinite(after) and after < 0.2 * before, (before, after)


@pytest.mark.parametrize("schedule", range(N_EVOLVED_LR_SCHEDULES))
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_state_dict_resumes_bit_exactly(schedule: int, optimizer: str) -> None:
    def build(model: torch.nn.Linear) -> tuple[torch.optim.Optimizer, EvolvedLR]:
        opt = OPTIMIZERS[optimizer](model.parameters())
        return opt, EvolvedLR(
            opt, schedule, total_steps=TOTAL, warmup_steps=WARMUP, hold_steps=HOLD
        )

    model = _model(torch.float32)
    opt, scheduler = build(model)
    _train(model, opt, scheduler, 20)
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "scheduler": scheduler.state_dict(),
        },
        buffer,
    )
    _train(model, opt, scheduler, 20)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = _model(torch.float32)
    resumed.load_state_dict(saved["model"])
    resumed_opt, resumed_scheduler = build(resumed)
    resumed_opt.load_state_dict(saved["opt"])
    resumed_scheduler.load_state_dict(saved["scheduler"])
    assert resumed_scheduler.last_epoch == 20
    assert resumed_scheduler.get_last_lr() == pytest.approx(
        [g["lr"] for g in resumed_opt.param_groups], rel=0, abs=0
    )
    _train(resumed, resumed_opt, resumed_scheduler, 20)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert scheduler.get_last_lr() == resumed_scheduler.get_last_lr()


def test_state_dict_is_small_and_checked() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    state = EvolvedLR(opt, 3, total_steps=1000).state_dict()
    assert not any(isinstance(value, torch.Tensor) for value in state.values())
    other = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(NOSError, match="schedule"):
        EvolvedLR(other, 4, total_steps=1000).load_state_dict(state)
    with pytest.raises(NOSError, match="total_steps"):
        EvolvedLR(other, 3, total_steps=999).load_state_dict(state)


@pytest.mark.parametrize(
    ("schedule", "named"), [(9, "9"), (-1, "-1"), (True, "True"), ("0", "'0'"), (1.0, "1.0")]
)
def test_bad_schedule_index_raises(schedule: object, named: str) -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(NOSError, match=named.replace(".", r"\.")):
        EvolvedLR(opt, schedule, total_steps=10)  # type: ignore[arg-type]
    with pytest.raises(NOSError, match=named.replace(".", r"\.")):
        evolved_lr_factor(schedule, 10)  # type: ignore[arg-type]


def test_bad_arguments_raise() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(NOSError, match="total_steps"):
        EvolvedLR(opt, 0, total_steps=10, warmup_steps=6, hold_steps=4)
    with pytest.raises(NOSError, match="Optimizer"):
        EvolvedLR("sgd", 0, total_steps=10)  # type: ignore[arg-type]
