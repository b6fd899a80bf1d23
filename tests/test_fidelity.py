"""Paper mode reproduces the released code's arithmetic on every path.

The expected numbers come from the released TensorFlow code (run unmodified) and from
closed forms, never from this project's own output:

* the EMAs are ``beta * m + (1 - beta) * x``: with m = x = inf they stay inf (a lerp
  ``m + w (x - m)`` gives NaN);
* in paper mode beta, 1 - beta and the bias corrections 1 - beta^(t+1) are float32 values, so
  lam hat after gradients 1, 2 is 4.5017805 (the exact value is 4.50175088);
* in paper mode sign(NaN) is NaN (torch's sign gives 0).

Paths: GenomeOptimizer's reference loop and foreach lists, the exported module, the batched
and sequential integrity check and the behaviour key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_export import _load

from optuna_nos.core.settings import DEFAULT_SETTINGS, PAPER_SETTINGS, Settings
from optuna_nos.optim.export import export_source
from optuna_nos.optim.integrity import (
    behaviour_key,
    integrity_check,
    integrity_check_sequential,
    sphere_losses,
    sphere_run,
)
from optuna_nos.optim.torch_optim import GenomeOptimizer
from optuna_nos.space.arithmetic import Arithmetic
from optuna_nos.space.genome import Genome
from optuna_nos.space.operands import OPERANDS, OperandInputs
from optuna_nos.space.parse import parse_equation

MODES = {"paper": PAPER_SETTINGS, "default": DEFAULT_SETTINGS}
#: lam hat after gradients 1, 2: the released code's float32 value, and the exact value.
LAM_HAT_RELEASED = 4.5017805
LAM_HAT_EXACT = 4.50175088

Step = Callable[[], None]


def _load_export(genome: Genome, settings: Settings, tmp_path: Path) -> Any:
    return _load(
        export_source(genome, settings=settings),
        tmp_path,
        f"fidelity_export_{settings.paper_mode}",
    )


def _optimizer(
    path: str,
    genome: Genome,
    settings: Settings,
    param: torch.Tensor,
    tmp_path: Path,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """The optimizer of one path: GenomeOptimizer's reference or foreach loop, or the export."""
    if path == "export":
        module = _load_export(genome, settings, tmp_path)
        return module.EvolvedOptimizer([param], **kwargs)  # type: ignore[no-any-return]
    return GenomeOptimizer([param], genome, settings=settings, foreach=path == "foreach", **kwargs)


def _run(optimizer: torch.optim.Optimizer, param: torch.Tensor, grads: list[float]) -> list[float]:
    """Feed each gradient to the one-element parameter; the parameter after every step."""
    out = []
    for g in grads:
        param.grad = torch.full_like(param, g)
        optimizer.step()
        out.append(float(param))
    return out


PATHS = ("reference", "foreach", "export")


# -- repro 1: the EMA form ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", PATHS)
def test_ema_of_inf_stays_inf(path: str, mode: str, tmp_path: Path) -> None:
    """None ~ id(id(v hat)), lr 0.1, T = 4, W = 1, gradients 1, inf, inf: at step 2 the
    released code has v = inf and the update -inf (a lerp gives NaN for both)."""
    genome = parse_equation("None ~ id(id(v hat))")
    param = torch.zeros(1, dtype=torch.float32)
    optimizer = _optimizer(
        path, genome, MODES[mode], param, tmp_path, lr=0.1, total_steps=4, warmup_steps=1
    )
    trajectory = _run(optimizer, param, [1.0, math.inf, math.inf])
    assert trajectory[2] == -math.inf
    assert float(optimizer.state[param]["v"]) == math.inf


def test_integrity_sphere_keeps_inf() -> None:
    """``id(exp(v hat))`` flipped only ever adds exp(.) >= 0 to x: once x overflows, x, g, v and
    v hat stay +inf, so the tested loss is +inf, never NaN (a lerp EMA turns inf into NaN)."""
    genome = parse_equation("None ~ id(exp(v hat))")
    for settings in MODES.values():
        flipped = sphere_losses(genome, settings)[1]
        assert not flipped.isnan().any()
        assert flipped[0] == math.inf
        assert sphere_run(genome, 1.0, flip=True, settings=settings) == math.inf


# -- repro 2: float32 constants and bias corrections ---------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("mode", "expected"), [("paper", LAM_HAT_RELEASED), ("default", LAM_HAT_EXACT)]
)
def test_lam_hat_after_two_steps(path: str, mode: str, expected: float, tmp_path: Path) -> None:
    """None ~ id(id(lam hat)), lr 1, T = 40, W = 1, gradients 1, 2, -1.5: lam hat after the
    second step is 4.5017805 in the released code (4.50175088 exactly)."""
    genome = parse_equation("None ~ id(id(lam hat))")
    param = torch.zeros(1, dtype=torch.float32)
    optimizer = _optimizer(
        path, genome, MODES[mode], param, tmp_path, lr=1.0, total_steps=40, warmup_steps=1
    )
    trajectory = _run(optimizer, param, [1.0, 2.0, -1.5])
    assert trajectory[0] == 0.0  # eta_0 = 0 during warmup
    eta_1 = 0.5 * (1.0 + math.cos(math.pi * 0 / 39))  # cosine phase starts at t = W = 1
    lam_hat = -trajectory[1] / eta_1
    # float32 resolves 5e-7 here; the two values are 3e-5 apart.
    assert lam_hat == pytest.approx(expected, abs=2e-6)


