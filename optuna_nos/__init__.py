"""optuna-nos: discover neural-network optimizers by evolution, as an Optuna plugin.

Public names are imported lazily, so ``import optuna_nos`` stays cheap and a submodule's
heavy dependencies load only when used.
"""

from __future__ import annotations

from optuna_nos.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "NOSError": "optuna_nos.core.errors",
    "Settings": "optuna_nos.core.settings",
    "Genome": "optuna_nos.space",
    "Node": "optuna_nos.space",
    "Decay": "optuna_nos.space",
    "DecayNode": "optuna_nos.space",
    "Momentum": "optuna_nos.space",
    "format_equation": "optuna_nos.space.notation",
    "parse_equation": "optuna_nos.space.parse",
    "GenomeOptimizer": "optuna_nos.optim.torch_optim",
    "random_genome": "optuna_nos.optim.evolve",
    "mutate": "optuna_nos.optim.evolve",
    "Mutation": "optuna_nos.optim.evolve",
    "integrity_check": "optuna_nos.optim.integrity",
    "IntegrityResult": "optuna_nos.optim.integrity",
    "behaviour_key": "optuna_nos.optim.integrity",
    "export_source": "optuna_nos.optim.export",
    "suggest_genome": "optuna_nos.study.suggest",
    "trial_fidelity": "optuna_nos.study.suggest",
    "ParticleSampler": "optuna_nos.sampler",
    "StopWhenFinished": "optuna_nos.sampler",
    "DivergencePruner": "optuna_nos.study.pruners",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
