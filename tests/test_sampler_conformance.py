"""Optuna's own sampler conformance suite, run on ParticleSampler.

``optuna.testing.pytest_samplers`` is used as Optuna intends: subclass its test-case classes
and provide a ``sampler`` fixture returning a factory.

Applied: ``BasicSamplerTestCase`` (params outside the genome - floats, ints, other
categoricals, conditional and dynamic spaces - are served by the sampler's internal
``RandomSampler``; every ``study.optimize`` trial also goes through the GA's slot logic) and
``SingleOnlySamplerTestCase`` (the GA is single-objective and must refuse more objectives).

Not applied, and why:

* ``RelativeSamplerTestCase``: ParticleSampler is not a relative sampler. The genome is a
  conditional space that ``infer_relative_search_space`` cannot declare up front, so it
  returns ``{}`` and ``sample_relative`` returns ``{}``; these tests require
  ``sample_relative`` to fill an arbitrary given search space, which Optuna's own
  ``RandomSampler`` does not do either.
* ``MultiObjectiveSamplerTestCase``: the particle GA ranks and selects on one
  fitness; multi-objective studies are refused, as ``SingleOnlySamplerTestCase`` checks.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
import pytest
from optuna.testing.pytest_samplers import BasicSamplerTestCase, SingleOnlySamplerTestCase

from optuna_nos import ParticleSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _factory() -> ParticleSampler:
    return ParticleSampler(
        n_particles=2, init_factor=2, steps=1, mutations=2, seed=0, poll_interval=0.01
    )


class TestParticleSamplerBasic(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], ParticleSampler]:
        return _factory


class TestParticleSamplerSingleObjective(SingleOnlySamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], ParticleSampler]:
        return _factory
