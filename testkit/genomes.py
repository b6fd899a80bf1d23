"""Genome helpers shared by the search-space tests."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from optuna_nos.optim.evolve import mutate, random_genome
from optuna_nos.space.genome import Genome

#: Every search-space variant, the Nesterov-only schedule space included.
ALL_VARIANTS = ("paper", "adam_variants", "lr_schedule", "lr_schedule:nesterov")


def mutation_chain(variant: str, seed: int, length: int) -> Iterator[Genome]:
    """``length`` successive mutants in ``variant``: a random genome (numpy seed ``seed``)
    mutated once, the result mutated again, and so on (the start is not yielded)."""
    rng = np.random.default_rng(seed)
    genome = random_genome(rng, variant=variant)
    for _ in range(length):
        genome, _ = mutate(genome, rng, variant=variant)
        yield genome
