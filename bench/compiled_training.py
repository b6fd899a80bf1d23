"""The compiled training step (``compile`` = "model" / "all") against the eager one.

For each proxy shape, the same stacked run is trained for ``--short`` and ``--long`` steps
with each ``compile`` value (:func:`proxy.measure.time_pack`, after one untimed run of
``--long`` steps that compiles every shape the timed runs meet), all in one process. The
difference of the two times over the difference of the steps is the cost of one more
training step (forward, backward and optimizer); what is left of the short run is the fixed
cost (building the stack and the optimizer, and for "all" the optimizer's compilation).
Printed: seconds per step, the ratio to the eager step measured in the same run, and the
fixed seconds.

Shapes: ``digits`` (8x8 images, width 8, the 4-lr screen stage stacked) and ``cifar``
(32x32 synthetic CIFAR-shaped images, width 48, augmentation, one copy: the paper's final
run).

    python bench/compiled_training.py [--device cpu] [--threads 1] [--short 5] [--long 25]
    python bench/compiled_training.py --device cuda --mode reduce-overhead   # CUDA graphs

The model's graphs are compiled in the untimed run; the fixed cost of "all" includes the
compilation of each new optimizer (later processes find much of it in inductor's on-disk
cache).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from screen import full_length, synthetic_cifar  # noqa: E402

from optuna_nos.space.parse import parse_equation  # noqa: E402
from proxy.data import load_digits  # noqa: E402
from proxy.fitness import DIGITS_FITNESS, PAPER_FITNESS, GenomeTrainer  # noqa: E402
from proxy.measure import TIMED_GENOME, time_pack  # noqa: E402
from proxy.screen import RunSpec  # noqa: E402

COMPILES = ("none", "model", "all")


def shape_specs(device: str) -> dict[str, tuple[RunSpec, tuple[float, ...]]]:
    """name -> (the evolution fidelity's final-run spec, the learning rates stacked)."""
    genome = parse_equation(TIMED_GENOME)
    digits = GenomeTrainer(
        genome, load_digits().to(device), DIGITS_FITNESS.evolution, DIGITS_FITNESS, seed=0
    )
    cifar_config = full_length(PAPER_FITNESS)
    cifar = GenomeTrainer(
        genome, synthetic_cifar(device, size=2_000), cifar_config.evolution, cifar_config, seed=0
    )
    return {
        "digits": (digits.final_spec, DIGITS_FITNESS.stage2_lrs),
        "cifar": (cifar.final_spec, (1e-3,)),
    }


def step_costs(
    spec: RunSpec,
    lrs: tuple[float, ...],
    short: int,
    long: int,
    mode: str | None,
    *,
    warm_up: bool = True,
) -> dict[str, tuple[float, float]]:
    """compile value -> (seconds per step, fixed seconds), from one short and one long run.

    ``warm_up`` first trains one untimed long run per compile value, which compiles every
    shape the timed runs meet (needed once per process).
    """
    costs: dict[str, tuple[float, float]] = {}
    for compile in COMPILES:
        timed = replace(spec, compile=compile, compile_mode=None if compile == "none" else mode)
        if warm_up:
            time_pack(timed, 1, lrs, long)
        short_seconds = time_pack(timed, 1, lrs, short)
        long_seconds = time_pack(timed, 1, lrs, long)
        per_step = (long_seconds - short_seconds) / (long - short)
        costs[compile] = (per_step, short_seconds - short * per_step)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="0: torch's default")
    parser.add_argument("--short", type=int, default=5)
    parser.add_argument("--long", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", default=None, help="torch.compile mode")
    parser.add_argument("--shapes", nargs="+", default=["digits", "cifar"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"device {args.device}  threads {torch.get_num_threads()}  mode {args.mode}  "
        f"torch {torch.__version__}"
    )
    for name, (spec, lrs) in shape_specs(args.device).items():
        if name not in args.shapes:
            continue
        samples = [
            step_costs(spec, lrs, args.short, args.long, args.mode, warm_up=repeat == 0)
            for repeat in range(args.repeats)
        ]
        print(f"{name}: {len(lrs)} stacked copies, width {spec.width}, batch {spec.batch_size}")
        for compile in COMPILES:
            per_step = statistics.median(s[compile][0] for s in samples)
            fixed = statistics.median(s[compile][1] for s in samples)
            ratio = statistics.median(s[compile][0] / s["none"][0] for s in samples)
            print(
                f"  compile={compile:<5} {1e3 * per_step:8.2f} ms/step  x{ratio:5.2f} of eager"
                f"  fixed {fixed:6.2f} s"
            )


if __name__ == "__main__":
    main()
