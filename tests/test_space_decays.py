"""Decay ops, base schedules and decay graphs against closed forms here."""

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

from optuna_nos.core.errors import NOSError
from optuna_nos.space.decays import (
    BASE_SCHEDULES,
    DECAY_BINARY_OPS,
    DECAY_HIDDEN,
    DECAY_UNARY_OPS,
    Decay,
    DecayNode,
    base_schedule,
    decay_phenotype,
    decay_values,
    is_valid_decay,
)
from optuna_nos.space.notation import format_decay
from optuna_nos.space.parse import parse_decay

SAMPLES = (-2.5, -0.7, 0.0, 0.01, 0.25, 0.5, 0.95, 1.0, 3.0)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def i1e_series(x: float) -> float:
    total = sum(
        (x / 2.0) ** (2 * k + 1) / (math.factorial(k) * math.factorial(k + 1)) for k in range(60)
    )
    return math.exp(-abs(x)) * total


DECAY_UNARY_CLOSED_FORMS = {
    0: sigmoid,
    1: lambda x: 1.0 / (1.0 + abs(x)),
    2: math.erf,
    3: math.erfc,
    4: math.tanh,
    5: math.atan,
    6: i1e_series,
    7: lambda x: x * x,
    8: lambda x: math.sqrt(abs(x)),
    9: lambda x: x / (1.0 + abs(x)),
    10: lambda x: 1.0 - math.tanh(x) ** 2,
    11: lambda x: sigmoid(x) * (1.0 - sigmoid(x)),
    12: lambda x: x,
}
DECAY_BINARY_CLOSED_FORMS = {code: BINARY_CLOSED_FORMS[code] for code in range(7)}
#: The decay print formats of the released log (sigmoid's missing paren included).
RELEASED_DECAY_UNARY = {
    0: "1/(1+exp(-{x})",
    1: "deriv_soft({x})",
    2: "erf({x})",
    3: "erfc({x})",
    4: "tanh({x})",
    5: "arctan({x})",
    6: "bessel_i1e({x})",
    7: "({x})^2",
    8: "sqrt({x})",
    9: "{x}/(1+|{x}|)",
    10: "deriv_tanh({x})",
    11: "deriv_sig({x})",
    12: "id({x})",
}
RELEASED_DECAY_BINARY = {code: RELEASED_BINARY_FORMATS[code] for code in range(7)}


def spec_schedule(name: str, t: int, total: int) -> float:
    """The 14 base schedules, written independently of the package."""
    r = t / total
    beta = 0.95 * (1.0 - (t + 1) / total)
    restart = ((2 * t) % total) / total
    a13 = beta / ((1.0 - 0.95) + beta)
    return {
        "a1": 1.0 - r,
        "a2": r,
        "a3": 0.5 * (1.0 + math.cos(math.pi * r)),
        "a4": 0.5 * (1.0 - math.cos(math.pi * r)),
        "a5": 0.5 * (1.0 + math.cos(2.0 * math.pi * r)),
        "a6": 0.5 * (1.0 - math.cos(2.0 * math.pi * r)),
        "a7": 0.5 * (1.0 + math.cos(math.pi * restart)),
        "a8": 0.5 * (1.0 - math.cos(math.pi * restart)),
        "a9": 1.0 - restart,
        "a10": restart,
        "a11": 0.01**r,
        "a12": 1.0 - 0.01**r,
        "a13": a13,
        "a14": 0.95 - a13,
        "a14_prime": (0.95 - beta) / (0.05 + beta),
    }[name]


def test_tables_hold_exactly_the_spec_decay_ops() -> None:
    assert {c: op.paper for c, op in DECAY_UNARY_OPS.items()} == RELEASED_DECAY_UNARY
    assert {c: op.paper for c, op in DECAY_BINARY_OPS.items()} == RELEASED_DECAY_BINARY


@pytest.mark.parametrize("code", sorted(DECAY_UNARY_CLOSED_FORMS))
def test_decay_unary_op_matches_closed_form(code: int) -> None:
    points = [(x,) for x in SAMPLES]
    assert_closed_form(
        DECAY_UNARY_OPS[code].fn(*columns(points)).tolist(), points, DECAY_UNARY_CLOSED_FORMS[code]
    )


@pytest.mark.parametrize("code", sorted(DECAY_BINARY_CLOSED_FORMS))
def test_decay_binary_op_matches_closed_form(code: int) -> None:
    pairs = [(x, y) for x in SAMPLES for y in (-0.3, 0.0, 0.4, 1.0)]
    assert_closed_form(
        DECAY_BINARY_OPS[code].fn(*columns(pairs)).tolist(), pairs, DECAY_BINARY_CLOSED_FORMS[code]
    )


@pytest.mark.parametrize("name", sorted(BASE_SCHEDULES))
@pytest.mark.parametrize("total", [1, 7, 35, 100, 8000])
def test_base_schedule_matches_spec_formula(name: str, total: int) -> None:
    values = base_schedule(name, total)
    assert values.dtype == torch.float64
    assert values.shape == (total,)
    steps = range(total) if total <= 100 else [0, 1, 799, 3999, 4000, 6001, total - 1]
    for t in steps:
        assert float(values[t]) == pytest.approx(spec_schedule(name, t, total), abs=1e-12), t


