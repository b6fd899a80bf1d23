"""Does the search pay? ParticleSampler vs RandomSampler vs TPESampler, then test and transfer.

**Search.** Per seed, the three samplers search the paper's space (``suggest_genome`` in the
same objective, same fitness protocol, ``NopPruner``) on the search task (default MNIST-1D,
:mod:`proxy.mnist1d`), selecting on its *validation* split only:

* ParticleSampler: its whole GA, ``n_init + n * (1 + steps * mutations)`` slots plus the
  redraws of failed children; every trial it makes is trained (its init population at the
  cheaper init fidelity). N = its trial count = its trained evaluations.
* RandomSampler / TPESampler (``seed`` = the run seed, optuna's defaults): trials until N of
  them were trained, every one at the evolution fidelity (slightly more training than the
  GA's N), capped at ``--max-trials-factor * N`` trials. Trials whose genome is invalid or
  fails the integrity check are pruned before any training and not counted.

A search's result is its best trial trained at the evolution fidelity (fitness = best
validation accuracy of the final run).

**Test and transfer.** The best genome of every search, and the baselines Adam, AdamW,
SGD+Nesterov and Lion (:mod:`proxy.baselines`, tuned by the same learning-rate screen, same
schedule), are each evaluated with ``--test-seeds`` fresh seeds:

* *test*: the search task at the evolution fidelity, the final run validated on the **test**
  split, which no search read;
* *transfer*: a task no search ran on (default: scikit-learn digits, its validation split),
  at that task's evolution fidelity.

A test or transfer score is the accuracy after the final run's last epoch (no choice of
epoch on the scored split); an evaluation that fails the screen scores 0.1 (chance).

**Statistics.** Means and sample standard deviations over seeds; each difference comes with
a 95 % percentile bootstrap interval (10,000 resamples): paired over search seeds for
sampler against sampler; for a sampler's genomes against a baseline, search seeds and test
seeds resampled independently.

Jobs run in ``--workers`` processes, one torch thread each, in-memory storage. Every finished
job is appended to ``--results`` (JSON lines), so a run can be split and resumed:
``--phase search`` runs the GA searches, ``--phase compare`` runs Random and TPE with the
budgets the GA results fixed, ``--phase final`` the test and transfer evaluations, and
``--report`` only prints the tables of a results file. ``--phase all`` does everything.
``--phase confirm`` runs the GA with its records confirmed by a second seed
(:mod:`proxy.confirm`; each confirmation counts as a trained evaluation), reported as
"ParticleSampler + confirm records" and compared with the plain GA, paired by seed.

    python bench/search_quality.py --results /tmp/sq.jsonl            # about 45 min on 2 cores
    python bench/search_quality.py --results /tmp/sq.jsonl --report   # the tables again
    python bench/search_quality.py --seeds 0 --n-particles 1 --init-factor 2 --steps 1 \\
        --mutations 1 --test-seeds 7 --results /tmp/smoke.jsonl     # a smoke run, minutes
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testkit.stats import bootstrap_interval

if TYPE_CHECKING:
    from optuna_nos.sampler import GASizes

__all__ = ["Options", "main", "parse_options", "report", "run_job"]

PARTICLE, RANDOM, TPE, FINAL, REVAL = "particle", "random", "tpe", "final", "revalidate"
#: The GA whose records are confirmed with a second seed (:mod:`proxy.confirm`).
CONFIRM = "confirm"
SAMPLERS = (PARTICLE, CONFIRM, RANDOM, TPE)
SAMPLER_NAMES = {
    PARTICLE: "ParticleSampler",
    CONFIRM: "ParticleSampler + confirm records",
    RANDOM: "RandomSampler",
    TPE: "TPESampler",
}
PHASES = ("all", "search", "compare", "final", REVAL, CONFIRM)
TASKS = ("mnist1d", "digits")
#: User attrs this script sets on a trial once its genome is valid and its training starts.
TRAINED_ATTR = "bench.trained_at"
GENOME_ATTR = "bench.genome"
#: The score of a test or transfer evaluation that failed (chance on ten classes).
FAILED = 0.1


@dataclass(frozen=True)
class Options:
    """The run's configuration (every field is a command-line option; ``ga`` holds
    ``--n-particles``, ``--init-factor``, ``--steps``, ``--mutations`` and ``--max-redraws``)."""

    seeds: tuple[int, ...]
    task: str
    transfer_task: str
    ga: GASizes
    workers: int
    max_trials_factor: int
    test_seeds: tuple[int, ...]
    baselines: tuple[str, ...]

    def objective(self, task: str, seed: int, split: str | None = None) -> Any:
        """The task's objective (its own preset), one torch thread, evaluations seeded by
        (seed, trial number)."""
        import proxy.tasks

        options: dict[str, Any] = {"device": "cpu", "cpu_threads": 1, "seed": seed}
        if split is not None:
            options["split"] = split
        return getattr(proxy.tasks, task)(**options)


@dataclass(frozen=True)
class Job:
    kind: str
    seed: int
    budget: int = 0
    #: FINAL jobs: what is evaluated ("<sampler> seed <s>" or "baseline <name>") and its rule
    #: (a genome's JSON or a baseline name).
    label: str = ""
    rule: str = ""


@dataclass(frozen=True)
class SearchResult:
    """One search. ``best`` is the best evolution-fidelity validation fitness (None: none)."""

    kind: str
    seed: int
    wall_s: float
    n_trials: int
    n_trained: int
    n_trained_init: int
    best: float | None
    budget: int
    hit_cap: bool
    genome: str | None = None
    equation: str | None = None


@dataclass(frozen=True)
class FinalResult:
    """Test and transfer scores of one rule, one per test seed."""

    label: str
    kind: str
    seed: int
    equation: str
    test: tuple[float, ...]
    transfer: tuple[float, ...]
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RevalResult:
    """A rule's validation fitness (best epoch, as in the search) with the test seeds: how
    much of a search's best score was the luck of its one evaluation."""

    label: str
    val: tuple[float, ...]
    wall_s: float = 0.0


