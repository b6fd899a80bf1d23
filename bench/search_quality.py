"""Search quality on the digits proxy: ParticleSampler against RandomSampler and TPESampler.

All three samplers search the same space (``suggest_genome`` in the same objective, same
fitness protocol, ``NopPruner``: every trained candidate runs the whole protocol) with the
same seeds; Adam and SGD+Nesterov, tuned by the same learning-rate screen, are the baselines.

**What is compared.** Fitness = best validation accuracy of the final run (SPEC 9.4) at the
*evolution* fidelity. For the ParticleSampler, the best trial it trained at the evolution
fidelity (particle re-evaluations and children; its initial population trains at the cheaper
*init* fidelity and is not comparable). Trials that no ParticleSampler placed default to
the evolution fidelity in ``trial_fidelity``; the Random/TPE objective checks that and then
trains at ``"evolution"`` explicitly.

**Budget.** Per seed, the ParticleSampler runs its whole GA (``n_init + n * (1 + steps *
mutations)`` slots, plus any redraws of failed children). Every trial it makes is trained:
its sampler draws random genomes and mutants until they pass the integrity check, at no
trial's cost. Let N be its trial count (the trained evaluations, init fidelity included).
Optuna's samplers draw genes independently, so most of their trials are invalid genomes or
fail the integrity check and are pruned in milliseconds before any training. Both budgets
are reported from one run per sampler and seed:

* *equal trials*: the first N trials (pruned ones included);
* *equal trained evaluations*: trials until N of them were trained (every one at the
  evolution fidelity, so slightly more training than the ParticleSampler's N, part of
  which is at the init fidelity), capped at ``--max-trials-factor * N`` trials.

The first is a prefix of the second: a seeded sampler's k-th trial depends only on the trials
before it, and each evaluation is seeded by (seed, trial number).

Jobs (one study or the baselines of one seed) run in ``--workers`` processes, one torch
thread each, in-memory storage; Random and TPE of a seed start when its ParticleSampler run
has fixed N.

    python bench/search_quality.py                       # the defaults: about 10-20 min on 2 cores
    python bench/search_quality.py --seeds 0 --n-particles 1 --init-factor 2 --steps 1 \\
        --mutations 1 --evolution-epochs 2 --init-epochs 2   # a smoke run, about a minute
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Options", "RunResult", "main", "parse_options", "run_job", "summary_table"]

PARTICLE, RANDOM, TPE, BASELINES = "particle", "random", "tpe", "baselines"
#: User attr this script sets on a trial once its genome is valid and its training starts.
TRAINED_ATTR = "bench.trained_at"


@dataclass(frozen=True)
class Options:
    """The run's configuration (every field is a command-line option)."""

    seeds: tuple[int, ...]
    n_particles: int
    init_factor: int
    steps: int
    mutations: int
    max_redraws: int
    init_epochs: int
    init_steps_per_epoch: int
    evolution_epochs: int
    evolution_steps_per_epoch: int
    warmup_steps: int
    workers: int
    max_trials_factor: int

    def digits_options(self, seed: int) -> dict[str, Any]:
        """Keyword options of ``proxy.tasks.digits``: T = the final run's length, as in the
        digits preset and the paper."""
        return {
            "device": "cpu",
            "cpu_threads": 1,
            "seed": seed,
            "init": {"final_epochs": self.init_epochs,
                     "final_steps_per_epoch": self.init_steps_per_epoch,
                     "total_steps": self.init_epochs * self.init_steps_per_epoch,
                     "warmup_steps": self.warmup_steps},
            "evolution": {"final_epochs": self.evolution_epochs,
                          "final_steps_per_epoch": self.evolution_steps_per_epoch,
                          "total_steps": self.evolution_epochs * self.evolution_steps_per_epoch,
                          "warmup_steps": self.warmup_steps},
        }


@dataclass(frozen=True)
class Job:
    kind: str
    seed: int
    budget: int = 0


@dataclass(frozen=True)
class RunResult:
    """One job's outcome. ``best`` is the best evolution-fidelity fitness (None: no success).

    For Random/TPE, ``prefix_*`` describe the first ``budget`` trials (equal-trials budget)
    and the other fields the whole run (equal trained evaluations). For the baselines,
    ``baselines`` maps a name to its fitness (NaN when it failed the screen).
    """

    kind: str
    seed: int
    wall_s: float
    n_trials: int = 0
    n_trained: int = 0
    n_trained_init: int = 0
    best: float | None = None
    budget: int = 0
    prefix_trained: int = 0
    prefix_best: float | None = None
    hit_cap: bool = False
    baselines: tuple[tuple[str, float], ...] = ()


