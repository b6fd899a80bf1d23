"""Genome <-> trial params: names, choice lists, round trips, pruning, encoding version."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import FixedTrial, TrialState

from optuna_nos import suggest_genome, trial_fidelity
from optuna_nos.core.errors import NOSError
from optuna_nos.optim.evolve import random_genome
from optuna_nos.space.decays import Decay, DecayNode
from optuna_nos.space.genome import Genome, Momentum, Node
from optuna_nos.space.parse import parse_equation
from optuna_nos.study.suggest import (
    FIDELITY_ATTR,
    GENOME_ATTR,
    IDLE_ATTR,
    genome_from_params,
    genome_params,
    param_distribution,
)
from testkit.genomes import ALL_VARIANTS

optuna.logging.set_verbosity(optuna.logging.WARNING)
VARIANTS = ALL_VARIANTS

# Sizes of the search space: 20 operands, 5 hidden nodes, 26 unary + 10 binary ops,
# 13 unary + 7 binary decay ops, 14 base schedules.
N_OPERANDS, N_HIDDEN, N_UNARY, N_BINARY = 20, 5, 26, 10
N_DECAY_UNARY, N_DECAY_BINARY, N_BASE = 13, 7, 14

G, V_HAT, S_HAT = 0, 3, 4
N0, N1, N2 = 20, 21, 22
IDENTITY, NEG, SQRT, ATAN, I1E = -1, 0, 2, 12, 14
DIV, CLIP = 5, 7


def _genome(hidden: dict[int, Node], root: Node, momentum: Momentum = Momentum.NONE) -> Genome:
    spare = Node(inputs=(G,))
    return Genome(tuple(hidden.get(c, spare) for c in range(N0, N0 + N_HIDDEN)), root, momentum)


# -- names and choice lists ----------------------------------------------------------------


def _ordered_pairs(n: int) -> int:
    return n * (n - 1)


@pytest.mark.parametrize(
    "name,size",
    [
        ("mom", 3),
        ("root.op", N_UNARY + N_BINARY),
        ("n3.op", N_UNARY + N_BINARY),
        ("root.ab", 2 * (N_OPERANDS + N_HIDDEN - 1)),  # n0 and one other input, either order
        ("n0.a", N_OPERANDS + N_HIDDEN - 1),  # n_i reads operands and n_j, j > i
        ("n4.a", N_OPERANDS),
        ("n0.ab", _ordered_pairs(N_OPERANDS + N_HIDDEN - 1)),
        ("n3.ab", _ordered_pairs(N_OPERANDS + 1)),
        ("root.a.d", 1 + N_DECAY_UNARY + N_DECAY_BINARY),
        ("n2.b.d", 1 + N_DECAY_UNARY + N_DECAY_BINARY),
        ("root.a.d.a", N_BASE + 1),
        ("root.b.d.ab", _ordered_pairs(N_BASE + 1)),
        ("n1.a.d.D", N_DECAY_UNARY + N_DECAY_BINARY),
        ("n1.a.d.D.a", N_BASE),
        ("n1.a.d.D.ab", _ordered_pairs(N_BASE)),
    ],
)
def test_every_gene_has_a_fixed_choice_list(name: str, size: int) -> None:
    distribution = param_distribution(name)
    assert len(distribution.choices) == len(set(distribution.choices)) == size
    assert param_distribution(name) == distribution


def test_choice_lists_use_the_tables_names() -> None:
    assert param_distribution("mom").choices == ("none", "momentum", "nesterov")
    inputs = param_distribution("n0.a").choices
    assert inputs[:3] == ("g", "g^2", "g^3") and inputs[-4:] == ("n1", "n2", "n3", "n4")
    assert "((1-0.7)*g+0.7*v hat)" in inputs
    assert {"g | n0", "n0 | v hat", "n0 | n4", "n1 | n0"} <= set(
        param_distribution("root.ab").choices
    )
    assert "n0 | n0" not in param_distribution("root.ab").choices
    assert "g | n2" in param_distribution("n1.ab").choices
    assert not {"g | g", "n1 | g", "g | n0"} & set(param_distribution("n1.ab").choices)
    ops = param_distribution("root.op").choices
    assert {"id", "i1e", "running_max", "clip", "pow"} <= set(ops)
    assert param_distribution("root.a.d").choices[0] == "none"
    assert param_distribution("root.a.d.a").choices[-1] == "D"
    assert "a3 | D" in param_distribution("root.a.d.ab").choices
    assert "D" not in param_distribution("root.a.d.D.a").choices


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x",
        "root",
        "root.c",
        "n5.op",
        "root.a.e",
        "root.a.d.c",
        "root.a.d.D.D",
        "root.a.d.a.b",
        "root.op.a",
        "root.a",
        "root.b",
        "n0.b",
        "root.a.d.b",
        "n0.a.s",
        "root.ab.s",
        "n1.a.d.D.b",
    ],
)
def test_unknown_gene_names_are_refused(name: str) -> None:
    with pytest.raises(NOSError, match="not a genome param name"):
        param_distribution(name)


def test_restricted_variants_shorten_lists_and_fix_genes() -> None:
    assert (
        param_distribution("root.op", "adam_variants").choices
        == param_distribution("root.op").choices[N_UNARY:]
    )
    assert param_distribution("n0.a", "adam_variants").choices == (
        "s hat",
        "1",
        "2",
        "n1",
        "n2",
        "n3",
        "n4",
    )
    # A node that must lead to s hat reads it or a higher node; the last one reads it.
    assert param_distribution("n2.a.s", "adam_variants").choices == ("s hat", "n3", "n4")
    assert param_distribution("n4.a.s", "adam_variants").choices == ("s hat",)
    assert param_distribution("n4.ab.s", "adam_variants").choices == (
        "s hat | 1",
        "s hat | 2",
        "1 | s hat",
        "2 | s hat",
    )
    assert "none" not in param_distribution("root.a.d", "lr_schedule").choices


# -- genome -> params ----------------------------------------------------------------------


def test_params_hold_the_active_genes_top_down() -> None:
    # Nest ~ bessel_i1e(arctan([(a13)*(a2)][g])), with a latent op and an inactive node.
    decay = Decay(root=DecayNode(inputs=(12, 1), binary_op=2))
    genome = _genome(
        {
            N1: Node(inputs=(G,), unary_op=ATAN, binary_op=CLIP, decays={G: decay}),
            N2: Node(inputs=(S_HAT, V_HAT), binary_op=DIV),
        },
        Node(inputs=(N1,), unary_op=I1E),
        Momentum.NESTEROV,
    )
    assert genome.equation() == "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))"
    params = genome_params(genome)  # the root reads n1: renumbered so that it reads n0
    assert list(params.items()) == [
        ("mom", "nesterov"),
        ("root.op", "i1e"),
        ("root.a.d", "none"),
        ("n0.op", "atan"),
        ("n0.a", "g"),
        ("n0.a.d", "mul"),
        ("n0.a.d.ab", "a13 | a2"),
    ]
    assert genome_from_params(params).equation() == genome.equation()


def test_hidden_nodes_are_numbered_top_down() -> None:
    # root = n0 / n2 with n2 = atan(n0): n2 reads n0, so n2 becomes n0 and n0 becomes n1.
    genome = _genome(
        {N0: Node(inputs=(G,), unary_op=NEG), N2: Node(inputs=(N0,), unary_op=ATAN)},
        Node(inputs=(N0, N2), binary_op=DIV),
    )
    params = genome_params(genome)
    assert (params["root.ab"], params["n0.op"], params["n0.a"]) == ("n1 | n0", "atan", "n1")
    assert (params["n1.op"], params["n1.a"]) == ("neg", "g")
    kept = _genome(
        {N0: Node(inputs=(N2,), unary_op=ATAN), N2: Node(inputs=(G,), unary_op=NEG)},
        Node(inputs=(N2, N0), binary_op=DIV),
    )  # already top-down: kept as it is
    assert genome_params(kept)["root.ab"] == "n2 | n0"
    assert genome_from_params(params).equation() == genome.equation()


def test_a_decay_reading_its_hidden_node_adds_the_D_genes() -> None:
    hidden = DecayNode(inputs=(3, 8), binary_op=3)  # max(a4, a9)
    decay = Decay(root=DecayNode(inputs=(14,), unary_op=4), hidden=hidden)  # tanh(D)
    genome = _genome({N0: Node(inputs=(G,))}, Node(inputs=(N0,), decays={N0: decay}))
    params = genome_params(genome)
    assert {k: v for k, v in params.items() if k.startswith("root.a.d")} == {
        "root.a.d": "tanh",
        "root.a.d.a": "D",
        "root.a.d.D": "max",
        "root.a.d.D.ab": "a4 | a9",
    }
    assert genome_from_params(params).equation() == genome.equation()


def test_a_node_read_twice_is_suggested_once() -> None:
    genome = parse_equation(
        "None ~ (0.95*(min([min(a12, a9)][2], v hat))+0.05*((10-6w) / "
        "(min([min(a12, a9)][2], v hat))))"
    )
    params = genome_params(genome)
    assert sum(1 for k in params if k.endswith(".op")) == 3  # root, division, shared min
    assert genome_from_params(params).equation() == genome.equation()


@pytest.mark.parametrize("variant", VARIANTS)
def test_random_genomes_round_trip_through_params(variant: str) -> None:
    rng = np.random.default_rng(5)
    for _ in range(40):
        genome = random_genome(rng, variant=variant, check=False)
        params = genome_params(genome, variant)
        for name, value in params.items():
            assert value in param_distribution(name, variant).choices
        again = genome_from_params(params, variant)
        assert again.equation() == genome.equation()
        assert genome_params(again, variant) == params


def test_fixed_genes_are_not_params() -> None:
    adam = parse_equation("None ~ (v hat) / (sqrt(|s hat|))")
    params = genome_params(adam, "adam_variants")
    assert "mom" not in params and "root.ab" not in params
    assert genome_from_params(params, "adam_variants").equation() == adam.equation()
    schedule = parse_equation("None ~ id([tanh(a12)][(v hat) / (sqrt(|s hat|))])")
    assert genome_params(schedule, "lr_schedule") == {"root.a.d": "tanh", "root.a.d.a": "a12"}


def test_a_genome_outside_the_space_is_refused() -> None:
    with pytest.raises(NOSError, match="adam_variants"):
        genome_params(parse_equation("None ~ id(id(g))"), "adam_variants")


# -- params -> genome ----------------------------------------------------------------------


_ROOT_ID = {"mom": "none", "root.op": "id", "root.a.d": "none"}


@pytest.mark.parametrize(
    "params,reason",
    [
        # What used to be drawable and invalid is now outside the choice lists.
        ({"mom": "none", "root.op": "add", "root.ab": "g | v hat"}, "not one of its choices"),
        ({"mom": "none", "root.op": "add", "root.ab": "n0 | n0"}, "not one of its choices"),
        ({**_ROOT_ID, "n0.op": "neg", "n0.a": "n0"}, "not one of its choices"),
        (
            {
                **_ROOT_ID,
                "n0.op": "id",
                "n0.a": "n1",
                "n0.a.d": "none",
                "n1.op": "id",
                "n1.a": "n0",
            },
            "not one of its choices",
        ),
        (
            {"mom": "none", "root.op": "id", "root.a.d": "max", "root.a.d.ab": "a1 | a1"},
            "not one of its choices",
        ),
        ({"mom": "none", "root.op": "id"}, "missing"),
        ({"mom": "sideways"}, "not one of its choices"),
        # Encoding 1 params (one gene per input) lack the pair gene.
        ({"mom": "none", "root.op": "add", "root.a": "n0", "root.b": "g"}, "root.ab is missing"),
    ],
)
def test_invalid_params_are_refused_with_a_reason(params: dict[str, str], reason: str) -> None:
    with pytest.raises(NOSError, match=reason):
        genome_from_params(params)


def test_fixed_trial_gives_the_genome_and_its_flip() -> None:
    # id(-(g)) passes the sphere test only flipped.
    params = genome_params(parse_equation("None ~ id(-(g))"))
    trial = FixedTrial(params)
    genome = suggest_genome(trial)
    assert genome.equation() == "None ~ id(-(g))" and genome.flip
    assert trial.user_attrs["equation"] == "None ~ id(-(g))"
    assert trial.user_attrs["equation_readable"].startswith("U = ")
    assert trial.user_attrs["flip"] is True
    assert "genome" not in trial.user_attrs  # the full genome is a system attr only
    assert Genome.from_json(trial.system_attrs[GENOME_ATTR]) == genome


def test_trial_fidelity_defaults_to_evolution() -> None:
    assert trial_fidelity(FixedTrial({})) == "evolution"
    frozen = optuna.trial.create_trial(value=1.0, system_attrs={FIDELITY_ATTR: "init"})
    assert trial_fidelity(frozen) == "init"


def _enqueue_and_run(params: dict[str, str]) -> optuna.trial.FrozenTrial:
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params)
    study.optimize(lambda t: float(suggest_genome(t).flip), n_trials=1)
    return study.trials[0]


def test_a_degenerate_genome_is_pruned_with_its_reason() -> None:
    trial = _enqueue_and_run(genome_params(parse_equation("None ~ id(id(1))")))
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["nos.reason"].startswith("integrity check failed")


@pytest.mark.parametrize(
    "params,reason",
    [
        ({**_ROOT_ID, "n0.op": "neg", "n0.a": "n0", "n0.a.d": "none"}, "n0.a = 'n0' is not one"),
        (
            {**_ROOT_ID, "root.a": "n0", "n0.op": "neg", "n0.a": "g", "n0.a.d": "none"},
            "root.a is not a gene",
        ),
    ],
)
def test_enqueued_params_outside_the_encoding_are_pruned_with_their_reason(
    params: dict[str, str], reason: str
) -> None:
    trial = _enqueue_and_run(params)
    assert trial.state == TrialState.PRUNED
    assert reason in trial.user_attrs["nos.reason"]


def test_an_idle_trial_is_pruned() -> None:
    study = optuna.create_study()
    trial = study.ask()
    study._storage.set_trial_system_attr(trial._trial_id, IDLE_ATTR, "search finished")
    with pytest.raises(optuna.TrialPruned, match="search finished"):
        suggest_genome(trial)


def test_a_stored_genome_is_returned_whole() -> None:
    # A sampler-made genome: a latent binary op and a decay stored on an absent edge.
    latent = Node(
        inputs=(G,),
        unary_op=SQRT,
        binary_op=CLIP,
        decays={V_HAT: Decay(root=DecayNode(inputs=(0,), unary_op=4))},
    )
    genome = _genome(
        {N0: latent, N2: Node(inputs=(S_HAT,), unary_op=NEG)},
        Node(inputs=(N0,), unary_op=IDENTITY),
    )
    study = optuna.create_study()
    study.enqueue_trial(genome_params(genome))
    trial = study.ask()
    study._storage.set_trial_system_attr(trial._trial_id, GENOME_ATTR, genome.to_json())
    assert suggest_genome(trial) == genome  # latent op, stored decay and node n2 included


def test_a_stored_genome_that_disagrees_with_the_params_is_an_error() -> None:
    study = optuna.create_study()
    study.enqueue_trial(genome_params(parse_equation("None ~ id(id(g))")))
    trial = study.ask()
    other = parse_equation("None ~ id(-(g))")
    study._storage.set_trial_system_attr(trial._trial_id, GENOME_ATTR, other.to_json())
    with pytest.raises(NOSError, match="same space"):
        suggest_genome(trial)


@pytest.mark.parametrize(
    "sampler",
    [
        optuna.samplers.RandomSampler(seed=0),
        optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
    ],
)
def test_other_samplers_search_the_same_space(sampler: optuna.samplers.BaseSampler) -> None:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: float(suggest_genome(t).momentum), n_trials=40)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert done and all(t.user_attrs["nos.reason"] for t in pruned)
    for trial in done:
        genome = Genome.from_json(trial.system_attrs[GENOME_ATTR])
        assert genome_params(genome) == trial.params
        assert trial.user_attrs["equation"] == genome.equation()
        for name, value in trial.params.items():
            assert isinstance(trial.distributions[name], CategoricalDistribution)
            assert value in param_distribution(name).choices


@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_variants_suggest_only_their_free_genes(variant: str) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: float(suggest_genome(t, variant).flip), n_trials=30)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert done
    for trial in done:
        genome = Genome.from_json(trial.system_attrs[GENOME_ATTR])
        assert genome_params(genome, variant) == trial.params
        assert "mom" not in trial.params


def test_the_space_must_match_the_particle_sampler_s() -> None:
    from optuna_nos import ParticleSampler

    sampler = ParticleSampler(
        n_particles=1, init_factor=1, steps=1, mutations=1, space="adam_variants"
    )
    study = optuna.create_study(sampler=sampler)
    trial = study.ask()
    with pytest.raises(NOSError, match="adam_variants"):
        suggest_genome(trial)  # space="paper"
    genome = suggest_genome(trial, "adam_variants")
    assert genome.equation().startswith("None ~ ")


def test_a_particle_study_under_a_comparing_pruner_warns_once() -> None:
    import warnings

    from optuna_nos import DivergencePruner, ParticleSampler

    def objective(trial: optuna.Trial) -> float:
        suggest_genome(trial)
        return 0.0

    sizes = {"n_particles": 1, "init_factor": 2, "steps": 1, "mutations": 1, "seed": 0}
    for pruner, expected in ((optuna.pruners.MedianPruner(), 1), (DivergencePruner(), 0)):
        study = optuna.create_study(
            direction="maximize", sampler=ParticleSampler(**sizes), pruner=pruner
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            study.optimize(objective, n_trials=3)
        assert sum("DivergencePruner" in str(w.message) for w in caught) == expected