# -- searches, in a worker process ------------------------------------------------------------


def _objective(
    proxy: Any, *, evolution_only: bool, confirm: bool = False
) -> Callable[[Any], float]:
    """``objective(trial)``: the genome, its fidelity (explicit), then the fitness protocol
    (with ``confirm``, records confirmed by a second seed: :mod:`proxy.confirm`)."""
    from optuna_nos import suggest_genome, trial_fidelity
    from optuna_nos.core.errors import NOSError
    from proxy.confirm import evaluate_confirmed
    from proxy.fitness import evaluate_genome

    def objective(trial: Any) -> float:
        genome = suggest_genome(trial, proxy.space, proxy.task.settings)
        fidelity = trial_fidelity(trial)
        if evolution_only and fidelity != "evolution":
            raise NOSError(
                f"trial {trial.number}: trial_fidelity is {fidelity!r} for a trial "
                "no ParticleSampler placed; expected 'evolution'"
            )
        trial.set_user_attr(TRAINED_ATTR, fidelity)
        trial.set_user_attr(GENOME_ATTR, genome.to_json())
        if confirm:
            return evaluate_confirmed(genome, proxy.task, fidelity, trial)
        return evaluate_genome(genome, proxy.task, fidelity, trial=trial)

    return objective


def _evolution_fitness(trial: Any) -> float | None:
    """The trial's fitness if it completed a training at the evolution fidelity."""
    from optuna.trial import TrialState

    if trial.user_attrs.get(TRAINED_ATTR) != "evolution" or trial.state != TrialState.COMPLETE:
        return None
    value = trial.value
    return value if value is not None and math.isfinite(value) else None


def _best_trial(trials: Sequence[Any]) -> Any:
    scored = [(v, t) for t in trials if (v := _evolution_fitness(t)) is not None]
    return max(scored, key=lambda pair: (pair[0], -pair[1].number))[1] if scored else None


def _search_result(
    kind: str, seed: int, wall: float, trials: Sequence[Any], budget: int, n_init: int = 0
) -> SearchResult:
    from optuna_nos.space.genome import Genome
    from optuna_nos.study.stored import CONFIRM_ATTR

    best = _best_trial(trials)
    # A confirmed record trained twice: both trainings count in the budget.
    trained = sum(
        len(t.user_attrs.get(CONFIRM_ATTR, [0])) for t in trials if TRAINED_ATTR in t.user_attrs
    )
    genome = None if best is None else best.user_attrs[GENOME_ATTR]
    return SearchResult(
        kind,
        seed,
        wall,
        n_trials=len(trials),
        n_trained=trained,
        n_trained_init=n_init,
        best=None if best is None else best.value,
        budget=budget,
        hit_cap=trained < budget,
        genome=genome,
        equation=None if genome is None else Genome.from_json(genome).equation(),
    )