@pytest.mark.parametrize("path", PATHS)
def test_paper_mode_ema_weights_are_float32(path: str, tmp_path: Path) -> None:
    """One step from zero state: v = (1 - 0.9) g with 1 - 0.9 = 0.10000002 (float32), s and lam
    with 0.00999999 and 0.00099998713; the default keeps 0.1, 0.01, 0.001."""
    genome = parse_equation("None ~ id(id(g))")
    for settings, weights in (
        (PAPER_SETTINGS, (0.10000002, 0.00999999, 0.00099998713)),
        (DEFAULT_SETTINGS, (0.1, 0.01, 0.001)),
    ):
        param = torch.zeros(1, dtype=torch.float64)
        optimizer = _optimizer(path, genome, settings, param, tmp_path, lr=0.0)
        _run(optimizer, param, [1.0])
        state = optimizer.state[param]
        for key, weight in zip(("v", "s", "lam"), weights, strict=True):
            assert float(state[key]) == pytest.approx(weight, rel=1e-7)


VERDICT_GENOME = "Mom ~ (lam hat) / (id((mean(beta*s-g^2)) / (g^2)))"


@pytest.mark.parametrize("check", [integrity_check, integrity_check_sequential])
def test_integrity_verdict_follows_the_released_code(check: Callable[..., Any]) -> None:
    """The released code passes this genome flipped at lr 1e-4; exact bias terms at 1e-3."""
    genome = parse_equation(VERDICT_GENOME)
    paper = check(genome, PAPER_SETTINGS)
    assert (paper.passed, paper.flip, paper.lr) == (True, True, 1e-4)
    default = check(genome, DEFAULT_SETTINGS)
    assert (default.passed, default.flip, default.lr) == (True, True, 1e-3)


def test_behaviour_key_follows_the_arithmetic() -> None:
    """EMA-reading genomes hash differently in the two modes; EMA-free ones alike."""
    for equation in ("None ~ id(id(lam hat))", "None ~ id(id(v hat))"):
        genome = parse_equation(equation)
        assert behaviour_key(genome, PAPER_SETTINGS) != behaviour_key(genome, DEFAULT_SETTINGS)
    plain = parse_equation("None ~ id(id(g))")
    assert behaviour_key(plain, PAPER_SETTINGS) == behaviour_key(plain, DEFAULT_SETTINGS)


# -- repro 3: sign of NaN --------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("operand", ["sign(g)", "sign(v hat)"])
def test_sign_of_nan(path: str, operand: str, tmp_path: Path) -> None:
    """sign(NaN) is NaN in the released code (paper mode) and 0 in torch (default)."""
    genome = parse_equation(f"None ~ id(id({operand}))")
    for settings, nan_result in ((PAPER_SETTINGS, True), (DEFAULT_SETTINGS, False)):
        param = torch.zeros(1, dtype=torch.float32)
        optimizer = _optimizer(path, genome, settings, param, tmp_path, lr=0.5)
        (after,) = _run(optimizer, param, [math.nan])
        assert math.isnan(after) is nan_result
        if not nan_result:
            assert after == 0.0


# -- the other beta constants: QHM blends and AggMo means ---------------------------------


def _released_operands(
    g: np.ndarray, v: np.ndarray, s: np.ndarray, lam: np.ndarray, t: int
) -> dict[int, np.ndarray]:
    """Operands 14..19 as the released code computes them, in numpy float32."""
    f = np.float32
    one, three = f(1.0), f(3.0)
    b7, b9, b95, b99, b999, b9999 = (f(b) for b in (0.7, 0.9, 0.95, 0.99, 0.999, 0.9999))
    step = f(t + 1)
    g2, g3 = g * g, g * g * g
    v_hat, s_hat, lam_hat = (
        state / (one - beta**step) for state, beta in ((v, b9), (s, b99), (lam, b999))
    )
    return {
        14: (one - b7) * g + b7 * v_hat,
        15: (one - b95) * g2 + b95 * s_hat,
        16: (one - b99) * g3 + b99 * lam_hat,
        17: (-g + (b9 * v - g) + (b999 * v - g)) / three,
        18: (-g2 + (b99 * s - g2) + (b999 * s - g2)) / three,
        19: (-g3 + (b999 * lam - g3) + (b9999 * lam - g3)) / three,
    }


def test_paper_mode_qhm_and_aggmo_operands_equal_the_released_formulas() -> None:
    """Float32 inputs: operands 14..19 equal, bit for bit, the released code's float32 sums
    with float32 beta and 1 - beta (1 - 0.95 = 0.050000012, not 0.05)."""
    rng = np.random.default_rng(3)
    g, v, s, lam = (rng.normal(size=64).astype(np.float32) for _ in range(4))
    s = np.abs(s)
    t = 4
    expected = _released_operands(g, v, s, lam, t)
    tensors = {k: torch.from_numpy(a) for k, a in (("g", g), ("v", v), ("s", s), ("lam", lam))}
    inputs = OperandInputs(
        **tensors, w=torch.zeros(64), t=t, arithmetic=Arithmetic.of(PAPER_SETTINGS)
    )
    for index, want in expected.items():
        assert torch.equal(OPERANDS[index].fn(inputs), torch.from_numpy(want)), index