# -- one job, in a worker process -------------------------------------------------------------


def _objective(proxy: Any, *, evolution_only: bool) -> Callable[[Any], float]:
    """``objective(trial)``: the genome, its fidelity (explicit), then the fitness protocol."""
    from optuna_nos import suggest_genome, trial_fidelity
    from optuna_nos.errors import NOSError
    from proxy.fitness import evaluate_genome

    def objective(trial: Any) -> float:
        genome = suggest_genome(trial, proxy.space, proxy.task.settings)
        fidelity = trial_fidelity(trial)
        if evolution_only and fidelity != "evolution":
            raise NOSError(f"trial {trial.number}: trial_fidelity is {fidelity!r} for a trial "
                           "no ParticleSampler placed; expected 'evolution'")
        trial.set_user_attr(TRAINED_ATTR, fidelity)
        return evaluate_genome(genome, proxy.task, fidelity, trial=trial)

    return objective


def _evolution_fitness(trial: Any) -> float | None:
    """The trial's fitness if it completed a training at the evolution fidelity."""
    from optuna.trial import TrialState

    if trial.user_attrs.get(TRAINED_ATTR) != "evolution" or trial.state != TrialState.COMPLETE:
        return None
    value = trial.value
    return value if value is not None and math.isfinite(value) else None


def _best(trials: Sequence[Any]) -> float | None:
    values = [v for v in map(_evolution_fitness, trials) if v is not None]
    return max(values) if values else None


def _n_trained(trials: Sequence[Any]) -> int:
    return sum(TRAINED_ATTR in t.user_attrs for t in trials)


def _run_particle(options: Options, seed: int, proxy: Any) -> RunResult:
    import optuna

    from optuna_nos import ParticleSampler, StopWhenFinished
    from optuna_nos.suggest import IDLE_ATTR

    sampler = ParticleSampler(n_particles=options.n_particles, init_factor=options.init_factor,
                              steps=options.steps, mutations=options.mutations,
                              max_redraws=options.max_redraws, seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                pruner=optuna.pruners.NopPruner())
    started = time.perf_counter()
    study.optimize(_objective(proxy, evolution_only=False), callbacks=[StopWhenFinished()])
    wall = time.perf_counter() - started
    if not sampler.is_finished(study):
        raise RuntimeError(f"seed {seed}: the ParticleSampler stopped before its GA finished")
    # An idle trial ("search finished") holds no slot and trains nothing: not a GA trial.
    trials = [t for t in study.trials if t.system_attrs.get(IDLE_ATTR) is None]
    untrained = [t.number for t in trials if TRAINED_ATTR not in t.user_attrs]
    if untrained:
        raise RuntimeError(f"seed {seed}: ParticleSampler trials {untrained} were not trained")
    n_init = sum(t.user_attrs[TRAINED_ATTR] == "init" for t in trials)
    return RunResult(PARTICLE, seed, wall, n_trials=len(trials), n_trained=len(trials),
                     n_trained_init=n_init, best=_best(trials), budget=len(trials))


def _run_optuna(options: Options, kind: str, seed: int, budget: int, proxy: Any) -> RunResult:
    import optuna

    sampler: optuna.samplers.BaseSampler = (
        optuna.samplers.RandomSampler(seed=seed) if kind == RANDOM
        else optuna.samplers.TPESampler(seed=seed)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                pruner=optuna.pruners.NopPruner())

    trained = 0

    def stop_at_budget(study: optuna.Study, trial: Any) -> None:
        nonlocal trained
        trained += TRAINED_ATTR in trial.user_attrs
        if trained >= budget:
            study.stop()

    cap = options.max_trials_factor * budget
    started = time.perf_counter()
    study.optimize(_objective(proxy, evolution_only=True), n_trials=cap,
                   callbacks=[stop_at_budget])
    wall = time.perf_counter() - started
    trials = study.trials
    prefix = trials[:budget]
    return RunResult(kind, seed, wall, n_trials=len(trials), n_trained=_n_trained(trials),
                     best=_best(trials), budget=budget, prefix_trained=_n_trained(prefix),
                     prefix_best=_best(prefix), hit_cap=_n_trained(trials) < budget)


def _run_baselines(seed: int, proxy: Any) -> RunResult:
    from proxy.tasks import BASELINES as BASELINE_EQUATIONS

    started = time.perf_counter()
    scores = tuple((name, proxy.evaluate_baseline(name, "evolution"))
                   for name in BASELINE_EQUATIONS)
    return RunResult(BASELINES, seed, time.perf_counter() - started, baselines=scores)