def _run_particle(
    options: Options, seed: int, proxy: Any, *, confirm: bool = False
) -> SearchResult:
    import optuna

    from optuna_nos import ParticleSampler, StopWhenFinished
    from optuna_nos.study.stored import IDLE_ATTR

    sampler = ParticleSampler(**asdict(options.ga), seed=seed)
    study = optuna.create_study(
        direction="maximize", sampler=sampler, pruner=optuna.pruners.NopPruner()
    )
    started = time.perf_counter()
    study.optimize(
        _objective(proxy, evolution_only=False, confirm=confirm), callbacks=[StopWhenFinished()]
    )
    wall = time.perf_counter() - started
    if not sampler.is_finished(study):
        raise RuntimeError(f"seed {seed}: the ParticleSampler stopped before its GA finished")
    # An idle trial ("search finished") holds no slot and trains nothing: not a GA trial.
    trials = [t for t in study.trials if t.system_attrs.get(IDLE_ATTR) is None]
    untrained = [t.number for t in trials if TRAINED_ATTR not in t.user_attrs]
    if untrained:
        raise RuntimeError(f"seed {seed}: ParticleSampler trials {untrained} were not trained")
    n_init = sum(t.user_attrs[TRAINED_ATTR] == "init" for t in trials)
    return _search_result(
        CONFIRM if confirm else PARTICLE, seed, wall, trials, len(trials), n_init
    )


def _run_optuna(options: Options, kind: str, seed: int, budget: int, proxy: Any) -> SearchResult:
    import optuna

    sampler: optuna.samplers.BaseSampler = (
        optuna.samplers.RandomSampler(seed=seed)
        if kind == RANDOM
        else optuna.samplers.TPESampler(seed=seed)
    )
    study = optuna.create_study(
        direction="maximize", sampler=sampler, pruner=optuna.pruners.NopPruner()
    )
    trained = 0

    def stop_at_budget(study: optuna.Study, trial: Any) -> None:
        nonlocal trained
        trained += TRAINED_ATTR in trial.user_attrs
        if trained >= budget:
            study.stop()

    started = time.perf_counter()
    study.optimize(
        _objective(proxy, evolution_only=True),
        n_trials=options.max_trials_factor * budget,
        callbacks=[stop_at_budget],
    )
    return _search_result(kind, seed, time.perf_counter() - started, study.trials, budget)


# -- test and transfer, in a worker process ---------------------------------------------------


def _rule(text: str) -> Any:
    from optuna_nos.space.genome import Genome
    from proxy.baselines import TORCH_BASELINES, TorchBaseline

    return TorchBaseline(text) if text in TORCH_BASELINES else Genome.from_json(text)


def _last_epoch_scores(
    rule: Any, proxy: Any, seeds: Sequence[int], *, best_epoch: bool = False
) -> tuple[float, ...]:
    """Per seed: the evolution-fidelity final run's accuracy after its last epoch (or its
    best epoch: the search's fitness)."""
    from proxy.fitness import measure_fitness

    scores = []
    for seed in seeds:
        result = measure_fitness(rule, proxy.task, "evolution", seed=seed)
        scored = result.final is not None and result.fitness is not None
        if not scored or result.final is None or result.fitness is None:
            scores.append(FAILED)
            continue
        value = result.fitness if best_epoch else result.final.val_acc[-1]
        scores.append(value if math.isfinite(value) else FAILED)
    return tuple(scores)


def _run_reval(options: Options, job: Job) -> RevalResult:
    started = time.perf_counter()
    val = options.objective(options.task, job.seed)
    scores = _last_epoch_scores(_rule(job.rule), val, options.test_seeds, best_epoch=True)
    return RevalResult(job.label, scores, time.perf_counter() - started)


def _run_final(options: Options, job: Job) -> FinalResult:
    started = time.perf_counter()
    rule = _rule(job.rule)
    test = options.objective(options.task, job.seed, split="test")
    transfer = options.objective(options.transfer_task, job.seed)
    scores = (
        _last_epoch_scores(rule, test, options.test_seeds),
        _last_epoch_scores(rule, transfer, options.test_seeds),
    )
    kind = job.label.split()[0]
    return FinalResult(
        job.label,
        kind,
        job.seed,
        str(rule) if kind == "baseline" else rule.equation(),
        *scores,
        wall_s=time.perf_counter() - started,
    )


