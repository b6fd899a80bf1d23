"""Search-space variants: parsing, conformance, and that
random draws and mutation stay inside each variant."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, PAPER_SETTINGS, Settings
from optuna_nos.optim.evolve import mutate, random_genome
from optuna_nos.space.decays import DECAY_HIDDEN, Decay, DecayNode
from optuna_nos.space.genome import ROOT, Genome, Momentum, Node
from optuna_nos.space.mutation import mutate_once
from optuna_nos.space.notation import format_decay
from optuna_nos.space.random_genome import draw_genome
from optuna_nos.space.variants import (
    VARIANTS,
    Variant,
    conforms,
    lr_schedule_genome,
    lr_schedule_template,
    resolve_variant,
    variant_violation,
)
from testkit.genomes import ALL_VARIANTS, mutation_chain

D_TANH = Decay(DecayNode((11,), unary_op=4))  # tanh(a12)
# 1/(1+exp(-a11)  (sic): the decay of the AdamClip ancestor in the released log.
D_SIGMOID = Decay(DecayNode((10,), unary_op=0))
D_I1E = Decay(DecayNode((9,), unary_op=6))  # bessel_i1e(a10)

ADAM_BASE = "(v hat) / (sqrt(|s hat|))"
VARIANT_NAMES = list(ALL_VARIANTS)


def adamclip_ancestor() -> Genome:
    """``None ~ clip(v hat, [1/(1+exp(-a11)][ln(|[bessel_i1e(a10)][s hat]|)])``."""
    spare = Node((6,), unary_op=-1)
    log_s = Node((4,), unary_op=1, decays={4: D_I1E})
    root = Node((3, 20), binary_op=7, decays={20: D_SIGMOID})
    return Genome((log_s, spare, spare, spare, spare), root, Momentum.NONE)


# -- names ------------------------------------------------------------------------------------


def test_variant_names_parse_and_print() -> None:
    assert VARIANTS == ("paper", "adam_variants", "lr_schedule")
    for name in VARIANT_NAMES:
        assert str(resolve_variant(name)) == name
    assert resolve_variant("lr_schedule:adam") == Variant("lr_schedule", "adam")
    assert resolve_variant(Variant("lr_schedule", "nesterov")).lr_base == "nesterov"
    for bad in ["full", "adam_variants:nesterov", "lr_schedule:sgd", ""]:
        with pytest.raises(NOSError):
            resolve_variant(bad)
    with pytest.raises(NOSError):
        resolve_variant(3)  # type: ignore[arg-type]


# -- conformance ------------------------------------------------------------------------------


def test_adam_variant_conformance() -> None:
    ancestor = adamclip_ancestor()
    assert ancestor.equation() == (
        "None ~ clip(v hat, [1/(1+exp(-a11)][ln(|[bessel_i1e(a10)][s hat]|)])"
    )
    assert conforms(ancestor, "adam_variants")
    assert conforms(ancestor, "paper")
    sqrt_s = ancestor.with_node(20, Node((4,), unary_op=2))
    adam = sqrt_s.with_node(ROOT, Node((3, 20), binary_op=5))
    assert adam.equation() == f"None ~ {ADAM_BASE}"
    assert conforms(adam, "adam_variants")
    # clip(v hat, sqrt(|s hat|) + 1): constants may appear beside s hat.
    plus_one = adam.with_node(21, Node((20, 6), binary_op=0)).with_node(
        ROOT, Node((3, 21), binary_op=7)
    )
    assert conforms(plus_one, "adam_variants")

    def violation(genome: Genome) -> str:
        reason = variant_violation(genome, "adam_variants")
        assert reason is not None
        return reason

    assert "momentum" in violation(ancestor.replace(momentum=Momentum.NESTEROV))
    assert "binary" in violation(ancestor.with_node(ROOT, Node((20,), unary_op=11)))
    assert "v hat" in violation(ancestor.with_node(ROOT, Node((0, 20), binary_op=7)))
    reads_g = ancestor.with_node(20, Node((4, 0), binary_op=0))
    assert "reads g" in violation(reads_g)
    no_s_hat = ancestor.with_node(20, Node((7,), unary_op=2))
    assert "s hat" in violation(no_s_hat)
    # Inactive nodes may read anything.
    assert conforms(ancestor.with_node(23, Node((0, 1), binary_op=2)), "adam_variants")


@pytest.mark.parametrize(
    ("base", "equation"),
    [
        ("adam", f"None ~ id([tanh(a12)][{ADAM_BASE}])"),
        ("nesterov", "Nest ~ id([tanh(a12)][id(g)])"),
    ],
)
def test_lr_schedule_genomes_print_the_base_update(base: str, equation: str) -> None:
    genome = lr_schedule_genome(D_TANH, base)
    assert genome.equation() == equation
    variant = f"lr_schedule:{base}"
    assert conforms(genome, variant)
    other = "lr_schedule:nesterov" if base == "adam" else "lr_schedule"
    assert not conforms(genome, other)
    assert not conforms(lr_schedule_template(base), variant)  # no decay on the root edge
    assert not conforms(genome, "adam_variants")
    assert conforms(genome, "paper")


def test_lr_schedule_conformance_is_about_the_printed_base() -> None:
    genome = lr_schedule_genome(D_TANH)
    assert conforms(genome.with_node(24, Node((5,), unary_op=13)), "lr_schedule")  # inactive
    assert conforms(genome.replace(flip=True), "lr_schedule")
    assert not conforms(genome.replace(momentum=Momentum.MOMENTUM), "lr_schedule")
    decayed_inside = genome.with_node(20, Node((4,), unary_op=2, decays={4: D_TANH}))
    assert "prints" in (variant_violation(decayed_inside, "lr_schedule") or "")
    assert not conforms(genome.with_node(21, Node((3, 20), binary_op=7)), "lr_schedule")
    assert not conforms(genome.with_node(ROOT, genome.root.replace(unary_op=11)), "lr_schedule")


# -- random draws and mutation keep the constraints -------------------------------------------


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_random_draws_conform(name: str) -> None:
    rng = np.random.default_rng(0)
    genomes = [random_genome(rng, variant=name, check=False) for _ in range(150)]
    assert all(conforms(g, name) for g in genomes)
    for genome in genomes:
        genome.validate()
    assert len({g.equation() for g in genomes}) > 50
    if name.startswith("lr_schedule"):
        pattern = ADAM_BASE if name == "lr_schedule" else "id(g)"
        prefix = "None ~ id([" if name == "lr_schedule" else "Nest ~ id(["
        for genome in genomes:
            decay = format_decay(genome.root.decays[genome.root.inputs[0]])
            assert genome.equation() == f"{prefix}{decay}][{pattern}])"


def test_adam_variant_draws_use_only_allowed_operands_and_spread_root_ops() -> None:
    rng = np.random.default_rng(1)
    draws = [draw_genome(rng, variant="adam_variants") for _ in range(800)]
    genomes = [g for g in draws if g is not None]
    assert len(genomes) > 0.3 * len(draws)  # most failures: the expression misses s hat
    for genome in genomes:
        assert genome.root.inputs[0] == 3 and genome.momentum == Momentum.NONE
        operands = {c for node in genome.hidden for c in node.inputs if c < 20}
        assert operands <= {4, 6, 7}
        assert "s hat" in genome.equation()
    assert set(Counter(g.root.binary_op for g in genomes)) == set(range(10))
    assert any(g.root.decays for g in genomes) and any(g.hidden[0].decays for g in genomes)


@pytest.mark.parametrize("settings", [DEFAULT_SETTINGS, PAPER_SETTINGS], ids=["project", "paper"])
@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_mutation_chains_stay_in_the_variant(name: str, settings: Settings) -> None:
    rng = np.random.default_rng(2)
    genome = random_genome(rng, settings, variant=name, check=False)
    seen = {genome.equation()}
    kinds: Counter[str] = Counter()
    for _ in range(120):
        genome, mutation = mutate(genome, rng, settings, variant=name, seen=seen, check=False)
        assert conforms(genome, name), (genome.equation(), mutation)
        seen.add(genome.equation())
        kinds[mutation.kind] += 1
    if name.startswith("lr_schedule"):
        assert set(kinds) == {"decay_mutate"}
    elif name == "adam_variants":
        assert "momentum" not in kinds and {"op", "connection"} <= set(kinds)


def test_adam_variant_rejects_momentum_changes_per_attempt() -> None:
    rng = np.random.default_rng(3)
    parent = adamclip_ancestor()
    attempts = [mutate_once(parent, rng, variant="adam_variants") for _ in range(600)]
    momentum = [(g, m) for g, m in attempts if m.kind == "momentum"]
    assert momentum and all(g is None and "momentum" in m.rejected for g, m in momentum)
    assert any(g is not None for g, _ in attempts)


def test_lr_schedule_mutation_changes_only_the_root_decay() -> None:
    rng = np.random.default_rng(4)
    decay = Decay(DecayNode((DECAY_HIDDEN, 1), binary_op=2), DecayNode((12,), unary_op=12), True)
    parent = lr_schedule_genome(decay, "nesterov")
    for _ in range(200):
        mutant, mutation = mutate_once(parent, rng, variant="lr_schedule:nesterov")
        assert mutation.kind == "decay_mutate" and mutation.column == ROOT
        assert mutation.edge == parent.root.inputs[0]
        if mutant is None:
            assert mutation.decay_check is False and mutation.rejected
            continue
        assert mutant.hidden == parent.hidden and mutant.momentum == parent.momentum
        assert re.fullmatch(r"Nest ~ id\(\[.+\]\[id\(g\)\]\)", mutant.equation())


def test_mutating_a_parent_outside_the_variant_is_an_error() -> None:
    with pytest.raises(NOSError, match="outside the adam_variants space"):
        mutate(
            lr_schedule_genome(D_TANH),
            np.random.default_rng(5),
            variant="adam_variants",
            check=False,
        )
    with pytest.raises(NOSError, match="outside the lr_schedule space"):
        mutate(adamclip_ancestor(), np.random.default_rng(5), variant="lr_schedule", check=False)


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_checked_draws_and_mutants_conform(name: str) -> None:
    for genome in mutation_chain(name, 6, 5):
        assert conforms(genome, name)
