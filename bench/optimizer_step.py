"""Step time of GenomeOptimizer (Adam genome) against torch.optim.Adam on ConvNet-32's parameters.

The parameters are those of the paper's proxy ConvNet at base width 32 (94,986
trainable parameters in 14 tensors); gradients are fixed random tensors, so only the
optimizer step is timed. The genome is ``None ~ (v hat) / (sqrt(|s hat|))``, Adam with
betas (0.9, 0.99) and eps 1e-7, which the baselines use too. Ratios are against
``torch.optim.Adam(foreach=True)`` measured in the same run; the goal is <= 1.5.

    python bench/optimizer_step.py [--steps 500] [--repeats 5] [--device cpu] [--threads N]

Each configuration is timed ``repeats`` times in interleaved order; the medians of wall-clock
and of process CPU time per step are reported (CPU time is the steadier one on a busy machine;
use ``--threads 1`` there).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from optuna_nos.optim.torch_optim import GenomeOptimizer
from optuna_nos.space import Genome, Node
from proxy.model import ConvNet

CONVNET32_PARAMS = 94_986


def convnet_parameters(base: int = 32) -> list[nn.Parameter]:
    """The trainable parameters of the proxy ConvNet."""
    return list(ConvNet(base).parameters())


def adam_genome() -> Genome:
    """``None ~ (v hat) / (sqrt(|s hat|))``: root v_hat / (n0 + eps), n0 = sqrt(|s_hat|)."""
    filler = Node(inputs=(0,))
    return Genome(
        hidden=(Node(inputs=(4,), unary_op=2), filler, filler, filler, filler),
        root=Node(inputs=(3, 20), binary_op=5),
    )


def make_optimizers(device: str) -> dict[str, Callable[[], torch.optim.Optimizer]]:
    def with_grads(
        build: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    ) -> Callable[[], torch.optim.Optimizer]:
        def make() -> torch.optim.Optimizer:
            torch.manual_seed(0)
            params = [p.to(device).detach().requires_grad_() for p in convnet_parameters()]
            assert sum(p.numel() for p in params) == CONVNET32_PARAMS
            for p in params:
                p.grad = torch.randn_like(p)
            return build(params)

        return make

    def adam(params: list[torch.Tensor], foreach: bool) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.99), eps=1e-7, foreach=foreach)

    genome = adam_genome()
    return {
        "torch Adam foreach=True": with_grads(lambda ps: adam(ps, True)),
        "torch Adam foreach=False": with_grads(lambda ps: adam(ps, False)),
        "GenomeOptimizer foreach": with_grads(lambda ps: GenomeOptimizer(ps, genome, lr=1e-3)),
        "GenomeOptimizer reference": with_grads(
            lambda ps: GenomeOptimizer(ps, genome, lr=1e-3, foreach=False)
        ),
    }


def time_steps(opt: torch.optim.Optimizer, steps: int, device: str) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds per step, after a warm-up."""

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(20):
        opt.step()
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        opt.step()
    sync()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    builders = make_optimizers(args.device)
    optimizers = {name: build() for name, build in builders.items()}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in builders}
    for _ in range(args.repeats):
        for name, opt in optimizers.items():
            samples[name].append(time_steps(opt, args.steps, args.device))
    wall = {name: statistics.median(w for w, _ in values) for name, values in samples.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in samples.items()}
    base = "torch Adam foreach=True"
    print(
        f"device={args.device} threads={torch.get_num_threads()} steps={args.steps} "
        f"repeats={args.repeats} params={CONVNET32_PARAMS} torch={torch.__version__}"
    )
    print(f"{'':28s} {'wall us/step':>13s} {'ratio':>6s} {'cpu us/step':>12s} {'ratio':>6s}")
    for name in builders:
        print(
            f"{name:28s} {wall[name] * 1e6:13.1f} {wall[name] / wall[base]:5.2f}x "
            f"{cpu[name] * 1e6:12.1f} {cpu[name] / cpu[base]:5.2f}x"
        )


if __name__ == "__main__":
    main()