def run_job(job: Job, options: Options) -> RunResult:
    """Run one job in this process (one torch thread, optuna's log at WARNING)."""
    import optuna
    import torch

    from proxy.tasks import digits

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    proxy = digits(**options.digits_options(job.seed))
    proxy.task.dataset()
    if job.kind == PARTICLE:
        return _run_particle(options, job.seed, proxy)
    if job.kind in (RANDOM, TPE):
        return _run_optuna(options, job.kind, job.seed, job.budget, proxy)
    return _run_baselines(job.seed, proxy)


# -- scheduling -------------------------------------------------------------------------------


def run_all(options: Options, log: Callable[[str], None]) -> list[RunResult]:
    """Every job over ``options.workers`` processes; Random/TPE of a seed follow its GA."""
    results: list[RunResult] = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=options.workers, mp_context=context) as pool:
        pending: set[Future[RunResult]] = set()

        def submit(job: Job) -> None:
            pending.add(pool.submit(run_job, job, options))

        for seed in options.seeds:
            submit(Job(PARTICLE, seed))
        for seed in options.seeds:
            submit(Job(BASELINES, seed))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                results.append(result)
                log(_progress_line(result))
                if result.kind == PARTICLE:
                    submit(Job(RANDOM, result.seed, result.n_trials))
                    submit(Job(TPE, result.seed, result.n_trials))
    return results


def _progress_line(result: RunResult) -> str:
    if result.kind == BASELINES:
        scores = ", ".join(f"{name} {value:.4f}" for name, value in result.baselines)
        return f"done {result.kind} seed {result.seed} in {result.wall_s:.0f} s: {scores}"
    return (f"done {result.kind} seed {result.seed} in {result.wall_s:.0f} s: "
            f"{result.n_trials} trials, {result.n_trained} trained, best {_fmt(result.best)}")


# -- report -----------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def _stats_cells(values: Sequence[float | None]) -> list[str]:
    """mean, std (sample, n - 1), min-max over the runs with a result; and how many had one."""
    found = [v for v in values if v is not None and not math.isnan(v)]
    if not found:
        return ["-", "-", "-", f"0/{len(values)}"]
    std = statistics.stdev(found) if len(found) > 1 else math.nan
    return [f"{statistics.fmean(found):.4f}", "-" if math.isnan(std) else f"{std:.4f}",
            f"{min(found):.4f}-{max(found):.4f}", f"{len(found)}/{len(values)}"]


def _mean(values: Sequence[int]) -> str:
    return f"{statistics.fmean(values):.1f}"


def summary_table(results: Sequence[RunResult]) -> str:
    """The markdown table: one row per method and budget, statistics over seeds."""
    by_kind = {kind: sorted((r for r in results if r.kind == kind), key=lambda r: r.seed)
               for kind in (PARTICLE, RANDOM, TPE, BASELINES)}
    header = ["method", "budget per run", "trials (mean)", "trained evals (mean)",
              "best val acc mean", "std", "min-max", "runs with a result"]
    rows = [header, ["---"] * len(header)]
    particle = by_kind[PARTICLE]
    if particle:
        budget = _mean([r.n_trials for r in particle])
        init = _mean([r.n_trained_init for r in particle])
        rows.append(["ParticleSampler (best evolution-fidelity trial)",
                     f"whole GA: N = {budget} trials ({init} at init fidelity)",
                     budget, budget, *_stats_cells([r.best for r in particle])])
    for kind, name in ((RANDOM, "RandomSampler"), (TPE, "TPESampler")):
        runs = by_kind[kind]
        if not runs:
            continue
        rows.append([f"{name}, equal trials", "first N trials",
                     _mean([min(r.budget, r.n_trials) for r in runs]),
                     _mean([r.prefix_trained for r in runs]),
                     *_stats_cells([r.prefix_best for r in runs])])
        capped = sum(r.hit_cap for r in runs)
        note = f" ({capped} run(s) hit the trial cap)" if capped else ""
        rows.append([f"{name}, equal trained evals", f"N trained evaluations{note}",
                     _mean([r.n_trials for r in runs]), _mean([r.n_trained for r in runs]),
                     *_stats_cells([r.best for r in runs])])
    baselines = by_kind[BASELINES]
    if baselines:
        for name in (n for n, _ in baselines[0].baselines):
            values = [dict(r.baselines)[name] for r in baselines]
            rows.append([f"baseline {name} (LR screen)", "1 evaluation", "-", "1",
                         *_stats_cells(values)])
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in rows)