def run_job(job: Job, options: Options) -> SearchResult | FinalResult | RevalResult:
    """Run one job in this process (one torch thread, optuna's log at WARNING)."""
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if job.kind == FINAL:
        return _run_final(options, job)
    if job.kind == REVAL:
        return _run_reval(options, job)
    proxy = options.objective(options.task, job.seed)
    proxy.task.dataset()
    if job.kind in (PARTICLE, CONFIRM):
        return _run_particle(options, job.seed, proxy, confirm=job.kind == CONFIRM)
    return _run_optuna(options, job.kind, job.seed, job.budget, proxy)


# -- results file -----------------------------------------------------------------------------


def _save(path: Path, result: SearchResult | FinalResult | RevalResult) -> None:
    record = {"type": type(result).__name__, **asdict(result)}
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def load_results(path: Path) -> tuple[list[SearchResult], list[FinalResult]]:
    """The searches and final evaluations recorded in ``path`` (a later record of the same
    job replaces an earlier one)."""
    searches, finals, _ = load_all(path)
    return searches, finals


def load_all(path: Path) -> tuple[list[SearchResult], list[FinalResult], dict[str, RevalResult]]:
    """:func:`load_results` and the re-validations by label."""
    searches: dict[tuple[str, int], SearchResult] = {}
    finals: dict[str, FinalResult] = {}
    revals: dict[str, RevalResult] = {}
    if not path.exists():
        return [], [], {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        kind = record.pop("type")
        if kind == "SearchResult":
            result = SearchResult(**record)
            searches[(result.kind, result.seed)] = result
        elif kind == "RevalResult":
            revals[record["label"]] = RevalResult(
                record["label"], tuple(record["val"]), record["wall_s"]
            )
        else:
            record["test"], record["transfer"] = tuple(record["test"]), tuple(record["transfer"])
            final = FinalResult(**record)
            finals[final.label] = final
    return list(searches.values()), list(finals.values()), revals


# -- scheduling -------------------------------------------------------------------------------


def _final_rule(final: FinalResult, searches: Sequence[SearchResult]) -> str:
    """The rule text (baseline name or genome JSON) of a final evaluation."""
    if final.kind == "baseline":
        return final.label.split()[1]
    search = next(r for r in searches if (r.kind, r.seed) == (final.kind, final.seed))
    assert search.genome is not None
    return search.genome


def _final_job(result: SearchResult) -> Job | None:
    if result.genome is None:
        return None
    return Job(FINAL, result.seed, label=f"{result.kind} seed {result.seed}", rule=result.genome)


def run_phase(options: Options, phase: str, path: Path, log: Callable[[str], None]) -> None:
    """Run the jobs of ``phase`` not yet in the results file; append each as it finishes."""
    searches, finals = load_results(path)
    done_searches = {(r.kind, r.seed) for r in searches}
    done_finals = {r.label for r in finals}
    budgets = {r.seed: r.n_trials for r in searches if r.kind == PARTICLE}
    jobs: list[Job] = []
    if phase in ("all", "search"):
        jobs += [Job(PARTICLE, s) for s in options.seeds if (PARTICLE, s) not in done_searches]
    if phase == CONFIRM:
        jobs += [Job(CONFIRM, s) for s in options.seeds if (CONFIRM, s) not in done_searches]
    if phase in ("all", "final"):
        jobs += [
            Job(FINAL, 0, label=f"baseline {name}", rule=name)
            for name in options.baselines
            if f"baseline {name}" not in done_finals
        ]
        jobs += [
            job
            for r in searches
            if (job := _final_job(r)) is not None and job.label not in done_finals
        ]
    if phase == REVAL:
        _, _, revals = load_all(path)
        jobs += [
            Job(REVAL, r.seed, label=r.label, rule=_final_rule(r, searches))
            for r in finals
            if r.label not in revals
        ]
    if phase in ("all", "compare"):
        jobs += [
            Job(kind, s, budgets[s])
            for s in options.seeds
            for kind in (RANDOM, TPE)
            if s in budgets and (kind, s) not in done_searches
        ]
    follow_up = phase == "all"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=options.workers, mp_context=context) as pool:
        pending: set[Future[SearchResult | FinalResult | RevalResult]] = {
            pool.submit(run_job, job, options) for job in jobs
        }
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                result = future.result()
                _save(path, result)
                log(_progress_line(result))
                if not follow_up or not isinstance(result, SearchResult):
                    continue
                next_jobs = [_final_job(result)]
                if result.kind == PARTICLE:
                    next_jobs += [
                        Job(RANDOM, result.seed, result.n_trials),
                        Job(TPE, result.seed, result.n_trials),
                    ]
                pending |= {
                    pool.submit(run_job, job, options) for job in next_jobs if job is not None
                }


