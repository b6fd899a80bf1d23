"""Benchmark: the batched learning-rate screen against one-run-after-another.

Baselines, all measured in the same process on the same runs (same seeds, same results):

* ``sequential``: the protocol's own trainer with ``batched_screen=False`` (one stack of one
  copy per learning rate);
* ``plain``: a textbook loop per learning rate (``ConvNet`` + ``GenomeOptimizer``);
* ``default``: ``batched_screen=None``, the choice measured once per size on this device
  (the measurement itself is not timed).

Then one candidate's full evaluation (screen + final run) is timed.

    python bench/screen.py                          # digits on this CPU, one thread
    python bench/screen.py --device cuda --synthetic-cifar
        # the paper's evolution recipe (width 48, augmentation, 7 x 800 screen steps and
        # 16,000 final steps) on synthetic CIFAR-shaped tensors, thresholds disabled so that
        # every run goes the full length (the worst case of one evaluation);
        # add --smoke to check the path on a CPU in seconds

Timings vary with machine load; compare the ratios printed within one run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import cast

import torch
import torch.nn.functional as F

from optuna_nos.optim.torch_optim import GenomeOptimizer
from optuna_nos.space.genome import Genome
from optuna_nos.space.parse import parse_equation
from proxy.data import ImageDataset, load_digits
from proxy.fitness import (
    DIGITS_FITNESS,
    PAPER_FITNESS,
    FitnessConfig,
    FitnessResult,
    GenomeTrainer,
    ProxyTask,
    measure_fitness,
)
from proxy.measure import default_batching
from proxy.model import ConvNet
from proxy.protocol import EarlyStop
from proxy.screen import RunSpec

GENOMES = {
    "adam": "None ~ (v hat) / (sqrt(|s hat|))",
    "opt10": "Nest ~ bessel_i1e(bessel_i1e([(a13)*(a2)][g]))",
    "norm": "None ~ norm([sqrt(a6)][(lam hat)+(((1-0.7)*g+0.7*v hat))])",
}


def _timed(fn: Callable[[], object], device: str) -> tuple[float, object]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def _plain_screen(spec: RunSpec, lrs: tuple[float, ...], seed: int) -> None:
    """One textbook training loop per learning rate (no early stop, for timing only)."""
    for lr in lrs:
        model = ConvNet(
            spec.width,
            in_channels=int(spec.train.images.shape[1]),
            generator=torch.Generator().manual_seed(seed),
        ).to(spec.device)
        assert isinstance(spec.genome, Genome)
        optimizer = GenomeOptimizer(
            model.parameters(),
            spec.genome,
            lr=lr,
            total_steps=spec.total_steps,
            warmup_steps=spec.warmup_steps,
            seed=seed,
        )
        stream = spec.batches(seed, dtype=torch.float32)
        model.train()
        for _ in range(spec.epochs * spec.steps_per_epoch):
            images, labels = next(stream)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _both_stages(trainer: GenomeTrainer, config: FitnessConfig) -> None:
    trainer.screen(config.stage1_lrs)
    trainer.screen(config.stage2_lrs)


def bench_screen(
    genome: Genome, task: ProxyTask, fidelity: str, repeats: int, plain: bool
) -> None:
    """Screen both stages batched, sequentially and (optionally) with the plain loop."""
    device = task.device or "cpu"
    data = task.dataset()
    config = task.config
    timings: dict[str, float] = {"batched": 0.0, "sequential": 0.0, "default": 0.0, "plain": 0.0}
    spec = GenomeTrainer(genome, data, config.fidelity(fidelity), config, seed=0).screen_spec
    chosen = [default_batching(spec, len(lrs)) for lrs in (config.stage1_lrs, config.stage2_lrs)]
    for repeat in range(repeats):
        for name, batched in (("batched", True), ("sequential", False), ("default", None)):
            trainer = GenomeTrainer(
                genome,
                data,
                config.fidelity(fidelity),
                replace(config, batched_screen=batched),
                seed=repeat,
                settings=task.settings,
                dtype=task.dtype,
            )
            seconds, _ = _timed(partial(_both_stages, trainer, config), device)
            timings[name] += seconds / repeats
        if plain:
            trainer = GenomeTrainer(
                genome,
                data,
                config.fidelity(fidelity),
                config,
                seed=repeat,
                settings=task.settings,
                dtype=task.dtype,
            )
            seconds, _ = _timed(
                partial(_plain_screen, trainer.screen_spec, config.screen_lrs, repeat), device
            )
            timings["plain"] += seconds / repeats
    base = timings["batched"]
    choice = ", ".join("batched" if c else "sequential" for c in chosen)
    print(
        f"  screen ({fidelity}, {len(config.screen_lrs)} runs; the default measured "
        f"stage 1, 2 as {choice}):"
    )
    for name, seconds in timings.items():
        if seconds > 0:
            print(f"    {name:<10} {seconds:8.2f} s   x{seconds / base:5.2f} of batched")
    if timings["plain"] > 0:
        print(f"    default / plain = {timings['default'] / timings['plain']:.2f}")


def bench_evaluation(genome: Genome, task: ProxyTask, fidelity: str) -> None:
    device = task.device or "cpu"
    seconds, out = _timed(lambda: measure_fitness(genome, task, fidelity, seed=0), device)
    result = cast(FitnessResult, out)
    epochs = 0 if result.final is None else len(result.final.train_acc)
    print(
        f"  full evaluation ({fidelity}): {seconds:7.2f} s  fitness {result.fitness} at lr "
        f"{result.lr} ({epochs} final epochs)"
    )


def synthetic_cifar(device: str, seed: int = 0, size: int = 50_000) -> ImageDataset:
    """CIFAR-10-shaped uint8 tensors (90% / 10% train / val; 45k/5k by default) with
    learnable class templates. Timing only."""
    from proxy.data import ImageSplit

    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (size,), generator=generator)
    templates = torch.randn(10, 3, 32, 32, generator=generator)
    noise = torch.randn(size, 3, 32, 32, generator=generator)
    images = (128 + 30 * templates[labels] + 40 * noise).clamp(0, 255).to(torch.uint8)
    pool = images.double()
    cut = size * 9 // 10
    return ImageDataset(
        "synthetic-cifar10",
        ImageSplit(images[:cut], labels[:cut]),
        ImageSplit(images[cut:], labels[cut:]),
        num_classes=10,
        max_value=255.0,
        channel_mean=tuple(pool.mean(dim=(0, 2, 3)).tolist()),
        channel_std=tuple(pool.std(dim=(0, 2, 3), correction=0).tolist()),
    ).to(device)


def full_length(config: FitnessConfig) -> FitnessConfig:
    """The protocol with every threshold and early stop disabled (worst-case cost)."""
    never = EarlyStop(min_epoch=10**9, below=0.0)
    return replace(
        config,
        stage1_fail_below=-1.0,
        screen_fail_below=-1.0,
        screen_early_stop=never,
        final_early_stop=never,
    )


def use_threads(threads: int) -> None:
    """Set torch's CPU threads (0 keeps torch's default) and let cuDNN pick its kernels."""
    if threads:
        torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = True


def synthetic_task(device: str, fidelity: str, smoke: bool) -> ProxyTask:
    """The paper's protocol at full length on synthetic CIFAR-10; ``smoke``: a few steps."""
    data = synthetic_cifar(device)
    config = full_length(PAPER_FITNESS)
    if smoke:
        config = replace(
            config,
            **{  # type: ignore[arg-type]
                fidelity: replace(
                    config.fidelity(fidelity),
                    total_steps=40,
                    warmup_steps=8,
                    final_epochs=2,
                    final_steps_per_epoch=10,
                    screen_epochs=2,
                    screen_steps_per_epoch=5,
                )
            },
        )
    return ProxyTask(lambda: data, config, device=device, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--genome", default="adam", choices=sorted(GENOMES))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (0: torch's default)"
    )
    parser.add_argument("--synthetic-cifar", action="store_true")
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="with --synthetic-cifar: a few steps only, to check the path runs",
    )
    args = parser.parse_args()
    use_threads(args.threads)
    genome = parse_equation(GENOMES[args.genome])
    print(f"genome {genome.equation()}  device {args.device}  threads {torch.get_num_threads()}")
    if args.synthetic_cifar:
        task = synthetic_task(args.device, "evolution", args.smoke)
        if not args.skip_sequential:
            short = replace(task.config, evolution=replace(task.config.evolution, screen_epochs=1))
            bench_screen(genome, replace(task, config=short), "evolution", 1, plain=False)
        bench_evaluation(genome, task, "evolution")
        return
    task = ProxyTask(load_digits, DIGITS_FITNESS, device=args.device, seed=0)
    for fidelity in ("init", "evolution"):
        bench_screen(genome, task, fidelity, args.repeats, plain=not args.skip_sequential)
    for fidelity in ("init", "evolution"):
        bench_evaluation(genome, task, fidelity)


if __name__ == "__main__":
    main()