def test_base_schedule_names_and_shapes() -> None:
    assert sorted(BASE_SCHEDULES, key=lambda n: (len(n), n))[:14] == [
        f"a{k}" for k in range(1, 15)
    ]
    assert "a14_prime" in BASE_SCHEDULES
    a13 = base_schedule("a13", 100)
    assert float(a13[-1]) == 0.0  # exactly 0 at t = T-1
    assert float(a13[0]) == pytest.approx(0.95, abs=0.01)
    a14_prime = base_schedule("a14_prime", 100)
    assert float(a14_prime[-1]) == pytest.approx(19.0)  # up to 19, fails validity
    a7 = base_schedule("a7", 100)
    assert float(a7[50]) == 1.0 and float(a7[49]) < 0.01  # restart at T/2


@pytest.mark.parametrize("name,total", [("a15", 10), ("A1", 10), ("a1", 0), ("a1", -3)])
def test_base_schedule_rejects_bad_arguments(name: str, total: int) -> None:
    with pytest.raises(NOSError):
        base_schedule(name, total)


def test_decay_values_of_composite_decays() -> None:
    total = 50
    a = {f"a{k}": [spec_schedule(f"a{k}", t, total) for t in range(total)] for k in range(1, 15)}
    cases = {
        "(a13)*(a2)": lambda t: a["a13"][t] * a["a2"][t],
        "1/(1+exp(-a11)": lambda t: sigmoid(a["a11"][t]),
        "min(a12, a9)": lambda t: min(a["a12"][t], a["a9"][t]),
        "deriv_tanh(tanh(a14))": lambda t: 1.0 - math.tanh(math.tanh(a["a14"][t])) ** 2,
        "(a2) / (sqrt(1+((a12) / (a9))^2))": lambda t: (
            a["a2"][t] / math.sqrt(1.0 + (a["a12"][t] / (a["a9"][t] + 1e-7)) ** 2)
        ),
        "tanh(a3)/(1+|tanh(a3)|)": lambda t: math.tanh(a["a3"][t]) / (1 + math.tanh(a["a3"][t])),
        "(erfc(a5))-(a1)": lambda t: math.erfc(a["a5"][t]) - a["a1"][t],
    }
    for text, closed_form in cases.items():
        values = decay_values(parse_decay(text), total).tolist()
        expected = [closed_form(t) for t in range(total)]
        assert values == pytest.approx(expected, rel=1e-9, abs=1e-12), text


def test_hidden_decay_node_counts_only_when_the_root_reads_it() -> None:
    unused = Decay(
        root=DecayNode((3,), unary_op=12), hidden=DecayNode((5,), unary_op=7), hidden_flag=True
    )
    assert not unused.uses_hidden
    assert format_decay(unused) == "id(a4)"
    assert decay_values(unused, 20).tolist() == base_schedule("a4", 20).tolist()
    used = Decay(
        root=DecayNode((DECAY_HIDDEN, 0), binary_op=2), hidden=DecayNode((5,), unary_op=7)
    )
    assert used.uses_hidden
    assert format_decay(used) == "((a6)^2)*(a1)"


def test_validity_range_and_phenotype() -> None:
    assert decay_phenotype(parse_decay("(a13)*(a2)")).shape == (100,)
    assert is_valid_decay(parse_decay("(a13)*(a2)"))
    assert is_valid_decay(parse_decay("1/(1+exp(-a11)"))
    # Released decays that leave [0, 1].
    assert not is_valid_decay(parse_decay("(a12)+(a9)"))
    assert float(decay_phenotype(parse_decay("(a12)+(a9)")).max()) == pytest.approx(1.9, abs=0.05)
    assert not is_valid_decay(parse_decay("(a12) / (a5)"))
    assert not is_valid_decay(parse_decay("(a11)-(a6)"))  # goes below 0
    assert is_valid_decay(parse_decay("id(a14)"))  # a14 rises from ~0 to 0.95


@pytest.mark.parametrize(
    "make",
    [
        lambda: Decay(root=DecayNode((0, 1, 2))),
        lambda: Decay(root=DecayNode(())),
        lambda: Decay(root=DecayNode((15,))),
        lambda: Decay(root=DecayNode((-1,))),
        lambda: Decay(root=DecayNode((2, 2), binary_op=0)),
        lambda: Decay(root=DecayNode((0,), unary_op=13)),
        lambda: Decay(root=DecayNode((0, 1), binary_op=7)),
        lambda: Decay(root=DecayNode((0,)), hidden=DecayNode((DECAY_HIDDEN,))),
        lambda: Decay(root=DecayNode((True,))),
    ],
)
def test_malformed_decay_graphs_raise(make) -> None:  # noqa: ANN001
    with pytest.raises(NOSError):
        make()