def _progress_line(result: SearchResult | FinalResult | RevalResult) -> str:
    if isinstance(result, RevalResult):
        return f"done revalidate {result.label}: {result.val}"
    if isinstance(result, FinalResult):
        return (
            f"done {result.label} in {result.wall_s:.0f} s: test {_fmt_mean(result.test)}, "
            f"transfer {_fmt_mean(result.transfer)}: {result.equation}"
        )
    return (
        f"done {result.kind} seed {result.seed} in {result.wall_s:.0f} s: "
        f"{result.n_trials} trials, {result.n_trained} trained, best {_fmt(result.best)}: "
        f"{result.equation}"
    )


# -- statistics and report --------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def _fmt_mean(values: Sequence[float]) -> str:
    return f"{statistics.fmean(values):.4f}" if values else "-"


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return f"{statistics.fmean(values):.4f} ± {_fmt(std)}"


def _diff(a: Sequence[float], b: Sequence[float], *, paired: bool) -> str:
    if len(a) < 2 or len(b) < 2:
        return "-"
    mean, low, high = bootstrap_interval(a, b, paired=paired)
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"


def _table(rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(str(c) for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def search_table(searches: Sequence[SearchResult]) -> str:
    """Validation fitness of each sampler's best, and paired differences between samplers."""
    by_kind = {k: {r.seed: r for r in searches if r.kind == k} for k in SAMPLERS}
    rows: list[list[Any]] = [
        [
            "sampler",
            "runs",
            "trials (mean)",
            "trained evals (mean)",
            "best val acc, mean ± std (confirmed: mean of 2 seeds)",
            "min-max",
        ]
    ]
    for kind in SAMPLERS:
        runs = list(by_kind[kind].values())
        if not runs:
            continue
        found = [r.best for r in runs if r.best is not None]
        capped = sum(r.hit_cap for r in runs)
        rows.append(
            [
                SAMPLER_NAMES[kind] + (f" ({capped} hit the trial cap)" if capped else ""),
                len(runs),
                f"{statistics.fmean(r.n_trials for r in runs):.1f}",
                f"{statistics.fmean(r.n_trained for r in runs):.1f}",
                _mean_std(found),
                f"{min(found):.4f}-{max(found):.4f}" if found else "-",
            ]
        )
    diffs: list[list[Any]] = [["difference (paired by seed)", "seeds", "mean [95% bootstrap CI]"]]
    for a, b in ((PARTICLE, RANDOM), (PARTICLE, TPE), (TPE, RANDOM)):
        seeds = sorted(
            s
            for s in by_kind[a]
            if s in by_kind[b]
            and by_kind[a][s].best is not None
            and by_kind[b][s].best is not None
        )
        if not seeds:
            continue
        diffs.append(
            [
                f"{SAMPLER_NAMES[a]} - {SAMPLER_NAMES[b]}",
                len(seeds),
                _diff(
                    [by_kind[a][s].best or 0.0 for s in seeds],
                    [by_kind[b][s].best or 0.0 for s in seeds],
                    paired=True,
                ),
            ]
        )
    return _table(rows) + "\n\n" + _table(diffs)


def final_table(finals: Sequence[FinalResult], reference: str = "adamw") -> str:
    """Test and transfer accuracy of the baselines and each sampler's genomes, and their
    differences from the ``reference`` baseline."""
    baselines = {r.label.split()[1]: r for r in finals if r.kind == "baseline"}
    ref = baselines.get(reference)
    rows: list[list[Any]] = [
        [
            "optimizer",
            "n",
            "test acc, mean ± std",
            f"test - {reference} [95% CI]",
            "transfer acc, mean ± std",
            f"transfer - {reference} [95% CI]",
        ]
    ]
    for name, r in baselines.items():
        rows.append(
            [
                f"{name} (tuned baseline)",
                f"{len(r.test)} seeds",
                _mean_std(r.test),
                "-" if ref is None or name == reference else _diff(r.test, ref.test, paired=False),
                _mean_std(r.transfer),
                "-"
                if ref is None or name == reference
                else _diff(r.transfer, ref.transfer, paired=False),
            ]
        )
    for kind in SAMPLERS:
        runs = [r for r in finals if r.kind == kind]
        if not runs:
            continue
        test = [statistics.fmean(r.test) for r in runs]
        transfer = [statistics.fmean(r.transfer) for r in runs]
        rows.append(
            [
                f"best genome of {SAMPLER_NAMES[kind]}",
                f"{len(runs)} searches",
                _mean_std(test),
                "-" if ref is None else _diff(test, ref.test, paired=False),
                _mean_std(transfer),
                "-" if ref is None else _diff(transfer, ref.transfer, paired=False),
            ]
        )
    return _table(rows)


def genomes_table(finals: Sequence[FinalResult]) -> str:
    """Every evaluated rule: test and transfer scores per test seed."""
    rows: list[list[Any]] = [["rule", "test acc per seed", "transfer acc per seed", "equation"]]
    for r in sorted(finals, key=lambda r: (r.kind != "baseline", r.label)):
        rows.append(
            [
                r.label,
                ", ".join(f"{v:.4f}" for v in r.test),
                ", ".join(f"{v:.4f}" for v in r.transfer),
                f"`{r.equation}`",
            ]
        )
    return _table(rows)


def selection_table(
    searches: Sequence[SearchResult], finals: Sequence[FinalResult], revals: dict[str, RevalResult]
) -> str:
    """Each group's score when selected, on validation again with fresh seeds, and on test."""
    rows: list[list[Any]] = [
        [
            "optimizer",
            "val acc in the search (its one evaluation)",
            "val acc, fresh seeds",
            "test acc, fresh seeds",
        ]
    ]
    best = {(r.kind, r.seed): r.best for r in searches}
    groups = [
        (f"{r.label.split()[1]} (tuned baseline)", [r]) for r in finals if r.kind == "baseline"
    ]
    groups += [
        (f"best genome of {SAMPLER_NAMES[k]}", [r for r in finals if r.kind == k])
        for k in SAMPLERS
    ]
    for name, runs in groups:
        runs = [r for r in runs if r.label in revals]
        if not runs:
            continue
        searched = [b for r in runs if (b := best.get((r.kind, r.seed))) is not None]
        rows.append(
            [
                name,
                _mean_std(searched) if searched else "-",
                _mean_std(
                    [statistics.fmean(revals[r.label].val) for r in runs]
                    if len(runs) > 1
                    else revals[runs[0].label].val
                ),
                _mean_std(
                    [statistics.fmean(r.test) for r in runs] if len(runs) > 1 else runs[0].test
                ),
            ]
        )
    return _table(rows)


def confirm_table(finals: Sequence[FinalResult], revals: dict[str, RevalResult]) -> str:
    """The confirming GA against the plain GA, paired by search seed, on the scores of fresh
    seeds: validation again (a search's own best is a one-seed score for the plain GA and a
    two-seed mean for a confirmed record, so they do not compare), test and transfer."""
    plain = {r.seed: r for r in finals if r.kind == PARTICLE}
    confirmed = {r.seed: r for r in finals if r.kind == CONFIRM}
    seeds = sorted(s for s in confirmed if s in plain)
    rows: list[list[Any]] = [
        [
            "score (fresh seeds, mean per search)",
            "seeds",
            f"{SAMPLER_NAMES[CONFIRM]} - {SAMPLER_NAMES[PARTICLE]} [95% bootstrap CI]",
        ]
    ]

    def mean_of(result: FinalResult, what: str) -> float | None:
        if what == "val":
            reval = revals.get(result.label)
            return None if reval is None else statistics.fmean(reval.val)
        return statistics.fmean(getattr(result, what))

    for what in ("val", "test", "transfer"):
        pairs = [
            (a, b)
            for s in seeds
            if (a := mean_of(confirmed[s], what)) is not None
            and (b := mean_of(plain[s], what)) is not None
        ]
        rows.append(
            [what, len(pairs), _diff([a for a, _ in pairs], [b for _, b in pairs], paired=True)]
        )
    return _table(rows)


def describe(options: Options) -> str:
    """The exact configuration: versions, GA sizes, samplers and the fitness protocol."""
    import optuna
    import torch

    sizes = options.ga
    config = options.objective(options.task, options.seeds[0]).task.config
    transfer = options.objective(options.transfer_task, options.seeds[0]).task.config
    return "\n".join(
        [
            f"python {platform.python_version()}, torch {torch.__version__}, "
            f"optuna {optuna.__version__}, {platform.machine()}",
            f"command: {' '.join(sys.argv)}",
            f"options: {asdict(options)}",
            f"ParticleSampler: {asdict(sizes)}: {sizes.n_slots} slots ({sizes.n_init} init + "
            f"{sizes.n_slots - sizes.n_init} evolution), seed = run seed",
            f"search task {options.task}: init {config.init}",
            f"evolution {config.evolution}; screen lrs {config.screen_lrs}; batch "
            f"{config.batch_size}; BN momentum {config.bn_momentum}",
            f"transfer task {options.transfer_task}: evolution {transfer.evolution}",
        ]
    )


def report(path: Path, options: Options | None = None) -> str:
    """The markdown tables of a results file."""
    searches, finals, revals = load_all(path)
    seeds = sorted({r.seed for r in searches})
    parts = [
        f"### Search on the validation split ({len(seeds)} seeds: {seeds})",
        search_table(searches),
        "### Test split and transfer task (last-epoch accuracy, fresh seeds)",
        final_table(finals),
        "### Every evaluated rule",
        genomes_table(finals),
    ]
    if revals:
        parts += [
            "### Selection noise: validation again with the fresh seeds "
            "(best epoch, as in the search)",
            selection_table(searches, finals, revals),
        ]
    if any(r.kind == CONFIRM for r in finals):
        parts += [
            "### Confirmed records against the plain GA (paired by search seed)",
            confirm_table(finals, revals),
        ]
    if options is not None:
        parts.insert(0, "```\n" + describe(options) + "\n```")
    return "\n\n".join(parts) + "\n"


# -- command line -----------------------------------------------------------------------------


def parse_options(argv: Sequence[str] | None = None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--task", default="mnist1d", choices=TASKS)
    parser.add_argument("--transfer-task", default="digits", choices=TASKS)
    parser.add_argument("--n-particles", type=int, default=3)
    parser.add_argument("--init-factor", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--mutations", type=int, default=3)
    parser.add_argument("--max-redraws", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--max-trials-factor",
        type=int,
        default=50,
        help="Random/TPE stop after this many times N trials at most",
    )
    parser.add_argument("--test-seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    parser.add_argument(
        "--baselines", nargs="+", default=["adam", "adamw", "sgd_nesterov", "lion"]
    )
    parser.add_argument("--results", required=True, help="JSON-lines file of finished jobs")
    parser.add_argument("--phase", default="all", choices=PHASES)
    parser.add_argument("--report", action="store_true", help="only print the tables")
    args = parser.parse_args(argv)
    if args.task == args.transfer_task:
        parser.error("--transfer-task must differ from --task")
    from optuna_nos.sampler import GASizes

    ga = GASizes(
        n_particles=args.n_particles,
        init_factor=args.init_factor,
        steps=args.steps,
        mutations=args.mutations,
        max_redraws=args.max_redraws,
    )
    options = Options(
        seeds=tuple(args.seeds),
        task=args.task,
        transfer_task=args.transfer_task,
        ga=ga,
        workers=args.workers,
        max_trials_factor=args.max_trials_factor,
        test_seeds=tuple(args.test_seeds),
        baselines=tuple(args.baselines),
    )
    for name in ("workers", "max_trials_factor"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return options, args


def main(argv: Sequence[str] | None = None) -> int:
    options, args = parse_options(argv)
    path = Path(args.results)
    if not args.report:
        print(describe(options), flush=True)
        started = time.perf_counter()
        run_phase(options, args.phase, path, lambda line: print(line, file=sys.stderr, flush=True))
        print(
            f"\nwall time of this phase: {time.perf_counter() - started:.0f} s with "
            f"{options.workers} worker processes"
        )
    print(report(path, options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
