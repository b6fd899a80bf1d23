"""Share of plain-Optuna draws of ``suggest_genome``'s space that would reach training.

Usage: python bench/space_share.py [--draws 500] [--seed 0] [--samplers random,tpe]
                                   [--variants paper,adam_variants,lr_schedule,...]

For each sampler and search-space variant, runs ``draws`` trials whose objective is just
``suggest_genome(trial, variant)`` (no training) and sorts every trial by outcome:

* ``train``: the genome passed the structure and the integrity check, so a real objective
  would now train it;
* ``structure``: pruned before any check (cycle, duplicate input, root without a hidden
  input, outside the variant);
* ``integrity``: a valid structure that failed the integrity check (decay range, sphere test).

The baseline is the same run's structure column: a space any sampler can search has 0 there,
and ``train`` is then bounded only by the integrity check. Run it on two checkouts
(``PYTHONPATH=<checkout>``) to compare encodings.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import optuna
from optuna.trial import TrialState

from optuna_nos import suggest_genome
from optuna_nos.study.stored import REASON_ATTR

SAMPLERS = ("random", "tpe")
VARIANTS = ("paper", "adam_variants", "lr_schedule", "lr_schedule:nesterov")


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    raise SystemExit(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def _outcome(trial: optuna.trial.FrozenTrial) -> str:
    if trial.state == TrialState.COMPLETE:
        return "train"
    reason = str(trial.user_attrs.get(REASON_ATTR, ""))
    return "integrity" if reason.startswith("integrity check failed") else "structure"


def share(sampler: str, variant: str, draws: int, seed: int) -> tuple[Counter[str], float]:
    """Outcome counts of ``draws`` trials, and the seconds they took."""
    study = optuna.create_study(direction="maximize", sampler=_sampler(sampler, seed))
    start = time.perf_counter()
    study.optimize(lambda t: float(suggest_genome(t, variant).flip), n_trials=draws)
    return Counter(_outcome(t) for t in study.trials), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"{'sampler':<8} {'variant':<22} {'draws':>6} {'train':>7} {'structure':>10} "
        f"{'integrity':>10} {'seconds':>8}"
    )
    for sampler in args.samplers.split(","):
        for variant in args.variants.split(","):
            counts, seconds = share(sampler, variant, args.draws, args.seed)
            total = sum(counts.values())
            print(
                f"{sampler:<8} {variant:<22} {total:>6} "
                f"{counts['train'] / total:>7.1%} {counts['structure'] / total:>10.1%} "
                f"{counts['integrity'] / total:>10.1%} {seconds:>8.1f}"
            )


if __name__ == "__main__":
    main()
