"""Update operations against closed forms written here with ``math``.

Every op is evaluated in float64 at sample points and compared with an independent formula;
the print formats are compared with the released log's formats, copied below.
"""

from __future__ import annotations

import math

import pytest
import torch
from closed_forms import (
    BINARY_CLOSED_FORMS,
    RELEASED_BINARY_FORMATS,
    assert_closed_form,
    columns,
)

from optuna_nos.space.update_ops import (
    BINARY_OPS,
    EPS,
    STATEFUL_UNARY,
    UNARY_OPS,
    OpContext,
)

SAMPLES = (-3.0, -1.2, -0.5, -1e-3, 0.0, 2e-4, 0.3, 1.0, 1.545, 2.5, 7.0)
PAIRS = tuple((x, y) for x in (-2.0, -0.4, 0.0, 0.7, 3.0) for y in (-1.5, -0.2, 0.0, 0.5, 2.0))


def i1e_series(x: float) -> float:
    """exp(-|x|) * I1(x) with I1(x) = sum_k (x/2)^(2k+1) / (k! (k+1)!)."""
    total = 0.0
    for k in range(60):
        total += (x / 2.0) ** (2 * k + 1) / (math.factorial(k) * math.factorial(k + 1))
    return math.exp(-abs(x)) * total


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


#: Closed forms of the stateless unary ops.
UNARY_CLOSED_FORMS = {
    -1: lambda x: x,
    0: lambda x: -x,
    1: lambda x: math.log(abs(x) + 1e-7),
    2: lambda x: math.sqrt(abs(x)),
    3: math.exp,
    4: abs,
    5: sigmoid,
    6: lambda x: 1.0 / (1.0 + abs(x)),
    7: lambda x: math.log(abs(1.0 + math.exp(x)) + 1e-7),
    8: math.erf,
    9: lambda x: 1.0 - math.erf(x),
    10: math.asinh,
    11: math.tanh,
    12: math.atan,
    13: lambda x: 1.0 / (x + 1e-7),
    14: i1e_series,
    15: lambda x: max(x, 0.0),
    16: lambda x: min(x, 0.0),
    21: lambda x: x / (1.0 + abs(x)),
}


#: The print formats of the released log.
RELEASED_UNARY_FORMATS = {
    -1: "id({x})",
    0: "-({x})",
    1: "ln(|{x}|)",
    2: "sqrt(|{x}|)",
    3: "exp({x})",
    4: "|{x}|",
    5: "sig({x})",
    6: "1/(1+|{x}|)",
    7: "ln(|1+exp({x})|)",
    8: "erf({x})",
    9: "erfc({x})",
    10: "arcsinh({x})",
    11: "tanh({x})",
    12: "arctan({x})",
    13: "1/({x})",
    14: "bessel_i1e({x})",
    15: "max({x}, 0)",
    16: "min({x}, 0)",
    17: "drop({x}, 0.5)",
    18: "drop({x}, 0.3)",
    19: "drop({x}, 0.1)",
    20: "norm({x})",
    21: "{x}/(1+|{x}|)",
    22: "expMovAvg({x})",
    23: "deltaChange({x})",
    24: "MaxValue({x})",
}


def run_unary(code: int, values: list[float], ctx: OpContext | None = None) -> list[float]:
    op = UNARY_OPS[code]
    assert op.fn is not None
    return op.fn(torch.tensor(values, dtype=torch.float64), ctx or OpContext()).tolist()


def test_tables_hold_exactly_the_spec_ops() -> None:
    assert sorted(UNARY_OPS) == list(range(-1, 25))
    assert sorted(BINARY_OPS) == list(range(10))
    assert EPS == 1e-7
    assert STATEFUL_UNARY == frozenset({22, 23, 24})


@pytest.mark.parametrize("code", sorted(RELEASED_UNARY_FORMATS))
def test_unary_print_format_matches_spec(code: int) -> None:
    assert UNARY_OPS[code].paper == RELEASED_UNARY_FORMATS[code]
    assert UNARY_OPS[code].code == code


@pytest.mark.parametrize("code", sorted(RELEASED_BINARY_FORMATS))
def test_binary_print_format_matches_spec(code: int) -> None:
    assert BINARY_OPS[code].paper == RELEASED_BINARY_FORMATS[code]
    assert BINARY_OPS[code].code == code


@pytest.mark.parametrize("code", sorted(UNARY_CLOSED_FORMS))
def test_stateless_unary_op_matches_closed_form(code: int) -> None:
    assert_closed_form(
        run_unary(code, list(SAMPLES)), [(x,) for x in SAMPLES], UNARY_CLOSED_FORMS[code]
    )


def test_i1e_known_values() -> None:
    """~x/2 near 0, maximum 0.2191 near x = 1.545, -> 0 for large |x|, odd."""
    small, peak, large, negative = run_unary(14, [1e-4, 1.545, 200.0, -1.545])
    assert small == pytest.approx(5e-5, rel=2e-4)
    assert peak == pytest.approx(0.2191, abs=5e-5)
    assert 0.0 < large < 0.03
    assert negative == pytest.approx(-peak, rel=1e-12)
    grid = torch.linspace(0.5, 3.0, 2501, dtype=torch.float64)
    assert UNARY_OPS[14].fn is not None
    values = UNARY_OPS[14].fn(grid, OpContext())
    assert float(grid[int(values.argmax())]) == pytest.approx(1.545, abs=5e-3)


def test_exp_overflows_to_inf_and_nothing_guards_it() -> None:
    assert run_unary(3, [1000.0]) == [math.inf]
    assert math.isnan(run_unary(0, [math.nan])[0])


