"""Choices made from a timing on this machine, not a guess: batch the screen, and the pack size.

* :func:`batching_measured` times one stacked model of K copies against K one-copy models
  (``steps`` training steps each, after one untimed warm-up step) and says whether the stack
  is faster. Results are cached per (device, dtype, input shape, width, batch size, K) for
  the life of the process, so each size is measured once.
* :func:`auto_pack` picks a pack size: on a GPU, as many candidates as fit in
  ``memory_fraction`` of the free memory, from the peak memory of one measured step; on a CPU,
  the size among ``cpu_sizes`` with the most candidate-steps per second.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import torch

from optuna_nos.space.parse import parse_equation
from proxy.screen import Candidate, RunSeeds, RunSpec, train_packed

__all__ = ["auto_pack", "batching_measured", "default_batching", "time_pack"]

#: The genome timed (Adam's form; every genome's step costs about the same on the proxy).
TIMED_GENOME = "None ~ (v hat) / (sqrt(|s hat|))"
MEASURE_STEPS = 3
_CACHE: dict[tuple[object, ...], bool] = {}


def time_pack(spec: RunSpec, candidates: int, lrs: Sequence[float], steps: int) -> float:
    """Seconds of ``steps`` training steps of ``candidates`` x ``len(lrs)`` stacked copies.

    One untimed step first (allocation, cuDNN autotuning, lazy optimizer state).
    """
    genome = parse_equation(TIMED_GENOME)
    seeds = RunSeeds.derive(0)
    pack = [
        (Candidate(genome, replace(seeds, model=seeds.model + i)), lrs) for i in range(candidates)
    ]
    warm = replace(spec, epochs=1, steps_per_epoch=1, val=None)
    timed = replace(spec, epochs=1, steps_per_epoch=steps, val=None)
    train_packed(warm, pack)
    _sync(spec.device)
    start = time.perf_counter()
    train_packed(timed, pack)
    _sync(spec.device)
    return time.perf_counter() - start


def batching_measured(spec: RunSpec, copies: int, steps: int = MEASURE_STEPS) -> bool:
    """Whether ``copies`` runs stacked train faster than one after another (measured)."""
    if copies <= 1:
        return False
    key = (
        spec.device.type,
        spec.dtype,
        tuple(spec.train.images.shape[1:]),
        spec.width,
        spec.batch_size,
        copies,
        spec.augmentation is not None,
    )
    if key not in _CACHE:
        lrs = [1e-3] * copies
        stacked = time_pack(spec, 1, lrs, steps)
        alone = copies * time_pack(spec, 1, lrs[:1], steps)
        _CACHE[key] = stacked < alone
    return _CACHE[key]


def default_batching(spec: RunSpec, copies: int) -> bool:
    """The screen's default: always stacked on a GPU (launch-bound), measured on a CPU."""
    if spec.device.type != "cpu":
        return copies > 1
    return batching_measured(spec, copies)


def auto_pack(
    spec: RunSpec,
    lrs: Sequence[float],
    *,
    memory_fraction: float = 0.8,
    cpu_sizes: Sequence[int] = (1, 2, 4, 8),
    limit: int = 256,
) -> int:
    """A pack size for candidates screened at ``lrs`` (see the module docstring)."""
    if spec.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(spec.device)
        before = torch.cuda.memory_allocated(spec.device)
        time_pack(spec, 1, lrs, 1)
        per_candidate = max(torch.cuda.max_memory_allocated(spec.device) - before, 1)
        free, _ = torch.cuda.mem_get_info(spec.device)
        return max(1, min(limit, int(memory_fraction * free // per_candidate)))
    rates = {k: k / time_pack(spec, k, lrs, MEASURE_STEPS) for k in cpu_sizes}
    return max(rates, key=lambda k: rates[k])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
