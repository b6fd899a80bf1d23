"""Genome and decay mutation against the released code's rules and the project defaults.

Frequencies are checked against the released code's probabilities within 5 binomial standard
deviations. The integrity check is replaced by a stub where a test is about the acceptance
loop's own rules (flip, attempts), so these tests stay structural and fast.
"""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import optuna_nos
import optuna_nos.optim.evolve as evolve
from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, PAPER_SETTINGS, Settings
from optuna_nos.optim.evolve import Mutation, mutate
from optuna_nos.space.decays import (
    DECAY_HIDDEN,
    Decay,
    DecayNode,
    decay_phenotype,
    is_valid_decay,
)
from optuna_nos.space.genome import ROOT, Genome, Momentum, Node
from optuna_nos.space.mutation import (
    change_arity,
    change_connection,
    change_decay,
    change_momentum,
    change_op,
    mutate_decay,
    mutate_once,
)
from optuna_nos.space.notation import format_decay
from testkit.stats import assert_rate

N_OPERANDS = 20
MODES = [pytest.param(DEFAULT_SETTINGS, id="project"), pytest.param(PAPER_SETTINGS, id="paper")]


def assert_uniform(counts: Counter[int], values: list[int] | range, what: str) -> None:
    total = sum(counts.values())
    assert set(counts) <= set(values), f"{what}: unexpected values {set(counts) - set(values)}"
    for value in values:
        assert_rate(counts[value], total, 1.0 / len(values), f"{what} = {value}")


# (id(a13))*(a2): R binary reads D; valid. tanh(a4): a plain unary decay; valid.
D_PRODUCT = Decay(DecayNode((DECAY_HIDDEN, 1), binary_op=2), DecayNode((12,), unary_op=12), True)
D_TANH = Decay(DecayNode((3,), unary_op=4))


def ok(result: tuple[Genome | None, Mutation]) -> Genome:
    """The mutant of an attempt that must have succeeded."""
    mutant, mutation = result
    assert mutant is not None, mutation.rejected
    return mutant


def parent_genome(decays: bool = True) -> Genome:
    """Active: n0 = tanh(v hat), n1 = n0 / s hat, n2 = id(g), root = n1 + n2.
    Inactive: n3 = MaxValue(g^2), n4 = -(n4) (an inactive self-loop)."""
    hidden = (
        Node((3,), unary_op=11, decays={3: D_TANH} if decays else {}),
        Node((20, 4), unary_op=7, binary_op=5),
        Node((0,), unary_op=-1, binary_op=3),
        Node((1,), unary_op=24),
        Node((24,), unary_op=0),
    )
    root = Node((21, 22), unary_op=14, binary_op=0, decays={22: D_PRODUCT} if decays else {})
    return Genome(hidden, root, Momentum.MOMENTUM)


def fully_decayed_genome() -> Genome:
    genome = parent_genome()
    for column in genome.active_columns:
        node = genome.node(column)
        genome = genome.with_node(column, node.replace(decays={c: D_TANH for c in node.inputs}))
    return genome


def operand_genome(root: Node) -> Genome:
    """Hidden node k reads operand k (no hidden inputs, so no cycles through them)."""
    hidden = tuple(Node((k,), unary_op=11, binary_op=2) for k in range(5))
    return Genome(hidden, root)


# -- genome mutation kinds --------------------------------------------------------------------


