"""Acceptance loops: random genomes and accepted mutants.

:func:`random_genome` redraws a whole genome until its active graph is acyclic and the
integrity check passes. :func:`mutate` makes mutation attempts on the parent until
one is acyclic, stays in the search-space variant, is not a failed decay mutation (project
default), prints an equation not yet seen and passes the integrity check.

Flip: a candidate's flip is the outcome of its integrity check; in paper mode
(``settings.inherit_flip``) a mutant of a flipped parent stays flipped whatever its own check
says. Without a check (``check=False``) a random genome is unflipped and a mutant keeps its
parent's flip, the latest check's outcome.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.core.validation import check_int
from optuna_nos.space.genome import Genome
from optuna_nos.space.mutation import Mutation, mutate_once
from optuna_nos.space.random_genome import draw_genome
from optuna_nos.space.variants import VariantLike, resolve_variant, variant_violation

if TYPE_CHECKING:
    from optuna_nos.optim.integrity import IntegrityResult

__all__ = ["DEFAULT_MAX_ATTEMPTS", "Mutation", "mutate", "random_genome"]

DEFAULT_MAX_ATTEMPTS = 100_000
_SEED_BOUND = 2**63 - 1


def _integrity(genome: Genome, settings: Settings, rng: np.random.Generator) -> IntegrityResult:
    """Run the integrity check on the unflipped genome, dropout seeded from ``rng``."""
    import torch

    from optuna_nos.optim.integrity import integrity_check

    generator = torch.Generator().manual_seed(int(rng.integers(_SEED_BOUND)))
    return integrity_check(genome.replace(flip=False), settings, generator=generator)


def random_genome(
    rng: np.random.Generator,
    settings: Settings = DEFAULT_SETTINGS,
    *,
    variant: VariantLike = "paper",
    check: bool = True,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Genome:
    """A random genome of ``variant``'s space that passes the integrity check.

    Each attempt redraws everything (nodes, decays, momentum type). The returned genome's
    flip is the check's outcome (false when ``check`` is off). Raises :class:`NOSError` after
    ``max_attempts`` unusable draws.
    """
    check_int("max_attempts", max_attempts, minimum=1)
    resolved = resolve_variant(variant)
    for _ in range(max_attempts):
        genome = draw_genome(rng, settings, resolved)
        if genome is None:
            continue
        if not check:
            return genome
        result = _integrity(genome, settings, rng)
        if result.passed:
            return genome.replace(flip=bool(result.flip))
    raise NOSError(f"no random {resolved} genome passed in {max_attempts} attempts")


def mutate(
    genome: Genome,
    rng: np.random.Generator,
    settings: Settings = DEFAULT_SETTINGS,
    *,
    variant: VariantLike = "paper",
    seen: Collection[str] = (),
    check: bool = True,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> tuple[Genome, Mutation]:
    """An accepted mutant of ``genome`` and what changed.

    Attempts are rejected for a cycle, a result outside ``variant``, a failed decay
    mutation (project default only), an equation already in ``seen`` or equal to the
    parent's own, and a failed integrity check. ``Mutation.attempts`` counts the attempts.
    Raises :class:`NOSError` when the parent lies outside ``variant`` or after
    ``max_attempts`` rejected attempts.
    """
    check_int("max_attempts", max_attempts, minimum=1)
    resolved = resolve_variant(variant)
    reason = variant_violation(genome, resolved)
    if reason is not None:
        raise NOSError(f"the parent is outside the {resolved} space: {reason}")
    taken = set(seen)
    taken.add(genome.equation())
    for attempt in range(1, max_attempts + 1):
        mutant, mutation = mutate_once(genome, rng, settings, variant=resolved)
        if mutant is None or mutant.equation() in taken:
            continue
        flip = genome.flip
        if check:
            result = _integrity(mutant, settings, rng)
            if not result.passed:
                continue
            flip = bool(result.flip) or (settings.inherit_flip and genome.flip)
        return mutant.replace(flip=flip), replace(mutation, attempts=attempt)
    raise NOSError(f"no acceptable mutant of {genome.equation()!r} in {max_attempts} attempts")
