"""Random decays and random genomes against the released code's draw rules.

Frequencies are checked against the released code's probabilities within 5 binomial standard
deviations; the draws are structural (no integrity check), so they are cheap.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, PAPER_SETTINGS, Settings
from optuna_nos.optim.evolve import random_genome
from optuna_nos.space import random_genome as random_module
from optuna_nos.space.decays import DECAY_HIDDEN, Decay, is_valid_decay
from optuna_nos.space.genome import HIDDEN_COLUMNS, ROOT, Genome, Momentum, Node
from optuna_nos.space.random_genome import (
    draw_decay,
    draw_genome,
    draw_hidden_node,
    draw_root,
    has_active_cycle,
    random_decay,
)
from testkit.stats import assert_rate

N_OPERANDS = 20


def assert_uniform(counts: Counter[int], values: range | list[int], what: str) -> None:
    total = sum(counts.values())
    assert set(counts) <= set(values), f"{what}: unexpected values {set(counts) - set(values)}"
    for value in values:
        assert_rate(counts[value], total, 1.0 / len(values), f"{what} = {value}")


# -- decays -----------------------------------------------------------------------------------


def test_draw_decay_frequencies_follow_spec_4_3() -> None:
    rng = np.random.default_rng(1)
    decays = [draw_decay(rng) for _ in range(20_000)]
    n = len(decays)
    assert_rate(sum(d.hidden.binary for d in decays), n, 0.2, "D binary")
    assert_rate(sum(d.root.binary for d in decays), n, 0.2, "R binary")
    assert_uniform(Counter(d.hidden.unary_op for d in decays), range(13), "D latent unary op")
    assert_uniform(Counter(d.root.binary_op for d in decays), range(7), "R latent binary op")
    # D reads schedules only; a binary D reads two distinct ones, in either order.
    assert all(max(d.hidden.inputs) <= 13 for d in decays)
    assert all(len(set(d.hidden.inputs)) == len(d.hidden.inputs) for d in decays)
    assert_uniform(Counter(d.hidden.inputs[0] for d in decays), range(14), "D input 1")

    unary_roots = [d.root for d in decays if not d.root.binary]
    # 0.2 for "D for sure", plus 0.8 * 1/15 from the uniform draw over {a1..a14, D}.
    p_reads_d = 0.2 + 0.8 / 15
    assert_rate(
        sum(r.inputs == (DECAY_HIDDEN,) for r in unary_roots),
        len(unary_roots),
        p_reads_d,
        "unary R reads D",
    )
    schedules = Counter(r.inputs[0] for r in unary_roots if r.inputs[0] != DECAY_HIDDEN)
    assert_uniform(schedules, range(14), "unary R schedule input")

    binary_roots = [d.root for d in decays if d.root.binary]
    nb = len(binary_roots)
    assert all(r.inputs[0] != r.inputs[1] for r in binary_roots)
    assert_rate(
        sum(r.inputs[0] == DECAY_HIDDEN for r in binary_roots),
        nb,
        0.2 * 0.5 + 0.8 / 15,
        "binary R reads D first",
    )
    assert_rate(
        sum(r.inputs[1] == DECAY_HIDDEN for r in binary_roots),
        nb,
        0.2 * 0.5,
        "binary R reads D second",
    )
    assert all(d.hidden_flag == (DECAY_HIDDEN in d.root.inputs) for d in decays)


def test_random_decay_is_valid_and_redraws() -> None:
    rng = np.random.default_rng(2)
    for _ in range(300):
        decay = random_decay(rng)
        assert is_valid_decay(decay)


@pytest.mark.parametrize("settings", [DEFAULT_SETTINGS, PAPER_SETTINGS])
def test_random_decay_passes_the_nan_rule_of_the_mode(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []

    def spy(decay: Decay, *, nan_valid: bool = False) -> bool:
        seen.append(nan_valid)
        return len(seen) >= 3  # the first two draws are "invalid": redrawn

    monkeypatch.setattr(random_module, "is_valid_decay", spy)
    random_decay(np.random.default_rng(0), settings)
    assert seen == [settings.paper_mode] * 3


# -- nodes ------------------------------------------------------------------------------------


def _draw_hidden_nodes(settings: Settings, n: int, seed: int) -> list[tuple[int, Node]]:
    rng = np.random.default_rng(seed)
    return [(c, draw_hidden_node(rng, c, settings)) for _ in range(n) for c in HIDDEN_COLUMNS]


def test_hidden_node_frequencies_follow_spec_6_1() -> None:
    drawn = _draw_hidden_nodes(DEFAULT_SETTINGS, 2_000, seed=3)
    nodes = [node for _, node in drawn]
    n = len(nodes)
    assert_rate(sum(node.binary for node in nodes), n, 0.25, "hidden binary")
    assert_rate(sum(node.unary_op == -1 for node in nodes), n, 0.2, "latent identity")
    assert_uniform(
        Counter(nd.unary_op for nd in nodes if nd.unary_op != -1), range(25), "latent unary op"
    )
    assert_uniform(Counter(node.binary_op for node in nodes), range(10), "latent binary op")

    firsts = [(c, node.inputs[0]) for c, node in drawn]
    assert_rate(sum(i < N_OPERANDS for _, i in firsts), n, 0.8, "input 1 is an operand")
    assert_uniform(Counter(i for _, i in firsts if i < N_OPERANDS), range(20), "input 1 operand")
    assert all(i != c for c, i in firsts), "input 1 never the node itself"

    binary = [(c, node) for c, node in drawn if node.binary]
    assert_rate(
        sum(nd.inputs[1] < N_OPERANDS for _, nd in binary),
        len(binary),
        0.8,
        "input 2 is an operand",
    )
    assert all(nd.inputs[0] != nd.inputs[1] for _, nd in binary)
    # Project default: a hidden node never reads itself.
    assert all(c not in node.inputs for c, node in drawn)

    edges = sum(len(node.inputs) for node in nodes)
    assert_rate(sum(len(node.decays) for node in nodes), edges, 0.15, "edge decay")
    assert all(set(node.decays) <= set(node.inputs) for node in nodes)
    assert all(is_valid_decay(d) for node in nodes for d in node.decays.values())


def test_paper_mode_hidden_node_may_read_itself() -> None:
    drawn = _draw_hidden_nodes(PAPER_SETTINGS, 2_000, seed=4)
    # Input 2 of a binary node whose input 1 is hidden: a hidden node other than input 1,
    # uniform over 4 columns that include the node itself.
    cases = [
        (c, node)
        for c, node in drawn
        if node.binary and node.inputs[0] >= N_OPERANDS and node.inputs[1] >= N_OPERANDS
    ]
    self_loops = sum(node.inputs[1] == c for c, node in cases)
    assert self_loops > 0
    assert_rate(self_loops, len(cases), 0.25, "paper-mode self-loop on input 2")
    assert all(node.inputs[0] != c for c, node in drawn)


def test_root_frequencies_follow_spec_6_1() -> None:
    rng = np.random.default_rng(5)
    roots = [draw_root(rng) for _ in range(8_000)]
    n = len(roots)
    assert_rate(sum(r.binary for r in roots), n, 0.75, "root binary")
    assert_rate(sum(r.unary_op == -1 for r in roots), n, 0.2, "root latent identity")

    unary = [r for r in roots if not r.binary]
    assert_uniform(Counter(r.inputs[0] for r in unary), list(HIDDEN_COLUMNS), "unary root input")
    assert_rate(sum(len(r.decays) for r in unary), len(unary), 0.85, "unary root decay")

    binary = [r for r in roots if r.binary]
    nb = len(binary)
    assert_rate(sum(r.inputs[0] < N_OPERANDS for r in binary), nb, 0.8, "root input 1 operand")
    operand_first = [r for r in binary if r.inputs[0] < N_OPERANDS]
    assert all(r.inputs[1] in HIDDEN_COLUMNS for r in operand_first)
    hidden_first = [r for r in binary if r.inputs[0] >= N_OPERANDS]
    assert_rate(
        sum(r.inputs[1] < N_OPERANDS for r in hidden_first),
        len(hidden_first),
        0.8,
        "root input 2 operand after a hidden input 1",
    )
    assert all(r.inputs[0] != r.inputs[1] for r in binary)
    assert_rate(sum(len(r.decays) for r in binary), 2 * nb, 0.15, "binary root edge decay")


def test_unary_root_decay_probability_is_a_setting() -> None:
    rng = np.random.default_rng(6)
    settings = Settings(unary_root_decay_prob=0.15)
    unary = [r for r in (draw_root(rng, settings) for _ in range(6_000)) if not r.binary]
    assert_rate(sum(len(r.decays) for r in unary), len(unary), 0.15, "unary root decay")


# -- whole genomes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def draws() -> list[Genome | None]:
    rng = np.random.default_rng(7)
    return [draw_genome(rng) for _ in range(3_000)]


def test_draw_genome_results_validate_and_cover_momentum_types(
    draws: list[Genome | None],
) -> None:
    genomes = [g for g in draws if g is not None]
    assert 0 < len(genomes) < len(draws), "cyclic draws are returned as None, some are not"
    for genome in genomes:
        assert isinstance(genome, Genome)
        assert genome.flip is False
        genome.validate()
        assert any(c in HIDDEN_COLUMNS for c in genome.root.inputs)
    assert_uniform(Counter(int(g.momentum) for g in genomes), range(3), "momentum type")


def test_inactive_nodes_get_decays_too(draws: list[Genome | None]) -> None:
    hits = edges = 0
    for genome in draws:
        if genome is None:
            continue
        for column in set(HIDDEN_COLUMNS) - genome.active_columns:
            node = genome.node(column)
            edges += len(node.inputs)
            hits += len(node.decays)
    assert_rate(hits, edges, 0.15, "decay on an inactive node's edge")


def test_draw_genome_rejects_exactly_the_cyclic_draws() -> None:
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    for _ in range(600):
        genome = draw_genome(rng_a)
        hidden = [draw_hidden_node(rng_b, c) for c in HIDDEN_COLUMNS]
        root = draw_root(rng_b)
        momentum = Momentum(int(rng_b.integers(3)))
        if genome is None:
            with pytest.raises(NOSError, match="cycle"):
                Genome(tuple(hidden), root, momentum)
        else:
            assert genome == Genome(tuple(hidden), root, momentum)


def test_has_active_cycle() -> None:
    plain = [Node((k,)) for k in range(5)]
    assert not has_active_cycle(plain, Node((20, 21), binary_op=0))
    self_loop = [Node((20,)), *plain[1:]]
    assert has_active_cycle(self_loop, Node((20,)))
    assert not has_active_cycle(self_loop, Node((21,)))  # the loop is inactive
    two_cycle = [Node((21,)), Node((20,)), *plain[2:]]
    assert has_active_cycle(two_cycle, Node((0, 20), binary_op=0))
    reads_root = [Node((ROOT,)), *plain[1:]]
    assert has_active_cycle(reads_root, Node((20,)))


def test_random_genome_without_check_is_deterministic_per_seed() -> None:
    first = [random_genome(np.random.default_rng(10), check=False) for _ in range(2)]
    assert first[0] == first[1]
    genome = random_genome(np.random.default_rng(11), PAPER_SETTINGS, check=False)
    genome.validate(nan_decays_valid=True)


def test_random_genome_raises_after_max_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna_nos.optim.evolve as evolve

    monkeypatch.setattr(evolve, "draw_genome", lambda rng, settings, variant: None)
    with pytest.raises(NOSError, match="25 attempts"):
        random_genome(np.random.default_rng(0), check=False, max_attempts=25)
    with pytest.raises(NOSError, match="max_attempts"):
        random_genome(np.random.default_rng(0), check=False, max_attempts=0)