def test_kind_and_node_frequencies_follow_spec_6_2() -> None:
    rng = np.random.default_rng(0)
    parent = parent_genome()
    attempts = [mutate_once(parent, rng) for _ in range(6_000)]
    kinds = Counter(m.kind for _, m in attempts)
    n = len(attempts)
    assert_rate(kinds["op"], n, 0.4, "change op")
    assert_rate(kinds["connection"], n, 0.3, "change connection")
    assert_rate(kinds["arity"], n, 0.1, "change arity")
    assert_rate(kinds["momentum"], n, 0.1, "momentum")
    decay_kinds = kinds["decay_add"] + kinds["decay_delete"] + kinds["decay_mutate"]
    assert_rate(decay_kinds, n, 0.1, "decay")
    # Node choice: uniform over the active hidden nodes (n0, n1, n2) and the root.
    columns = Counter(m.column or 0 for _, m in attempts if m.kind != "momentum")
    assert_uniform(columns, [20, 21, 22, ROOT], "mutated node")
    for mutant, mutation in attempts:
        assert (mutant is None) == bool(mutation.rejected)
        assert mutant is None or mutant.flip == parent.flip
    for mutant, _ in attempts[:300]:
        if mutant is not None:
            mutant.validate()


def test_decay_edges_split_between_delete_and_mutate() -> None:
    rng = np.random.default_rng(1)
    parent = fully_decayed_genome()
    columns = sorted(parent.active_columns)
    kinds = Counter(change_decay(parent, columns[i % 4], rng)[1].kind for i in range(2_000))
    assert kinds["decay_add"] == 0
    assert_rate(kinds["decay_delete"], 2_000, 0.5, "decay delete")
    assert_rate(kinds["decay_mutate"], 2_000, 0.5, "decay mutate")


def test_undecayed_edge_gets_a_new_valid_decay_on_a_uniform_edge() -> None:
    rng = np.random.default_rng(2)
    parent = parent_genome(decays=False)
    edges: Counter[int] = Counter()
    for _ in range(1_000):
        mutant, mutation = change_decay(parent, 21, rng)  # n1 = n0 / s hat
        assert mutation.kind == "decay_add" and mutant is not None
        assert mutation.edge is not None
        decay = mutant.node(21).decay_on(mutation.edge)
        assert decay is not None and is_valid_decay(decay)
        assert mutation.after == format_decay(decay)
        edges[mutation.edge] += 1
    assert_uniform(edges, [20, 4], "decayed edge")


def test_change_op_unary_never_picks_maxvalue_by_default() -> None:
    rng = np.random.default_rng(3)
    parent = parent_genome()  # n0 is tanh (11)
    ops = Counter(ok(change_op(parent, 20, rng)).node(20).unary_op for _ in range(6_000))
    assert 24 not in ops and 11 not in ops
    assert_rate(ops[-1], 6_000, 0.2, "identity from a non-identity op")
    assert_uniform(
        Counter({k: v for k, v in ops.items() if k != -1}),
        [k for k in range(24) if k != 11],
        "new unary op",
    )


def test_change_op_from_identity_and_the_range_setting() -> None:
    rng = np.random.default_rng(4)
    parent = parent_genome()  # n2 is id(g)
    ops = Counter(ok(change_op(parent, 22, rng)).node(22).unary_op for _ in range(4_000))
    assert_uniform(ops, range(24), "op replacing the identity")
    wide = Settings(change_op_max_unary=24)
    wide_ops = {ok(change_op(parent, 22, rng, wide)).node(22).unary_op for _ in range(2_000)}
    assert 24 in wide_ops


def test_change_op_binary_picks_another_binary_op() -> None:
    rng = np.random.default_rng(5)
    parent = parent_genome()  # n1 is "/" (5)
    results = [ok(change_op(parent, 21, rng)).node(21) for _ in range(3_000)]
    assert all(node.unary_op == 7 and node.inputs == (20, 4) for node in results)
    assert_uniform(
        Counter(node.binary_op for node in results),
        [k for k in range(10) if k != 5],
        "new binary op",
    )


def test_change_connection_hidden_node() -> None:
    rng = np.random.default_rng(6)
    parent = parent_genome()
    new_inputs: Counter[int] = Counter()
    for _ in range(5_000):
        mutant, mutation = change_connection(parent, 20, rng)  # n0 reads v hat
        if mutant is None:
            assert "cycle" in mutation.rejected
            # c = n0 itself or the root; n1 reads n0 and n4 reads itself, so they too.
            assert mutation.after in ("tanh(n0)", "tanh(root)", "tanh(n1)", "tanh(n4)")
            continue
        new_inputs[mutant.node(20).inputs[0]] += 1
    # c is uniform over the 25 columns n0 does not read (0..25 without 3).
    assert_uniform(new_inputs, [c for c in range(ROOT) if c not in (3, 20, 21, 24)], "input")