def runs_table(results: Sequence[RunResult]) -> str:
    """Per-run details: trials, trained evaluations, best fitness and wall time."""
    header = ["job", "seed", "trials", "trained", "first-N trials: trained / best",
              "best val acc", "wall s"]
    rows: list[list[Any]] = [header, ["---"] * len(header)]
    order = {PARTICLE: 0, RANDOM: 1, TPE: 2, BASELINES: 3}
    for r in sorted(results, key=lambda r: (order[r.kind], r.seed)):
        if r.kind == BASELINES:
            best = ", ".join(f"{n} {_fmt(v)}" for n, v in r.baselines)
            rows.append([r.kind, r.seed, "-", "-", "-", best, f"{r.wall_s:.0f}"])
            continue
        prefix = (f"{r.prefix_trained} / {_fmt(r.prefix_best)}" if r.kind != PARTICLE
                  else "-")
        rows.append([r.kind, r.seed, r.n_trials, r.n_trained, prefix, _fmt(r.best),
                     f"{r.wall_s:.0f}"])
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in rows)


def describe(options: Options) -> str:
    """The exact configuration: versions, GA sizes, samplers and the fitness protocol."""
    import optuna
    import torch

    from optuna_nos.sampler import GASizes
    from proxy.tasks import BASELINES as BASELINE_EQUATIONS
    from proxy.tasks import digits

    sizes = GASizes(options.n_particles, options.init_factor, options.steps, options.mutations,
                    options.max_redraws)
    config = digits(**options.digits_options(options.seeds[0])).task.config
    lines = [
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"optuna {optuna.__version__}, {platform.machine()}",
        f"command: {' '.join(sys.argv)}",
        f"options: {asdict(options)}",
        f"ParticleSampler: {asdict(sizes)}: {sizes.n_slots} slots ({sizes.n_init} init + "
        f"{sizes.n_slots - sizes.n_init} evolution), seed = run seed",
        "RandomSampler(seed=run seed); TPESampler(seed=run seed), optuna's defaults "
        "(10 random startup trials); pruner NopPruner for all; in-memory storage",
        "digits task: seed = run seed (evaluations seeded by (seed, trial number)), "
        "1 torch thread, validation split 0.2 (split seed 0)",
        f"init fidelity: {config.init}",
        f"evolution fidelity: {config.evolution}",
        f"screen lrs: stage 1 {config.stage1_lrs}, stage 2 {config.stage2_lrs}; "
        f"batch {config.batch_size}; dropout {config.dropout}",
        f"baselines: {BASELINE_EQUATIONS} (evolution fidelity, same protocol)",
    ]
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-particles", type=int, default=3)
    parser.add_argument("--init-factor", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--mutations", type=int, default=3)
    parser.add_argument("--max-redraws", type=int, default=2)
    parser.add_argument("--init-epochs", type=int, default=8,
                        help="final-run epochs at the init fidelity (digits preset: 10)")
    parser.add_argument("--init-steps-per-epoch", type=int, default=20,
                        help="steps per init epoch (digits preset: 30); T = epochs x steps")
    parser.add_argument("--evolution-epochs", type=int, default=8,
                        help="final-run epochs at the evolution fidelity (digits preset: 10)")
    parser.add_argument("--evolution-steps-per-epoch", type=int, default=25,
                        help="steps per evolution epoch (digits preset: 40); "
                             "T = epochs x steps")
    parser.add_argument("--warmup-steps", type=int, default=40,
                        help="W at both fidelities (digits preset: 40)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--max-trials-factor", type=int, default=50,
                        help="Random/TPE stop after this many times N trials at most")
    args = parser.parse_args(argv)
    options = Options(seeds=tuple(args.seeds), n_particles=args.n_particles,
                      init_factor=args.init_factor, steps=args.steps,
                      mutations=args.mutations, max_redraws=args.max_redraws,
                      init_epochs=args.init_epochs,
                      init_steps_per_epoch=args.init_steps_per_epoch,
                      evolution_epochs=args.evolution_epochs,
                      evolution_steps_per_epoch=args.evolution_steps_per_epoch,
                      warmup_steps=args.warmup_steps, workers=args.workers,
                      max_trials_factor=args.max_trials_factor)
    for name in ("workers", "max_trials_factor"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    print(describe(options), flush=True)
    started = time.perf_counter()
    results = run_all(options, lambda line: print(line, file=sys.stderr, flush=True))
    wall = time.perf_counter() - started
    print("\n## Search quality on digits (best validation accuracy, evolution fidelity)\n")
    print(summary_table(results))
    print(f"\nN = the ParticleSampler's trial count for the same seed; std is the sample "
          f"std over seeds (n - 1); {len(options.seeds)} seeds.\n")
    print(runs_table(results))
    print(f"\nwall time: {wall:.0f} s with {options.workers} worker processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