def test_reciprocal_epsilon_is_not_sign_aware() -> None:
    assert run_unary(13, [-1e-7])[0] == math.inf or abs(run_unary(13, [-1e-7])[0]) > 1e15
    assert run_unary(13, [0.0]) == [pytest.approx(1e7)]


@pytest.mark.parametrize("code,rate", [(17, 0.5), (18, 0.3), (19, 0.1)])
def test_dropout_keeps_1_minus_rate_and_rescales(code: int, rate: float) -> None:
    n = 200_000
    x = torch.full((n,), 3.0, dtype=torch.float64)
    ctx = OpContext(generator=torch.Generator().manual_seed(5))
    fn = UNARY_OPS[code].fn
    assert fn is not None
    out = fn(x, ctx)
    kept = out != 0
    assert torch.allclose(out[kept], torch.full_like(out[kept], 3.0 / (1.0 - rate)))
    dropped = 1.0 - float(kept.double().mean())
    assert abs(dropped - rate) < 5 * math.sqrt(rate * (1 - rate) / n)
    again = fn(x, ctx)
    assert not torch.equal(again, out), "a fresh mask every call"
    replay = fn(x, OpContext(generator=torch.Generator().manual_seed(5)))
    assert torch.equal(replay, out), "the seeded generator makes masks reproducible"


def test_clip_by_norm_over_the_whole_tensor() -> None:
    fn = UNARY_OPS[20].fn
    assert fn is not None
    big = torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)  # norm 5
    assert fn(big, OpContext()).tolist() == [[pytest.approx(0.6), 0.0], [0.0, pytest.approx(0.8)]]
    small = torch.tensor([0.1, -0.2, 0.2], dtype=torch.float64)  # norm 0.3: unchanged
    assert torch.equal(fn(small, OpContext()), small)
    zero = torch.zeros(3, dtype=torch.float64)
    assert fn(zero, OpContext()).tolist() == [0.0, 0.0, 0.0]


def test_clip_by_norm_keeps_batch_dimensions_independent() -> None:
    fn = UNARY_OPS[20].fn
    assert fn is not None
    batch = torch.tensor([[3.0, 4.0], [0.3, 0.4]], dtype=torch.float64)
    out = fn(batch, OpContext(batch_dims=1))
    assert out.tolist() == [[pytest.approx(0.6), pytest.approx(0.8)], [0.3, 0.4]]


def run_stateful(code: int, sequence: list[float], bias_steps: list[int]) -> list[float]:
    op = UNARY_OPS[code]
    assert op.step is not None
    state = torch.zeros(1, dtype=torch.float64)
    outs = []
    for x, k in zip(sequence, bias_steps, strict=True):
        out, state = op.step(
            torch.tensor([x], dtype=torch.float64), state, OpContext(ema_bias_step=k)
        )
        outs.append(float(out[0]))
    return outs


def test_exp_mov_avg_with_bias_correction_at_t_plus_1() -> None:
    xs = [1.0, -2.0, 4.0, 0.5]
    got = run_stateful(22, xs, [1, 2, 3, 4])
    n = 0.0
    for t, (x, value) in enumerate(zip(xs, got, strict=True)):
        n = 0.95 * n + 0.05 * x
        assert value == pytest.approx(n / (1.0 - 0.95 ** (t + 1)), rel=1e-12)
    assert got[0] == pytest.approx(1.0)  # the first output is the input itself


def test_exp_mov_avg_paper_mode_divides_by_zero() -> None:
    """Paper mode: the released bias step is 0, so out = +-inf or NaN."""
    assert run_stateful(22, [1.0, -3.0], [0, 0]) == [math.inf, -math.inf]
    assert math.isnan(run_stateful(22, [0.0], [0])[0])


def test_delta_change_is_an_alternating_sum() -> None:
    xs = [1.0, 3.0, 6.0, 10.0]
    got = run_stateful(23, xs, [1] * 4)
    assert got == [1.0, 3.0 - 1.0, 6.0 - 3.0 + 1.0, 10.0 - 6.0 + 3.0 - 1.0]


def test_max_value_is_a_running_maximum_from_zero() -> None:
    assert run_stateful(24, [-1.0, 2.0, 1.0, 5.0, -7.0], [1] * 5) == [0.0, 2.0, 2.0, 5.0, 5.0]


@pytest.mark.parametrize("code", sorted(BINARY_CLOSED_FORMS))
def test_binary_op_matches_closed_form(code: int) -> None:
    assert_closed_form(
        BINARY_OPS[code].fn(*columns(PAIRS)).tolist(), PAIRS, BINARY_CLOSED_FORMS[code]
    )


def test_pow_special_cases() -> None:
    zero = torch.zeros(3, dtype=torch.float64)
    out = BINARY_OPS[9].fn(zero, torch.tensor([0.0, -1.0, 2.0], dtype=torch.float64))
    assert out.tolist() == [1.0, math.inf, 0.0]
    negative_base = BINARY_OPS[9].fn(
        torch.tensor([-4.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    )
    assert negative_base.tolist() == [2.0]


def test_ops_broadcast_over_leading_batch_dimensions() -> None:
    x = torch.linspace(-2, 2, 12, dtype=torch.float64).reshape(3, 4)
    for code in sorted(UNARY_CLOSED_FORMS):
        out = run_unary(code, x.flatten().tolist())
        assert len(out) == 12
        op = UNARY_OPS[code]
        assert op.fn is not None
        assert op.fn(x, OpContext(batch_dims=1)).shape == (3, 4)
