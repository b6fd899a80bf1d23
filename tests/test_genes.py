"""The param encoding: any sampler's draw is a valid genome; genome <-> params round trips;
the ParticleSampler's params are accepted; the encoding version guards old studies."""

from __future__ import annotations

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from strategies import genomes

from optuna_nos import ParticleSampler, suggest_genome
from optuna_nos.core.errors import NOSError
from optuna_nos.space.genome import Genome
from optuna_nos.space.variants import variant_violation
from optuna_nos.study.genes import ENCODING_VERSION, asker, decode
from optuna_nos.study.storage import make_storage
from optuna_nos.study.suggest import (
    ENCODING_ATTR,
    GENOME_ATTR,
    genome_from_params,
    genome_params,
    param_distribution,
)
from testkit.genomes import ALL_VARIANTS, mutation_chain

optuna.logging.set_verbosity(optuna.logging.WARNING)
VARIANTS = ALL_VARIANTS


def _decoded(trial: optuna.Trial, variant: str) -> Genome:
    """Suggest the genes with the trial's sampler and decode them, with no integrity check."""
    return decode(
        asker(variant, lambda name, choices: trial.suggest_categorical(name, choices)), variant
    )


def _draw_all(sampler: optuna.samplers.BaseSampler, variant: str, n_trials: int) -> None:
    """Every draw decodes to a genome of ``variant`` that its params give back exactly."""
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: float(_decoded(t, variant).momentum), n_trials=n_trials)
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE, trial.user_attrs
        genome = genome_from_params(trial.params, variant)  # the constructor checks structure
        assert variant_violation(genome, variant) is None
        assert genome_params(genome, variant) == trial.params


# -- any sampler draws only valid structures ------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_every_random_sampler_draw_is_a_valid_genome(variant: str, seed: int) -> None:
    _draw_all(optuna.samplers.RandomSampler(seed=seed), variant, n_trials=20)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_tpe_draw_is_a_valid_genome(variant: str) -> None:
    _draw_all(optuna.samplers.TPESampler(seed=3, n_startup_trials=10), variant, n_trials=40)


def test_random_draws_reach_every_kind_of_structure() -> None:
    # Conditioning must not cut the space down: binary and unary roots, shared nodes, every
    # hidden node, four-node graphs, decays with and without D all come up.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: float(_decoded(t, "paper").momentum), n_trials=400)
    drawn = [genome_from_params(t.params) for t in study.trials]
    assert {g.root.binary for g in drawn} == {False, True}
    assert {c for g in drawn for c in g.active_hidden()} == set(range(20, 25))
    assert max(len(g.active_hidden()) for g in drawn) >= 4
    assert any(
        sum(1 for c, _, _ in g.active_edges() if c != 25) > len(g.active_hidden()) for g in drawn
    )  # some node read twice
    assert {d.uses_hidden for g in drawn for d in g.active_decays()} == {False, True}


# -- round trips ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(genome=genomes())
def test_any_genome_round_trips_through_params(genome: Genome) -> None:
    params = genome_params(genome)
    for name, value in params.items():
        assert value in param_distribution(name).choices
    again = genome_from_params(params)
    assert again.equation() == genome.equation()
    assert genome_params(again) == params


@pytest.mark.parametrize("variant", VARIANTS)
def test_mutants_round_trip_through_params(variant: str) -> None:
    for genome in mutation_chain(variant, 11, 25):
        params = genome_params(genome, variant)
        again = genome_from_params(params, variant)
        assert again.equation() == genome.equation()
        assert genome_params(again, variant) == params


# -- the ParticleSampler --------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_particle_sampler_params_are_accepted_in_every_variant(variant: str) -> None:
    sampler = ParticleSampler(
        n_particles=2,
        init_factor=2,
        steps=1,
        mutations=2,
        seed=4,
        space=variant,
        poll_interval=0.01,
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: float(len(suggest_genome(t, variant).equation())), n_trials=8)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 8
    for trial in done:
        stored = Genome.from_json(trial.system_attrs[GENOME_ATTR])
        assert genome_params(stored, variant) == trial.params
        assert genome_from_params(trial.params, variant).equation() == stored.equation()


# -- the encoding version -------------------------------------------------------------------

_V1_INPUTS = CategoricalDistribution(
    tuple(param_distribution("n0.a").choices[:20]) + ("n0", "n1", "n2", "n3", "n4")
)


def _encoding(study: optuna.Study) -> object:
    return study._storage.get_study_system_attrs(study._study_id).get(ENCODING_ATTR)


def _objective(trial: optuna.Trial) -> float:
    return float(suggest_genome(trial).flip)


def _legacy_study(storage: BaseStorage | None = None) -> optuna.Study:
    """A study as encoding 1 left it: one gene per input, all 25 inputs in every list."""
    study = optuna.create_study(storage=storage, direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            value=1.0,
            params={"mom": "none", "root.op": "id", "root.a": "n0"},
            distributions={
                "mom": param_distribution("mom"),
                "root.op": param_distribution("root.op"),
                "root.a": _V1_INPUTS,
            },
        )
    )
    return study


def test_a_new_study_records_its_encoding() -> None:
    study = optuna.create_study(direction="maximize")
    study.optimize(_objective, n_trials=3)
    assert _encoding(study) == ENCODING_VERSION == 2


def test_a_study_of_encoding_1_is_refused_in_one_line(postgres_url: str) -> None:
    study = _legacy_study(make_storage(postgres_url, heartbeat_interval=None))
    with pytest.raises(NOSError) as caught:
        study.optimize(_objective, n_trials=1)
    message = str(caught.value)
    assert "\n" not in message and "encoding 1" in message and "'root.a'" in message
    assert "start a new study" in message
    assert len(study.trials) == 2  # the refused trial is left failed; the old one is intact


def test_a_study_recording_another_version_is_refused() -> None:
    study = optuna.create_study()
    study._storage.set_study_system_attr(study._study_id, ENCODING_ATTR, 3)
    with pytest.raises(NOSError, match="encoding 3; this optuna-nos suggests encoding 2"):
        study.optimize(_objective, n_trials=1)


def test_an_unversioned_study_with_compatible_params_carries_on() -> None:
    # An encoding-1 lr_schedule study with unary decays only used this encoding's genes.
    study = optuna.create_study(direction="maximize")
    params = {"root.a.d": "tanh", "root.a.d.a": "a12"}
    study.add_trial(
        optuna.trial.create_trial(
            value=1.0,
            params=params,
            distributions={k: param_distribution(k, "lr_schedule") for k in params},
        )
    )
    study.optimize(lambda t: float(suggest_genome(t, "lr_schedule").flip), n_trials=2)
    assert _encoding(study) == ENCODING_VERSION
    assert all(t.state != TrialState.FAIL for t in study.trials)
