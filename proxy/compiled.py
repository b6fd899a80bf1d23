"""A compiled optimizer step: :class:`~optuna_nos.GenomeOptimizer`'s update under torch.compile.

``compile_step(optimizer)`` returns ``optimizer.step`` traced by ``torch.compile``: the graph
is the optimizer's own foreach path (the genome's ops, the EMA updates and the momentum
buffer, unchanged), with its elementwise kernels fused. The per-step learning rate
``eta_t`` and the momentum ``mu_t`` are Python floats computed outside the kernels; dynamo
traces them as graph inputs (``torch._dynamo.config.specialize_float`` is False), not as
constants, so a new learning rate does not recompile.

Equality with eager steps is tested on the CPU (float64).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from optuna_nos.errors import NOSError

__all__ = ["compile_step"]


def compile_step(optimizer: torch.optim.Optimizer, *,
                 mode: str | None = None) -> Callable[[], Any]:
    """``optimizer.step`` compiled with ``torch.compile`` (``mode`` as there)."""
    if not hasattr(optimizer, "step"):
        raise NOSError(f"{type(optimizer).__name__} has no step method to compile")
    return torch.compile(optimizer.step, mode=mode)  # type: ignore[no-any-return]
