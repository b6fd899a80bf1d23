"""Proxy tasks for scoring candidate optimizers.

* :mod:`proxy.data` - CIFAR-10 (torchvision, from a data root) and scikit-learn's digits,
  normalisation, batched augmentation, the training batch stream;
* :mod:`proxy.model` - the paper's ConvNet; :mod:`proxy.stack` - K copies as one network;
* :mod:`proxy.screen` - training runs, several learning rates at once;
* :mod:`proxy.protocol` - the screen's thresholds as pure functions of accuracy curves;
* :mod:`proxy.fitness` - the fitness protocol and :func:`evaluate_genome`;
* :mod:`proxy.mnist1d` - MNIST-1D, generated locally, and its protocol preset;
* :mod:`proxy.baselines` - Adam, AdamW, SGD+Nesterov, RMSprop and Lion as proxy baselines;
* :mod:`proxy.tasks` - Optuna objective factories ``mnist1d`` (CPU default), ``digits`` and
  ``cifar10``.

Names are imported lazily, so ``import proxy`` does not import torch.
"""

from __future__ import annotations

from optuna_nos.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "ConvNet": "proxy.model",
    "DIGITS_FITNESS": "proxy.fitness",
    "PAPER_FITNESS": "proxy.fitness",
    "Fidelity": "proxy.fitness",
    "FitnessConfig": "proxy.fitness",
    "FitnessResult": "proxy.fitness",
    "ProxyTask": "proxy.fitness",
    "evaluate_genome": "proxy.fitness",
    "measure_fitness": "proxy.fitness",
    "cifar10": "proxy.tasks",
    "digits": "proxy.tasks",
    "mnist1d": "proxy.tasks",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
