"""Command line: ``python -m transfer --optimizer OPT --task TASK ...`` and
``python -m transfer suite --cpu``.

Examples::

    python -m transfer --optimizer Opt10 --task cifar10 --data-root ~/data --device cuda
    python -m transfer --optimizer my_opt.py --task flowers102 --weights effnet_v2_s.pth
    python -m transfer --optimizer "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))" --task digits
    python -m transfer --storage sqlite:///nos.db --study paper --trial 123 --task charlm
    python -m transfer suite --cpu
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import torch

from optuna_nos.core.errors import NOSError
from transfer.datasets import IMAGE_TASKS
from transfer.optimizers import TRANSFER_BASELINES, OptimizerSpec, resolve_optimizer, trial_spec
from transfer.report import markdown_table, plot_curves, summarize, write_csv
from transfer.runner import (
    DEFAULT_LR_GRID,
    DEFAULT_RELATIVE_FACTORS,
    TransferProtocol,
    TransferRun,
    screen_and_train,
)
from transfer.tasks import Task

__all__ = ["build_parser", "build_suite_parser", "main"]

TASKS = (*IMAGE_TASKS, "digits", "charlm")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1e-3,0.1: {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m transfer",
        description="Compare an optimizer with tuned baselines under one protocol "
        "(the same LR grid, schedule and seeds for every optimizer). "
        "'python -m transfer suite --help': the CPU suite of the "
        "published optimizers on two small tasks.",
    )
    what = parser.add_argument_group("what to compare")
    what.add_argument(
        "--optimizer",
        action="append",
        default=[],
        metavar="OPT",
        help="a published name (Opt1..Opt10, A1..A5), a baseline, a .py file "
        "defining a torch Optimizer, or an equation with '~'; repeatable",
    )
    what.add_argument("--class-name", help="the Optimizer class to take from a .py file")
    what.add_argument("--storage", help="study storage URL, with --study and --trial")
    what.add_argument("--study", help="study name holding the trial")
    what.add_argument("--trial", type=int, help="trial number whose genome to evaluate")
    what.add_argument(
        "--baselines",
        type=_names,
        default=TRANSFER_BASELINES,
        help=f"comma-separated baselines, or '' for none (default {','.join(TRANSFER_BASELINES)})",
    )
    what.add_argument("--task", action="append", choices=TASKS, required=True, help="repeatable")
    data = parser.add_argument_group("data and model")
    data.add_argument(
        "--data-root",
        default="data",
        help="folder holding the data sets (layouts: transfer.datasets)",
    )
    data.add_argument(
        "--weights",
        help="ImageNet EfficientNetV2-S state dict for fine-tuning (default: torchvision's cache)",
    )
    data.add_argument("--image-size", type=int, help="default: 64 from scratch, 224 fine-tuning")
    data.add_argument("--batch-size", type=int, default=64)
    data.add_argument("--eval-batch-size", type=int, default=256)
    data.add_argument("--no-augment", action="store_true")
    data.add_argument("--max-eval-samples", type=int)
    data.add_argument("--num-workers", type=int, default=4, help="DataLoader workers")
    budget = parser.add_argument_group("budget (the same for every optimizer)")
    budget.add_argument("--steps", type=int, default=10000, help="steps of each final run")
    budget.add_argument(
        "--screen-steps", type=int, help="steps of each LR-screen run (default: steps / 10)"
    )
    budget.add_argument("--eval-every", type=int, help="default: steps / 20")
    budget.add_argument(
        "--lr-grid",
        type=_floats,
        help=f"comma-separated peak LRs screened (default: "
        f"{','.join(f'{v:g}' for v in DEFAULT_LR_GRID)}); with "
        f"--relative-grid, factors (default: "
        f"{','.join(f'{v:g}' for v in DEFAULT_RELATIVE_FACTORS)})",
    )
    budget.add_argument(
        "--relative-grid",
        action="store_true",
        help="screen each optimizer at its own default lr times the factors",
    )
    budget.add_argument("--seeds", type=_ints, default=(0, 1, 2))
    budget.add_argument("--warmup-fraction", type=float, default=1 / 15)
    budget.add_argument("--hold-fraction", type=float, default=2 / 15)
    run = parser.add_argument_group("running")
    run.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    run.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    run.add_argument("--threads", type=int, help="torch CPU threads")
    run.add_argument("--output", default="transfer_results", help="output folder")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def build_suite_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m transfer suite",
        description="The CPU suite: published optimizers and baselines on digits "
        "and a stdlib character LM, 3 seeds, same budget each.",
    )
    parser.add_argument(
        "--cpu", action="store_true", required=True, help="run on the CPU (the only mode)"
    )
    parser.add_argument(
        "--optimizers",
        type=_names,
        help="comma-separated subset (default: Opt1..Opt10, A1..A5, baselines)",
    )
    parser.add_argument("--all", action="store_true", help="also the variant Opt3_g3")
    parser.add_argument("--tasks", type=_names, default=("digits", "charlm"))
    parser.add_argument("--seeds", type=_ints, default=(0, 1, 2))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--output", default="transfer_results/cpu_suite")
    parser.add_argument("--quiet", action="store_true")
    return parser


def _task(name: str, args: argparse.Namespace) -> Task:
    if name == "digits":
        from transfer.tasks import digits_task

        return digits_task(batch_size=args.batch_size)
    if name == "charlm":
        from transfer.charlm import charlm_task

        return charlm_task()
    from transfer.tasks import image_task

    return image_task(
        name,
        args.data_root,
        image_size=args.image_size,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        augment=not args.no_augment,
        weights=args.weights,
        num_workers=args.num_workers,
        max_eval_samples=args.max_eval_samples,
    )


def _specs(args: argparse.Namespace) -> list[OptimizerSpec]:
    specs = [resolve_optimizer(text, class_name=args.class_name) for text in args.optimizer]
    if args.trial is not None:
        if not args.storage or not args.study:
            raise NOSError("--trial needs --storage and --study")
        specs.append(trial_spec(args.storage, args.study, args.trial))
    specs += [
        resolve_optimizer(name)
        for name in args.baselines
        if name not in {spec.name for spec in specs}
    ]
    if not specs:
        raise NOSError("nothing to compare: give --optimizer, --trial or --baselines")
    return specs


def run_main(args: argparse.Namespace, arguments: Sequence[str]) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    protocol = TransferProtocol(
        steps=args.steps,
        screen_steps=args.screen_steps or max(1, args.steps // 10),
        eval_every=args.eval_every or max(1, args.steps // 20),
        lr_grid=args.lr_grid
        or (DEFAULT_RELATIVE_FACTORS if args.relative_grid else DEFAULT_LR_GRID),
        relative_grid=args.relative_grid,
        seeds=args.seeds,
        warmup_fraction=args.warmup_fraction,
        hold_fraction=args.hold_fraction,
    )
    specs = _specs(args)
    tasks = [_task(name, args) for name in args.task]
    output = Path(args.output)
    results: list[TransferRun] = []

    def checkpoint(run: TransferRun) -> None:
        results.append(run)
        write_csv(results, output / "results.csv")

    for task in tasks:
        for spec in specs:
            screen_and_train(
                task,
                spec,
                protocol,
                device=args.device,
                amp=args.amp,
                progress=not args.quiet,
                on_run=checkpoint,
            )
    table = markdown_table(summarize(results), baselines=args.baselines)
    command = "python -m transfer " + " ".join(shlex.quote(a) for a in arguments)
    (output / "results.md").write_text(f"Command: `{command}`\n\n{table}", encoding="utf-8")
    plot_curves(results, output / "curves.png", baselines=args.baselines)
    print(table)
    print(f"wrote {output / 'results.csv'}, {output / 'results.md'}, {output / 'curves.png'}")
    return 0


def run_suite_main(args: argparse.Namespace, arguments: Sequence[str]) -> int:
    from transfer.suite import run_suite, suite_optimizers

    optimizers = args.optimizers or suite_optimizers(include_variants=args.all)
    command = "python -m transfer suite " + " ".join(shlex.quote(a) for a in arguments)
    run_suite(
        args.output,
        optimizers=optimizers,
        tasks=args.tasks,
        seeds=args.seeds,
        jobs=args.jobs,
        progress=not args.quiet,
        command=command.strip(),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments[:1] == ["suite"]:
            rest = arguments[1:]
            return run_suite_main(build_suite_parser().parse_args(rest), rest)
        return run_main(build_parser().parse_args(arguments), arguments)
    except NOSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
