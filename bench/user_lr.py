"""Cost of a user-driven learning rate: GenomeOptimizer under CosineAnnealingLR vs alone.

A torch LR scheduler changes the peak lr every step. The ratio is the time of T steps with
the scheduler over the time of T steps without it, measured in the same run (1.0 = free).

    python bench/user_lr.py --steps 2000
"""

from __future__ import annotations

import argparse
import time

import torch

from optuna_nos import GenomeOptimizer, parse_equation

EQUATION = "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))"


def run(steps: int, scheduled: bool) -> float:
    torch.manual_seed(0)
    model = torch.nn.Linear(32, 1)
    opt = GenomeOptimizer(
        model.parameters(),
        parse_equation(EQUATION),
        lr=0.01,
        total_steps=steps,
        warmup_steps=steps // 10,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if scheduled else None
    x, y = torch.randn(64, 32), torch.randn(64, 1)
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    alone = run(args.steps, scheduled=False)
    scheduled = run(args.steps, scheduled=True)
    print(
        f"{args.steps} steps: alone {alone:.2f} s, with CosineAnnealingLR {scheduled:.2f} s, "
        f"ratio {scheduled / alone:.2f}"
    )


if __name__ == "__main__":
    main()