def test_change_connection_binary_swaps_or_replaces_one_input() -> None:
    rng = np.random.default_rng(7)
    parent = parent_genome()
    outcomes: Counter[str] = Counter()
    for _ in range(5_000):
        mutant, _ = change_connection(parent, 21, rng)  # n1 = n0 / s hat
        if mutant is None:
            continue
        inputs = mutant.node(21).inputs
        if inputs == (4, 20):
            outcomes["swap"] += 1
        elif inputs[1] == 4:
            outcomes["first"] += 1
        else:
            assert inputs[0] == 20
            outcomes["second"] += 1
    total = sum(outcomes.values())
    # Rejections (cycles) only hit replacements with c in {n1, n4, root}, 3 of 24 columns.
    p_accept = 0.2 + 0.8 * 21 / 24
    assert_rate(outcomes["swap"], total, 0.2 / p_accept, "swap")
    assert_rate(outcomes["first"], total, 0.4 * 21 / 24 / p_accept, "replace input 1")


@pytest.mark.parametrize("settings", MODES)
def test_root_unary_rewires_to_another_hidden_node(settings: Settings) -> None:
    rng = np.random.default_rng(8)
    parent = operand_genome(Node((22,), unary_op=11))
    results = [ok(change_connection(parent, ROOT, rng, settings)) for _ in range(4_000)]
    assert_uniform(Counter(g.root.inputs[0] for g in results), [20, 21, 23, 24], "new input")


@pytest.mark.parametrize("settings", MODES)
def test_root_hidden_slot_rewire_and_paper_off_by_one(settings: Settings) -> None:
    rng = np.random.default_rng(9)
    parent = operand_genome(Node((0, 22), binary_op=0))  # root = g + n2
    hidden_rewires: Counter[int] = Counter()
    swaps = operand_changes = 0
    n = 6_000
    for _ in range(n):
        mutant, mutation = change_connection(parent, ROOT, rng, settings)
        if mutant is None:
            assert mutation.after == "add(root, n2)"  # the operand slot got c = root
            operand_changes += 1
            continue
        first, second = mutant.root.inputs
        if (first, second) == (22, 0):
            swaps += 1
        elif first == 0:
            hidden_rewires[second] += 1
        else:
            assert second == 22
            operand_changes += 1
    assert_rate(swaps, n, 0.2, "swap")
    assert_rate(operand_changes, n, 0.4, "operand slot")
    if settings.root_rewire_skips_lowest:
        # The released code skips the lowest unused hidden node (n0 = 20).
        assert_uniform(hidden_rewires, [21, 23, 24], "paper-mode rewire")
    else:
        assert_uniform(hidden_rewires, [20, 21, 23, 24], "rewire")


def test_decays_stay_with_their_input_and_survive_edge_removal() -> None:
    rng = np.random.default_rng(10)
    node = Node((0, 3), binary_op=2, decays={0: D_TANH, 3: D_PRODUCT})
    parent = operand_genome(Node((20,))).with_node(20, node)
    swapped = removed = None
    for _ in range(500):
        mutant, _ = change_connection(parent, 20, rng)
        if mutant is None:
            continue
        inputs = mutant.node(20).inputs
        if inputs == (3, 0):
            swapped = mutant
        elif 0 not in inputs:
            removed = mutant
    assert swapped is not None and removed is not None
    assert swapped.node(20).decay_on(0) == D_TANH and swapped.node(20).decay_on(3) == D_PRODUCT
    assert removed.node(20).decay_on(0) is None
    assert removed.node(20).decays[0] == D_TANH  # stored, not printed
    assert "tanh(a4)" not in removed.equation()
    revived = None
    for _ in range(2_000):
        mutant, _ = change_connection(removed, 20, rng)
        if mutant is not None and 0 in mutant.node(20).inputs:
            revived = mutant
            break
    assert revived is not None and revived.node(20).decay_on(0) == D_TANH
    assert "[tanh(a4)][g]" in revived.equation()


