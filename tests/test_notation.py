"""Paper notation: printing, parsing back and the other two dialects."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import genomes

from optuna_nos.core.errors import NOSError
from optuna_nos.space.compute import CompiledGenome
from optuna_nos.space.decays import DecayNode
from optuna_nos.space.genome import HIDDEN_COLUMNS, N_HIDDEN, ROOT, Genome, Momentum, Node
from optuna_nos.space.notation import format_decay, format_equation
from optuna_nos.space.operands import OperandInputs
from optuna_nos.space.parse import MAX_EQUATION_LENGTH, parse_decay, parse_equation
from optuna_nos.space.update_ops import OpContext

#: The issue's list, the released log's examples, the oracle table, the published optimizers,
#: the log's top 10, prior work and the lr_schedule variant.
EXAMPLES = [
    "None ~ tanh(g)/(1+|tanh(g)|)",
    "None ~ id([sqrt(a6)][v hat/(1+|v hat|)])",
    "Nest ~ (v hat)-(MaxValue(mean(beta*s-g^2)))",
    "Nest ~ (g) / (sqrt(1+(max([deriv_sig(a2)][g^2], 0))^2))",
    "Nest ~ (sign(v hat))-([1/(1+exp(-a4)][tanh(10-5w)])",
    "Mom ~ -([tanh(a12)][(0.95*(sign(g))+0.05*(((1-0.95)*g^2+0.95*s hat)))])",
    "Nest ~ min([(a1)^2][2], norm([deriv_tanh(tanh(a14))][sign(g)]))",
    "None ~ (drop([max(a3, a9)][[deriv_soft(a7)][v hat]/(1+|[deriv_soft(a7)][v hat]|)], 0.5)) "
    "/ (sqrt(1+(clip([deriv_soft(a7)][v hat]/(1+|[deriv_soft(a7)][v hat]|), [(a9)*(a6)]"
    "[((1-0.95)*g^2+0.95*s hat)]))^2))",
    "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))",
    "None ~ clip(v hat, [1/(1+exp(-a11)][ln(|[bessel_i1e(a10)][s hat]|)])",
    # examples from the released log
    "None ~ (min(v hat, [min(a12, a9)][2]))+(10-4w)",
    "None ~ norm([sqrt(a6)][(lam hat)+(((1-0.7)*g+0.7*v hat))])",
    "Mom ~ (g)*([arctan(a4)][ln(|1+exp([max(a9, a10)][g^3])|)])",
    "Nest ~ bessel_i1e(bessel_i1e([(a13)*(a2)][g]))",
    "Nest ~ [(a11)-(a6)][g]/(1+|[(a11)-(a6)][g]|)/(1+|[(a11)-(a6)][g]/(1+|[(a11)-(a6)][g]|)|)",
    "None ~ (0.95*(min([min(a12, a9)][2], v hat))+0.05*((10-6w) / (min([min(a12, a9)][2], "
    "v hat))))",
    # a released-log mutant (MaxValue enters through a latent op)
    "Mom ~ MaxValue([arctan(a4)][ln(|1+exp([max(a9, a10)][g^3])|)])",
    # the integrity oracle table
    "None ~ id(id(g))",
    "None ~ id(-(g))",
    "None ~ id(id(sign(g)))",
    "None ~ id(id(v hat))",
    "None ~ (v hat) / (sqrt(|s hat|))",
    "None ~ bessel_i1e(bessel_i1e(g))",
    "None ~ id(id(g^2))",
    "None ~ id(id(10-4w))",
    "None ~ id(id(1))",
    "None ~ id(id([id(a1)][g]))",
    "None ~ bessel_i1e(bessel_i1e([(a13)*(a2)][g]))",
    "None ~ id(g/(1+|g|))",
    # the released log's top 10 (the others are above)
    "Nest ~ bessel_i1e(id([(a13)*(a2)][g]))",
    "None ~ (10-5w)+([max(a2, a6)][(((1-0.7)*g+0.7*v hat))*(2)])",
    "Nest ~ bessel_i1e(id(arctan(id([(a13)*(a2)][g]))))",
    "Nest ~ id([deriv_tanh(a11)][(g) / (sqrt(1+(10-6w)^2))])",
    "Nest ~ bessel_i1e([id(a6)][bessel_i1e(g)])",
    "None ~ id([sqrt(a6)][(lam hat)+(((1-0.7)*g+0.7*v hat))])",
    "Mom ~ (g)*([arctan(a4)][ln(|1+exp([max(a10, a9)][g^3])|)])",
    # prior work (AddSign, PowerSign)
    "None ~ (exp(([id(a1)][sign(g)])*(sign(v hat))))*(g)",
    "None ~ ((1)+(([id(a1)][sign(g)])*(sign(v hat))))*(g)",
    # the lr_schedule variant
    "None ~ id([tanh(a12)][(v hat) / (sqrt(|s hat|))])",
    # released log, initial population
    "Nest ~ (v hat)+(arcsinh(mean(beta*s-g^2)))",
    "None ~ (ln(|1+exp(sign(v hat))|))*(sign(v hat))",
    "Nest ~ (erf((((1-0.95)*g^2+0.95*s hat)) / (2)))-(v hat)",
    "None ~ (v hat)-([(a2) / (sqrt(1+((a12) / (a9))^2))][arctan(v hat)])",
    "Nest ~ (0.95*(sign(v hat))+0.05*(clip(((1-0.99)*g^2+0.99*lam hat), 10-6w/(1+|10-6w|))))",
    "Nest ~ ((sign(v hat)) / (sqrt(1+([deriv_sig((a6)^2)][1])^2)))*(1)",
    "None ~ ([erf(a4)][((1-0.7)*g+0.7*v hat)]) / (sqrt(1+(id([max(a3, a9)][v hat/(1+|v hat|)]))"
    "^2))",
    "Mom ~ id([(bessel_i1e(a9)) / (sqrt(1+(a6)^2))][id([(a13)*(a2)][g])])",
    "Nest ~ (0.95*(((1-0.7)*g+0.7*v hat))+0.05*([1/(1+exp(-a7)][1/(sign(g))]))",
    "Nest ~ min(1, (v hat)+([deriv_tanh((a10)*(a14))][10-6w]))",
    "None ~ (0.95*([(a4) / (sqrt(1+(a9)^2))][sign(v hat)])+0.05*(deltaChange([erfc(a5)][10-6w])))",
    "None ~ (min(norm(s hat), 0))+([min(id(a9), a4)][(((1-0.7)*g+0.7*v hat)) / (sqrt(1+(((1-0.95)"
    "*g^2+0.95*s hat))^2))])",
    "Nest ~ (g)+((mean(beta*v-g)) / (sqrt(1+((10-6w)+([id(a3)][drop(((1-0.7)*g+0.7*v hat), 0.5)]"
    "))^2)))",
    "Mom ~ ([1/(1+exp(-a13)][sign(g)])-(min(mean(beta*lam-g^3), g))",
]


LOG_SAMPLE = [
    line
    for line in (Path(__file__).parent / "released_log_equations.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if line and not line.startswith("#")
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_examples_round_trip(text: str) -> None:
    genome = parse_equation(text)
    assert format_equation(genome) == text
    assert genome.flip is False
    assert len(genome.active_hidden()) <= N_HIDDEN
    assert parse_equation(format_equation(genome)) == genome  # parsing is canonical


def test_prefix_sets_the_momentum_type() -> None:
    assert parse_equation("None ~ id(tanh(g))").momentum == Momentum.NONE
    assert parse_equation("Mom ~ id(tanh(g))").momentum == Momentum.MOMENTUM
    assert parse_equation("Nest ~ id(tanh(g))").momentum == Momentum.NESTEROV


def test_best_evolved_candidate_structure() -> None:
    """Released-log example: root i1e reads n0 = atan(g) through an (a13)*(a2) decay there."""
    g = parse_equation("Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))")
    assert g.momentum == Momentum.NESTEROV
    assert g.root == Node(inputs=(HIDDEN_COLUMNS[0],), unary_op=14)
    n0 = g.hidden[0]
    assert (n0.inputs, n0.unary_op) == ((0,), 12)
    decay = n0.decays[0]
    assert decay.root == DecayNode(inputs=(12, 1), binary_op=2)
    assert not decay.uses_hidden
    assert g.active_hidden() == (HIDDEN_COLUMNS[0],)


def test_shared_min_node_parses_into_one_node() -> None:
    """A released-log example: the min node is read by the root and by the division node."""
    g = parse_equation(EXAMPLES[15])
    assert len(g.active_hidden()) == 2
    root = g.root
    assert root.binary and root.binary_op == 8
    min_column, div_column = root.inputs
    min_node, div_node = g.node(min_column), g.node(div_column)
    assert min_node.binary and min_node.binary_op == 4 and min_node.inputs == (7, 3)
    assert min_node.decays[7].root == DecayNode(inputs=(11, 8), binary_op=4)
    assert div_node.binary and div_node.binary_op == 5 and div_node.inputs == (8, min_column)
    assert g.topological_order() == (min_column, div_column, ROOT)


def test_softsign_repeats_one_node() -> None:
    """Two released-log examples: the repeated argument is one node (decorations included)."""
    g = parse_equation("None ~ tanh(g)/(1+|tanh(g)|)")
    assert g.root.unary_op == 21 and len(g.active_hidden()) == 1
    assert g.node(g.root.inputs[0]).unary_op == 11
    g8 = parse_equation(EXAMPLES[14])
    assert len(g8.active_hidden()) == 1
    n0 = g8.node(g8.root.inputs[0])
    assert n0.unary_op == 21 and n0.inputs == (0,)
    assert format_decay(n0.decays[0]) == "(a11)-(a6)"


def test_decorated_and_plain_reads_of_one_node_are_two_edges() -> None:
    g = parse_equation("None ~ (tanh(g))*(id([id(a1)][tanh(g)]))")
    assert len(g.active_hidden()) == 2
    tanh_column, id_column = g.root.inputs
    assert g.node(tanh_column).unary_op == 11
    id_node = g.node(id_column)
    assert id_node.inputs == (tanh_column,) and tanh_column in id_node.decays
    assert tanh_column not in g.root.decays


@pytest.mark.parametrize(
    "text",
    [
        "None ~ (id(g))+(id(g))",
        "None ~ max([id(a1)][tanh(g)], tanh(g))",
        "Nest ~ ((tanh(g))*(v hat))-([sqrt(a3)][(tanh(g))*(v hat)])",
    ],
)
def test_a_binary_node_with_two_equal_arguments_reads_twin_nodes(text: str) -> None:
    """Two distinct nodes that print alike cannot merge when one node reads both."""
    g = parse_equation(text)
    first, second = g.root.inputs
    assert first != second
    assert g.node(first) == g.node(second)
    assert format_equation(g) == text
    if "tanh(g))*(v hat)" in text:  # the twins share their own child
        assert g.node(first).inputs == g.node(second).inputs
        assert len(g.active_hidden()) == 3


def test_hidden_nodes_are_numbered_in_post_order_and_unused_slots_are_inactive() -> None:
    g = parse_equation("None ~ (tanh(g))*(id([id(a1)][tanh(g)]))")
    assert g.root.inputs == (HIDDEN_COLUMNS[0], HIDDEN_COLUMNS[1])
    assert g.active_hidden() == HIDDEN_COLUMNS[:2]
    for column in HIDDEN_COLUMNS[2:]:
        assert g.node(column) == Node(inputs=(0,), unary_op=-1)


def test_out_of_range_decays_parse_without_a_range_check() -> None:
    g = parse_equation("None ~ id([(a12)+(a9)][tanh(g)])")
    assert format_decay(g.root.decays[HIDDEN_COLUMNS[0]]) == "(a12)+(a9)"
    with pytest.raises(NOSError):
        g.validate()


def test_decay_with_an_inlined_hidden_node() -> None:
    decay = parse_decay("deriv_tanh(tanh(a14))")
    assert decay.root == DecayNode(inputs=(14,), unary_op=10)
    assert decay.hidden == DecayNode(inputs=(13,), unary_op=4)
    assert decay.uses_hidden and decay.hidden_flag
    binary = parse_decay("(a2) / (sqrt(1+((a12) / (a9))^2))")
    assert binary.root == DecayNode(inputs=(1, 14), binary_op=6)
    assert binary.hidden == DecayNode(inputs=(11, 8), binary_op=5)


def test_sigmoid_decay_keeps_its_missing_parenthesis() -> None:
    decay = parse_decay("1/(1+exp(-a11)")
    assert decay.root == DecayNode(inputs=(10,), unary_op=0)
    assert format_decay(decay) == "1/(1+exp(-a11)"
    with pytest.raises(NOSError):
        parse_decay("1/(1+exp(-a11))")


def test_ambiguous_text_parses_to_one_canonical_genome() -> None:
    """'1/(1+|1|)' is both 1/(1+|x|) and softsign of the operand 1; the first op code wins."""
    g = parse_equation("None ~ id(1/(1+|1|))")
    assert g.node(g.root.inputs[0]).unary_op == 6
    assert parse_equation("None ~ id(1/(1+|1|))") == g


@pytest.mark.parametrize(
    "text,message",
    [
        ("Foo ~ id(g)", "column 1: it must start with"),
        ("None ~id(g)", "column 1"),
        ("", "column 1"),
        ("None ~ tanh(foo)", "column 13: unknown text"),
        ("None ~ tanh(g)xyz", "column 15: unknown text"),
        ("None ~ id( g)", "column 11: unknown text"),
        ("None ~ tanh(g", "column 12: '\\(' is never closed"),
        ("None ~ tanh(g))", "column 15: '\\)' without a matching"),
        ("None ~ id([id(a1)][g]", "column 10"),
        ("None ~ id([id(a1)[g])", "column"),
        ("None ~ g", "column 8: the root is an op"),
        ("None ~ -(g)", "root reads only operands"),
        ("None ~ (g)+(v hat)", "root reads only operands"),
        ("None ~ max(g, g)", "same operand twice"),
        ("None ~ id(max([id(a1)][g], g))", "column 11: a binary node reads the same operand"),
        ("None ~ id([a1][g])", "column 12: a decay applies an op"),
        ("None ~ id([(a1)+(a1)][g])", "same schedule twice"),
        ("None ~ id([(tanh(a1))+(erf(a2))][g])", "one hidden node"),
        ("None ~ id([id(tanh(a1))][g])", "column"),
        ("None ~ id([tanh(a15)][g])", "column 19"),
        ("None ~ ((tanh(g))+(erf(g)))*((sig(g))+(exp(g)))", "more than 5 hidden nodes"),
        ("None ~ id(id(id(id(id(id(id(g)))))))", "nest deeper"),
        ("None ~ [id(a1)][id(g)]", "column 8"),
        ("None ~ id(g, 0.5)", "column"),
        ("None ~ id(g)\n", "column 13"),
        ("None ~ ", "column 8"),
    ],
)
def test_malformed_equations_raise_nos_error_with_a_column(text: str, message: str) -> None:
    with pytest.raises(NOSError, match=message):
        parse_equation(text)


def test_six_nested_nodes_are_allowed_seven_are_not() -> None:
    assert len(parse_equation("None ~ id(id(id(id(id(id(g))))))").active_hidden()) == 5


def test_non_strings_and_huge_input_are_rejected() -> None:
    for value in (None, b"None ~ id(g)", 3, ["None ~ id(g)"]):
        with pytest.raises(NOSError, match="must be a str"):
            parse_equation(value)  # type: ignore[arg-type]
    with pytest.raises(NOSError, match="limit is 20000"):
        parse_equation("None ~ " + "id(" * 7000 + "g" + ")" * 7000)
    with pytest.raises(NOSError, match="must be a str"):
        parse_decay(1.0)  # type: ignore[arg-type]


def test_pathological_input_fails_fast_with_nos_error() -> None:
    half = (MAX_EQUATION_LENGTH - 20) // 2
    for body in (
        "|" * (2 * half),
        "max(g, " * (half // 8) + "g" + ")" * (half // 8),
        "(g)+(" * (half // 3) + "g" + ")" * (half // 3),
        "[id(a1)][" * (half // 5),
        "(|g|)^(" * (half // 4) + "g" + ")" * (half // 4),
    ):
        with pytest.raises(NOSError):
            parse_equation("None ~ " + body)


# -- readable and LaTeX dialects (expected strings written by hand) ---------------------------


def test_readable_dialect() -> None:
    best = parse_equation("Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))")
    assert format_equation(best, "readable") == "nesterov: U = i1e(atan((a13 · a2)·g))"
    ancestor = parse_equation(EXAMPLES[9])
    assert format_equation(ancestor, "readable") == "U = clip(v̂, ±|sigmoid(a11)·ln|i1e(a10)·ŝ||)"
    divisor = parse_equation("Mom ~ (g) / (id([deriv_soft(a7)][10-6w]))")
    assert format_equation(divisor, "readable") == "momentum: U = (g / ((1/(1 + |a7|))·1e-6·w))"


def test_latex_dialect() -> None:
    best = parse_equation("Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))")
    assert format_equation(best, "latex") == (
        r"\text{Nesterov: } U = \operatorname{i1e}\left(\tan^{-1}\left(\left(a_{13} \cdot "
        r"a_{2}\right) \cdot g\right)\right)"
    )
    adam = parse_equation("None ~ (v hat) / (sqrt(|s hat|))")
    assert format_equation(adam, "latex") == (r"U = \frac{\hat{v}}{\sqrt{\left|\hat{s}\right|}}")


def test_unknown_dialect_is_rejected() -> None:
    with pytest.raises(NOSError, match="unknown dialect"):
        format_equation(parse_equation("None ~ id(g/(1+|g|))"), "mathml")  # type: ignore[arg-type]


# -- properties -------------------------------------------------------------------------------


def _evaluate(genome: Genome, steps: int = 4) -> list[torch.Tensor]:
    """U over a few steps on fixed random tensors (float64), stateful ops included."""
    gen = torch.Generator().manual_seed(3)
    compiled = CompiledGenome(genome, total_steps=steps)
    state: dict[int, torch.Tensor] = {}
    outs = []
    for t in range(steps):
        tensors = [torch.randn(6, dtype=torch.float64, generator=gen) for _ in range(5)]
        g, w, v, s, lam = tensors
        inputs = OperandInputs(g=g, w=w, v=v, s=s.abs(), lam=lam, t=t)
        outs.append(compiled.update(inputs, state, OpContext(ema_bias_step=t + 1)))
    return outs


_DROPOUT = {17, 18, 19}


def _uses_dropout(genome: Genome) -> bool:
    return any(
        not genome.node(c).binary and genome.node(c).unary_op in _DROPOUT
        for c in genome.topological_order()
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(genomes())
def test_valid_genomes_survive_format_parse_format(genome: Genome) -> None:
    text = format_equation(genome)
    parsed = parse_equation(text)
    assert format_equation(parsed) == text
    assert parsed.key() == genome.key()
    assert parsed.momentum == genome.momentum
    assert len(parsed.active_hidden()) <= len(genome.active_hidden())
    assert parse_equation(format_equation(parsed)) == parsed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(genomes())
def test_parsed_genome_computes_the_same_update(genome: Genome) -> None:
    """Merging identical sub-expressions changes nothing but dropout masks."""
    if _uses_dropout(genome):
        return
    parsed = parse_equation(format_equation(genome))
    for expected, got in zip(_evaluate(genome), _evaluate(parsed), strict=True):
        torch.testing.assert_close(got, expected, equal_nan=True, rtol=0, atol=0)


_ALPHABET = sorted(set("".join(EXAMPLES)) | set("xyz\n\t{}0123456789"))


def _edited(text: str, rng: random.Random) -> str:
    """A random small edit: delete, duplicate, swap or insert a piece of the text."""
    at = rng.randrange(len(text) + 1)
    span = rng.randrange(1, 8)
    kind = rng.randrange(4)
    if kind == 0:
        return text[:at] + text[at + span :]
    if kind == 1:
        return text[:at] + text[at : at + span] * 2 + text[at + span :]
    if kind == 2 and at + 1 < len(text):
        return text[:at] + text[at + 1] + text[at] + text[at + 2 :]
    return text[:at] + "".join(rng.choice(_ALPHABET) for _ in range(span)) + text[at:]


def _parse_or_nos_error(text: str) -> None:
    try:
        genome = parse_equation(text)
    except NOSError:
        return
    assert format_equation(genome) == text


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["None ~ ", "Mom ~ ", "Nest ~ ", "", "Nest~"]),
    st.text(alphabet=_ALPHABET, max_size=120),
)
def test_random_text_raises_only_nos_error(prefix: str, body: str) -> None:
    _parse_or_nos_error(prefix + body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(genomes(), st.randoms(use_true_random=False))
def test_edited_equations_raise_only_nos_error(genome: Genome, rng: random.Random) -> None:
    text = format_equation(genome)
    for _ in range(3):
        text = _edited(text, rng)
        _parse_or_nos_error(text)


def test_released_log_sample_round_trips() -> None:
    for text in LOG_SAMPLE:
        assert format_equation(parse_equation(text)) == text


def _random_case(rng: random.Random, corpus: list[str]) -> str:
    """An edited equation, a splice of pieces of equations, or a soup of notation tokens."""
    kind = rng.randrange(3)
    if kind == 0:
        text = rng.choice(corpus)
        for _ in range(rng.randrange(1, 4)):
            text = _edited(text, rng)
        return text
    if kind == 1:
        pieces = []
        for _ in range(rng.randrange(1, 6)):
            source = rng.choice(corpus)
            start = rng.randrange(len(source))
            pieces.append(source[start : start + rng.randrange(1, 40)])
        return rng.choice(["None ~ ", "Mom ~ ", "Nest ~ "]) + "".join(pieces)
    tokens = [t for e in corpus[:20] for t in re.findall(r"[a-z_ ]+\(|[^a-z_ ]|[a-z_ ]+", e)]
    return rng.choice(["None ~ ", "Nest ~ "]) + "".join(
        rng.choice(tokens) for _ in range(rng.randrange(1, 60))
    )


@pytest.mark.slow
def test_fuzz_parse_equation_10k() -> None:
    rng = random.Random(20240410)
    corpus = EXAMPLES + LOG_SAMPLE
    parsed = 0
    for _ in range(10_000):
        text = _random_case(rng, corpus)
        try:
            genome = parse_equation(text)
        except NOSError:
            continue
        assert format_equation(genome) == text
        parsed += 1
    assert parsed > 10  # some edits stay valid equations, e.g. a changed operand
