"""OptunaHub entry of optuna-nos: the particle GA that evolves neural-network optimizers.

The sampler lives in the ``optuna-nos`` package (``pip install optuna-nos``); this module
re-exports it so that ``optunahub.load_module("samplers/particle_nos")`` gives the same
classes as ``import optuna_nos``.
"""

from optuna_nos import (
    DivergencePruner,
    GenomeOptimizer,
    ParticleSampler,
    StopWhenFinished,
    suggest_genome,
    trial_fidelity,
)

__all__ = [
    "DivergencePruner",
    "GenomeOptimizer",
    "ParticleSampler",
    "StopWhenFinished",
    "suggest_genome",
    "trial_fidelity",
]