def test_change_arity() -> None:
    rng = np.random.default_rng(11)
    parent = parent_genome()
    first_slot = accepted = 0
    for _ in range(3_000):
        mutant, _ = change_arity(parent, 20, rng)  # n0 = tanh(v hat) -> binary
        if mutant is None:
            continue
        node = mutant.node(20)
        assert node.binary and 3 in node.inputs
        assert (node.unary_op, node.binary_op) == (11, 0)  # latent ops kept
        accepted += 1
        first_slot += node.inputs[0] == 3
    assert_rate(first_slot, accepted, 0.5, "old input stays first")

    dropped = Counter(ok(change_arity(parent, 21, rng)).node(21).inputs for _ in range(3_000))
    assert set(dropped) == {(20,), (4,)}
    assert_rate(dropped[(20,)], 3_000, 0.5, "binary -> unary keeps input 1")

    root_operand = operand_genome(Node((0, 22), binary_op=0))
    for _ in range(200):
        assert ok(change_arity(root_operand, ROOT, rng)).root.inputs == (22,)
    root_hidden = operand_genome(Node((21, 22), binary_op=0))
    kept = Counter(ok(change_arity(root_hidden, ROOT, rng)).root.inputs for _ in range(2_000))
    assert set(kept) == {(21,), (22,)}
    assert_rate(kept[(21,)], 2_000, 0.5, "root keeps input 1")


def test_change_momentum_picks_one_of_the_other_two() -> None:
    rng = np.random.default_rng(12)
    parent = parent_genome()
    types = Counter(int(change_momentum(parent, rng)[0].momentum) for _ in range(3_000))
    assert_uniform(types, [0, 2], "new momentum type")


# -- decay mutation ---------------------------------------------------------------------------


def _distance(a: Decay, b: Decay) -> float:
    return float(torch.linalg.vector_norm(decay_phenotype(a) - decay_phenotype(b)))


def test_decay_mutation_frequencies_and_semantics() -> None:
    rng = np.random.default_rng(13)
    results = [mutate_decay(D_PRODUCT, rng) for _ in range(3_000)]
    n = len(results)
    kinds = Counter(r.kind for r in results)
    assert_rate(kinds["op"], n, 0.6, "decay change op")
    assert_rate(kinds["connection"], n, 0.25, "decay change connection")
    assert_rate(kinds["arity"], n, 0.15, "decay change arity")
    assert_rate(sum(r.node == "D" for r in results), n, 0.5, "D chosen when active")
    for r in results[:500]:
        old = D_PRODUCT.hidden if r.node == "D" else D_PRODUCT.root
        new = r.decay.hidden if r.node == "D" else r.decay.root
        untouched = r.decay.root if r.node == "D" else r.decay.hidden
        assert untouched == (D_PRODUCT.root if r.node == "D" else D_PRODUCT.hidden)
        if r.kind == "op":
            assert new.inputs == old.inputs and new.op.code != old.op.code
        elif r.kind == "connection":
            assert new.binary == old.binary and new.inputs != old.inputs
        else:
            assert new.binary != old.binary
            assert set(new.inputs) & set(old.inputs)
        if r.node == "D":
            assert max(new.inputs) < DECAY_HIDDEN
        # The check, recomputed here from its definition.
        assert r.valid == is_valid_decay(r.decay)
        differs = format_decay(r.decay) != format_decay(D_PRODUCT)
        assert r.changed == (differs and not _distance(r.decay, D_PRODUCT) <= 1e-4)
        assert r.decay.hidden_flag == (DECAY_HIDDEN in r.decay.root.inputs)  # recomputed


