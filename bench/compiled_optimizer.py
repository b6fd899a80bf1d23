"""Step time of the compiled GenomeOptimizer (Adam genome) against torch.optim.Adam.

On a width-``--width`` proxy ConvNet's parameters with fixed random gradients, one run times
(interleaved, ``--repeats`` times, median per step):

* ``genome eager``: ``GenomeOptimizer`` (the foreach list path);
* ``genome compiled``: ``CompiledGenomeOptimizer`` (``torch.compile``, inductor);
* ``adam foreach``: ``torch.optim.Adam(foreach=True)`` (``fused=True`` on CUDA);
* ``adam compiled``: ``torch.compile`` of that Adam's ``step``.

The genome is ``None ~ (v hat) / (sqrt(|s hat|))`` (Adam, betas 0.9/0.99, eps 1e-7). Ratios
are medians over the repeats of the ratio to ``adam foreach`` (and, last line, of
``genome compiled`` to ``adam compiled``) within one repeat.

    python bench/compiled_optimizer.py [--device cpu] [--width 32] [--steps 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from optuna_nos.optim.compiled_step import CompiledGenomeOptimizer
from optuna_nos.optim.torch_optim import GenomeOptimizer
from optuna_nos.space.parse import parse_equation
from proxy.measure import TIMED_GENOME
from proxy.model import ConvNet

WARMUP_STEPS = 3


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn: Callable[[], object], device: str, repeat: int = 1) -> float:
    """Wall-clock seconds per call of ``fn``, over ``repeat`` calls, the device synchronised."""
    sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeat


def step_functions(device: str, width: int) -> dict[str, Callable[[], object]]:
    """One optimizer step per configuration, each on its own copy of the parameters."""
    genome = parse_equation(TIMED_GENOME)
    fused = {"fused": True} if device == "cuda" else {"foreach": True}

    def params() -> list[torch.nn.Parameter]:
        model = ConvNet(width).to(device)
        for param in model.parameters():
            param.grad = torch.randn_like(param) * 1e-2
        return list(model.parameters())

    schedule: dict[str, Any] = {"lr": 1e-3, "total_steps": 10**6, "warmup_steps": 0}
    adam = torch.optim.Adam(params(), lr=1e-3, betas=(0.9, 0.99), eps=1e-7, **fused)
    compiled_adam = torch.optim.Adam(params(), lr=1e-3, betas=(0.9, 0.99), eps=1e-7, foreach=True)
    return {
        "genome eager": GenomeOptimizer(params(), genome, **schedule).step,
        "genome compiled": CompiledGenomeOptimizer(params(), genome, **schedule).step,
        "adam foreach": adam.step,
        "adam compiled": torch.compile(compiled_adam.step),
    }


def measure(device: str, width: int, steps: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per step of each configuration, one sample per (interleaved) repeat."""
    steps_of = step_functions(device, width)
    for step in steps_of.values():
        for _ in range(WARMUP_STEPS):  # compilation, lazy state
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps_of}
    for _ in range(repeats):
        for name, step in steps_of.items():
            samples[name].append(seconds_per_call(step, device, steps))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="0: torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    samples = measure(args.device, args.width, args.steps, args.repeats)
    print(
        f"device {args.device}  width {args.width}  threads {torch.get_num_threads()}  "
        f"torch {torch.__version__}"
    )
    for name in samples:
        print(f"  {name:<16} x{ratio(samples, name, 'adam foreach'):5.2f} of adam foreach")
    print(
        f"  genome compiled  x{ratio(samples, 'genome compiled', 'adam compiled'):5.2f} "
        "of adam compiled"
    )


def ratio(samples: dict[str, list[float]], name: str, base: str) -> float:
    """Median over the repeats of ``name``'s time over ``base``'s time in the same repeat."""
    return statistics.median(a / b for a, b in zip(samples[name], samples[base], strict=True))


if __name__ == "__main__":
    main()
