"""The device check: the paper's evaluation recipe on one GPU, in under 8 minutes.

Synthetic CIFAR-10-shaped data (``bench/screen.py``'s), the evolution fidelity (width 48,
augmentation, a 7-lr screen of 4 x 200 steps per stage, then 40 x 400 final steps at batch
128) with every threshold off, so every run goes the full length. Printed:

1. seconds per paper evaluation at K = 1, measured end to end (``measure_fitness``), eager
   and with ``--compile`` (default "model", mode "reduce-overhead": CUDA graphs on a GPU);
2. evaluations per GPU-hour at K = 1, 4, 16, 64 (until memory runs out), compiled as in 1:
   per K, the step time of the stacked model at each phase's width (3K, 4K and K copies) is
   measured over ``--steps`` steps, and one pack's time is modelled as
   ``screen_steps * (t(3K) + t(4K)) + final_steps * t(K)``, scaled by the K = 1
   measured / modelled ratio (which carries validation and per-epoch work);
3. the training step (forward, backward, optimizer) of the final run, compiled against
   eager, per ``compile`` value (``bench/compiled_training.py``);
4. the optimizer step of a width-48 ConvNet for the Adam genome: GenomeOptimizer eager
   (foreach) and compiled (``CompiledGenomeOptimizer``) against ``torch.optim.Adam`` (fused
   on CUDA, foreach on a CPU) and its compiled step (``bench/compiled_optimizer.py``), and
   the compiled / eager GenomeOptimizer step ratio;
5. peak memory per K.

    python bench/gpu_check.py            # on a GPU
    python bench/gpu_check.py --quick    # any device, tiny step counts: checks the path

Timings vary with load; the ratios within one run are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compiled_optimizer import measure, seconds_per_call  # noqa: E402
from compiled_training import COMPILES, step_costs  # noqa: E402
from screen import full_length, synthetic_cifar  # noqa: E402

from optuna_nos.space.parse import parse_equation  # noqa: E402
from proxy.fitness import PAPER_FITNESS, FitnessConfig, GenomeTrainer, ProxyTask, measure_fitness  # noqa: E402
from proxy.measure import TIMED_GENOME, time_pack  # noqa: E402


def quick_config(config: FitnessConfig) -> FitnessConfig:
    """The protocol with a handful of steps (``--quick``)."""
    return replace(
        config,
        evolution=replace(
            config.evolution,
            total_steps=40,
            warmup_steps=8,
            final_epochs=2,
            final_steps_per_epoch=6,
            screen_epochs=2,
            screen_steps_per_epoch=3,
        ),
    )


def evaluation_seconds(task: ProxyTask) -> float:
    """Seconds of one full evaluation of the Adam genome at the evolution fidelity."""
    genome = parse_equation(TIMED_GENOME)
    device = task.device or "cpu"
    return seconds_per_call(lambda: measure_fitness(genome, task, "evolution", seed=0), device)


def modelled_pack_seconds(task: ProxyTask, k: int, steps: int) -> tuple[float, float]:
    """(modelled seconds of one pack of k evaluations, peak memory in GiB)."""
    config = task.config
    fidelity = config.evolution
    trainer = GenomeTrainer(
        parse_equation(TIMED_GENOME), task.dataset(), fidelity, config, seed=0, dtype=task.dtype
    )
    spec = trainer.screen_spec
    if task.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    screen_steps = fidelity.screen_epochs * fidelity.screen_steps_per_epoch
    final_steps = fidelity.final_epochs * fidelity.final_steps_per_epoch
    total = 0.0
    for lrs, count in (
        (config.stage1_lrs, screen_steps),
        (config.stage2_lrs, screen_steps),
        ((1e-3,), final_steps),
    ):
        total += count * time_pack(spec, k, lrs, steps) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if task.device == "cuda" else float("nan")
    return total, peak


def optimizer_steps(device: str, steps: int) -> dict[str, float]:
    """Seconds per optimizer step on a width-48 ConvNet's parameters (``compiled_optimizer``),
    the median of 3 interleaved repeats."""
    samples = measure(device, 48, steps, repeats=3)
    return {name: statistics.median(times) for name, times in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny step counts (any device)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timing")
    parser.add_argument("--compile", default="model", choices=COMPILES[1:])
    parser.add_argument(
        "--mode", default=None, help="torch.compile mode (default: reduce-overhead on a GPU)"
    )
    parser.add_argument(
        "--packs",
        type=int,
        nargs="+",
        default=None,
        help="pack sizes (default 1 4 16 64; with --quick, 1 2)",
    )
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = args.steps or (2 if args.quick else 40)
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device {name}  torch {torch.__version__}  quick {args.quick}")
    config = full_length(PAPER_FITNESS)
    size = 50_000
    if args.quick:
        config, size = quick_config(config), 2_000
        torch.set_num_threads(1)
    data = synthetic_cifar(device, size=size)
    mode = args.mode or ("reduce-overhead" if device == "cuda" else None)
    eager_task = ProxyTask(lambda: data, config, device=device, seed=0)
    task = replace(eager_task, config=replace(config, compile=args.compile, compile_mode=mode))

    evaluation_seconds(replace(eager_task, config=quick_config(config)))  # warm-up
    eager = evaluation_seconds(eager_task)
    print(f"seconds per paper evaluation at K = 1 (measured), eager: {eager:.2f}")
    evaluation_seconds(task)  # compiles every graph of the evaluation
    measured = evaluation_seconds(task)
    print(
        f"seconds per paper evaluation at K = 1 (measured), compile={args.compile} "
        f"mode={mode}: {measured:.2f} (x{measured / eager:.2f} of eager)"
    )
    base_model = None
    print(f"{'K':>4} {'s / pack':>10} {'evals / GPU-h':>14} {'peak GiB':>9}")
    for k in args.packs or ([1, 2] if args.quick else [1, 4, 16, 64]):
        try:
            modelled, peak = modelled_pack_seconds(task, k, steps)
        except torch.cuda.OutOfMemoryError:
            print(f"{k:>4} out of memory")
            break
        if base_model is None:
            base_model = modelled
        seconds = modelled * measured / base_model
        print(f"{k:>4} {seconds:10.2f} {3600 * k / seconds:14.0f} {peak:9.2f}")
    final = GenomeTrainer(
        parse_equation(TIMED_GENOME), task.dataset(), config.evolution, config, seed=0
    ).final_spec
    costs = step_costs(final, (1e-3,), steps, 3 * steps, mode)
    print(
        "training step of the final run, x of eager: "
        + ", ".join(
            f"compile={name} {cost / costs['none'][0]:.2f}" for name, (cost, _) in costs.items()
        )
    )
    times = optimizer_steps(device, steps * 5)
    adam = times["adam foreach"]
    print(
        "optimizer step, x of torch.optim.Adam (fused on CUDA, foreach on a CPU): "
        + ", ".join(f"{name} {seconds / adam:.2f}" for name, seconds in times.items())
    )
    print(
        f"compiled / eager GenomeOptimizer step: "
        f"{times['genome compiled'] / times['genome eager']:.2f}"
    )
    if device == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