def test_decay_without_active_d_mutates_r_only() -> None:
    rng = np.random.default_rng(14)
    assert {mutate_decay(D_TANH, rng).node for _ in range(300)} == {"R"}


def test_sticky_d_flag_in_paper_mode() -> None:
    # R = tanh(a4) no longer reads D, but D was used once: paper mode still picks it.
    sticky = Decay(DecayNode((3,), unary_op=4), DecayNode((5,), unary_op=2), hidden_flag=True)
    rng = np.random.default_rng(15)
    paper = [mutate_decay(sticky, rng, PAPER_SETTINGS) for _ in range(1_000)]
    assert_rate(sum(r.node == "D" for r in paper), 1_000, 0.5, "paper mode picks the stale D")
    for r in paper:
        assert r.decay.hidden_flag  # never cleared
        if r.node == "D":
            assert not r.changed and not r.passed  # a disconnected D changes nothing
    project = [mutate_decay(sticky, rng, DEFAULT_SETTINGS) for _ in range(300)]
    assert {r.node for r in project} == {"R"}
    assert all(r.decay.hidden_flag == r.decay.uses_hidden for r in project)


@pytest.mark.parametrize("settings", MODES)
def test_failed_decay_mutation_fails_the_attempt_only_in_project_mode(
    settings: Settings,
) -> None:
    rng = np.random.default_rng(16)
    parent = fully_decayed_genome()
    checks: Counter[bool] = Counter()
    for _ in range(1_200):
        mutant, mutation = change_decay(parent, ROOT, rng, settings)
        if mutation.kind != "decay_mutate":
            continue
        checks[bool(mutation.decay_check)] += 1
        assert mutation.decay_kind in ("op", "connection", "arity")
        if settings.ignore_decay_mutation_checks:
            assert mutant is not None
            assert mutation.edge is not None
            assert mutant.root.decay_on(mutation.edge) is not None
        else:
            assert (mutant is None) == (not mutation.decay_check)
    assert checks[True] > 0 and checks[False] > 0


# -- the acceptance loop ----------------------------------------------------------------------


def fake_check(passed: bool, flip: bool):  # type: ignore[no-untyped-def]
    def check(genome: Genome, settings: Settings, rng: np.random.Generator) -> SimpleNamespace:
        return SimpleNamespace(passed=passed, flip=flip, lr=None, loss=None, reason="")

    return check


@pytest.mark.parametrize("settings", MODES)
def test_accepted_mutants_validate_and_are_new(settings: Settings) -> None:
    rng = np.random.default_rng(17)
    genome = parent_genome()
    seen = {genome.equation()}
    for _ in range(200):
        mutant, mutation = mutate(genome, rng, settings, seen=seen, check=False)
        equation = mutant.equation()
        assert equation not in seen and equation != genome.equation()
        assert mutation.attempts >= 1 and not mutation.rejected
        if not settings.ignore_decay_mutation_checks:
            mutant.validate()
        seen.add(equation)
        genome = mutant


def test_seen_equations_are_rejected() -> None:
    parent = parent_genome()
    first, _ = mutate(parent, np.random.default_rng(18), check=False)
    again, mutation = mutate(
        parent, np.random.default_rng(18), seen=[first.equation()], check=False
    )
    assert again.equation() not in (first.equation(), parent.equation())
    assert mutation.attempts >= 2


@pytest.mark.parametrize(
    ("settings", "parent_flip", "check_flip", "expected"),
    [
        pytest.param(PAPER_SETTINGS, True, False, True, id="paper-inherits"),
        pytest.param(DEFAULT_SETTINGS, True, False, False, id="project-latest-check"),
        pytest.param(PAPER_SETTINGS, False, True, True, id="paper-new-flip"),
        pytest.param(DEFAULT_SETTINGS, False, True, True, id="project-new-flip"),
        pytest.param(DEFAULT_SETTINGS, False, False, False, id="project-unflipped"),
    ],
)
def test_flip_of_a_mutant(
    settings: Settings,
    parent_flip: bool,
    check_flip: bool,
    expected: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(evolve, "_integrity", fake_check(True, check_flip))
    parent = parent_genome().replace(flip=parent_flip)
    mutant, _ = mutate(parent, np.random.default_rng(19), settings)
    assert mutant.flip is expected


def test_flip_without_check_keeps_the_parents() -> None:
    parent = parent_genome().replace(flip=True)
    assert mutate(parent, np.random.default_rng(20), check=False)[0].flip is True


def test_random_genome_takes_the_checks_flip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evolve, "_integrity", fake_check(True, True))
    assert evolve.random_genome(np.random.default_rng(21)).flip is True


def test_failed_checks_exhaust_max_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evolve, "_integrity", fake_check(False, False))
    with pytest.raises(NOSError, match="30 attempts"):
        mutate(parent_genome(), np.random.default_rng(22), max_attempts=30)
    with pytest.raises(NOSError, match="40 attempts"):
        evolve.random_genome(np.random.default_rng(22), max_attempts=40)


def test_mutation_record_is_json_serialisable() -> None:
    rng = np.random.default_rng(23)
    parent = fully_decayed_genome()
    records = [mutate_once(parent, rng)[1] for _ in range(400)]
    assert {r.kind for r in records} == set(
        ["op", "connection", "arity", "momentum", "decay_delete", "decay_mutate"]
    )
    for record in records:
        data = json.loads(json.dumps(record.to_dict()))
        assert data["node"] == record.node
        assert Mutation.from_dict(data) == record
    with pytest.raises(NOSError):
        Mutation.from_dict({"kind": "op", "column": 20, "colour": "red"})
    with pytest.raises(NOSError):
        Mutation("teleport", 20)


def test_package_exports() -> None:
    assert optuna_nos.mutate is mutate
    assert optuna_nos.random_genome is evolve.random_genome
    assert optuna_nos.Mutation is Mutation


# -- with the real integrity check ------------------------------------------------------------


def negated_gradient() -> Genome:
    """``None ~ id(-(g))``: the paper's oracle table says it passes only flipped (flip@1)."""
    hidden = (Node((0,), unary_op=0), *(Node((k,)) for k in range(1, 5)))
    return Genome(hidden, Node((20,), unary_op=-1), Momentum.NONE, flip=True)


def _has_dropout(genome: Genome) -> bool:
    return "drop(" in genome.equation()


@pytest.mark.parametrize("settings", MODES)
def test_checked_mutants_pass_the_integrity_check_and_follow_the_flip_rule(
    settings: Settings,
) -> None:
    from optuna_nos.optim.integrity import integrity_check

    parent = negated_gradient()
    assert integrity_check(parent.replace(flip=False)).flip is True
    rng = np.random.default_rng(30)
    seen = {parent.equation()}
    flips: Counter[bool] = Counter()
    for _ in range(25):
        mutant, _ = mutate(parent, rng, settings, seen=seen)
        seen.add(mutant.equation())
        flips[mutant.flip] += 1
        if _has_dropout(mutant):
            continue  # its check is stochastic
        result = integrity_check(mutant.replace(flip=False), settings)
        assert result.passed
        expected = result.flip or (settings.inherit_flip and parent.flip)
        assert mutant.flip is expected
    if settings.inherit_flip:
        assert flips == Counter({True: 25})  # paper mode: a flipped parent's line stays flipped
    else:
        assert flips[False] > 0  # e.g. tanh(g) passes unflipped and trains unflipped


def test_checked_random_genomes_pass_and_are_reproducible() -> None:
    from optuna_nos.optim.integrity import integrity_check

    rng = np.random.default_rng(31)
    genomes = [evolve.random_genome(rng) for _ in range(25)]
    for genome in genomes:
        genome.validate()
        if not _has_dropout(genome):
            result = integrity_check(genome.replace(flip=False))
            assert result.passed and result.flip is genome.flip
    again = evolve.random_genome(np.random.default_rng(32))
    assert again == evolve.random_genome(np.random.default_rng(32))
