"""Many candidates' fitness protocols trained together, as one stacked model.

A *pack* holds K candidates (genome + seeds) of one fidelity. Each phase of the protocol
trains every still-undecided candidate's runs as copies of one
:class:`~proxy.stack.StackedConvNet`:

1. stage 1: ``len(stage1_lrs)`` copies per candidate;
2. stage 2: ``len(stage2_lrs)`` copies per candidate that passed stage 1;
3. the final run: one copy per candidate that passed the screen, validated every epoch.

Each candidate has its own :class:`~optuna_nos.GenomeOptimizer` (one param group per copy,
each with its own learning rate), its own initial weights, dropout masks and optimizer seed.
The copies share the input batches, so every candidate of a pack draws its batches from one
data seed, which depends only on the task's seed (never on the pack's other members). A
candidate's runs are therefore exactly those of :func:`proxy.fitness.measure_fitness` with the
seeds ``RunSeeds.derive(seed)`` whose ``data`` field is the pack's data seed (the tests check
this in float64).

A copy stops at its first non-finite loss or by its early-stop rule, and a candidate leaves
the pack when :data:`~proxy.screen.PackEpoch` says so (the pruner); neither touches the other
copies, because copies share no parameter, statistic or optimizer state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from optuna_nos.core.errors import NOSError
from optuna_nos.space.genome import Genome
from optuna_nos.space.parse import parse_equation
from optuna_nos.study.stored import FIDELITY_USER_ATTR, LR_ATTR
from optuna_nos.study.suggest import set_system_attr
from proxy.fitness import (
    FINAL_ATTR,
    SCREEN_ATTR,
    FitnessResult,
    GenomeTrainer,
    ProxyTask,
    final_result,
    screen_decision,
)
from proxy.measure import TIMED_GENOME, auto_pack
from proxy.screen import Candidate, PackEpoch, RunResult, RunSeeds, train_packed

if TYPE_CHECKING:
    from optuna_nos.study.packing import Pack
    from proxy.tasks import ProxyObjective

__all__ = ["auto_pack_size", "evaluate_pack", "PackDone", "measure_pack", "pack_seeds"]

#: Called once per candidate, as soon as its result is known, with (candidate index, result).
PackDone = Callable[[int, FitnessResult], None]


def pack_seeds(task: ProxyTask, seed: int) -> RunSeeds:
    """The seeds of a packed evaluation: ``RunSeeds.derive(seed)`` with the pack's data seed.

    The data seed is derived from the task's seed alone, so a candidate's batches do not
    depend on which pack it ran in.
    """
    data = RunSeeds.derive(task.evaluation_seed(None)).data
    return replace(RunSeeds.derive(seed), data=data)


def measure_pack(
    genomes: Sequence[Genome],
    seeds: Sequence[int],
    task: ProxyTask,
    fidelity: str,
    *,
    on_screen_done: Callable[[int, float, list[RunResult]], None] | None = None,
    on_epoch: PackEpoch | None = None,
    on_done: PackDone | None = None,
) -> list[FitnessResult]:
    """The fitness protocol of :func:`proxy.fitness.run_protocol` for every genome at once.

    ``seeds[i]`` seeds genome i's runs (:func:`pack_seeds`). ``on_done`` hears each result as
    soon as it is decided (a screen failure before the others' final runs end).
    """
    if len(genomes) != len(seeds):
        raise NOSError(f"{len(genomes)} genomes but {len(seeds)} seeds")
    config = task.config
    numpy_nan = task.settings.numpy_nan_semantics
    data = task.dataset()
    trainer = GenomeTrainer(
        genomes[0],
        data,
        config.fidelity(fidelity),
        config,
        seed=0,
        settings=task.settings,
        dtype=task.dtype,
    )
    candidates = [Candidate(g, pack_seeds(task, s)) for g, s in zip(genomes, seeds, strict=True)]
    results: list[FitnessResult | None] = [None] * len(genomes)
    pruned: set[int] = set()
    screens: list[list[RunResult]] = [[] for _ in genomes]

    def finish(index: int, result: FitnessResult) -> None:
        results[index] = result
        if on_done is not None:
            on_done(index, result)

    with task.threads():
        undecided = list(range(len(genomes)))
        for stage, lrs in enumerate((config.stage1_lrs, config.stage2_lrs)):
            if not lrs or not undecided:
                continue
            runs = train_packed(trainer.screen_spec, [(candidates[i], lrs) for i in undecided])
            still = []
            for i, stage_runs in zip(undecided, runs, strict=True):
                screens[i] += stage_runs
                complete = stage == 1 or not config.stage2_lrs
                decision = screen_decision(
                    config, screens[i], complete=complete, numpy_nan=numpy_nan
                )
                if decision.reason is not None:
                    finish(i, FitnessResult(None, decision.reason, None, screens[i]))
                else:
                    still.append(i)
            undecided = still
        chosen: dict[int, float] = {}
        for i in undecided:
            lr = screen_decision(config, screens[i], complete=True, numpy_nan=numpy_nan).lr
            assert lr is not None
            chosen[i] = lr
        if on_screen_done is not None:
            for i in undecided:
                on_screen_done(i, chosen[i], screens[i])

        def final_epoch(position: int, epoch: int, run: RunResult) -> bool:
            stop = on_epoch is not None and on_epoch(undecided[position], epoch, run)
            if stop:
                pruned.add(undecided[position])
            return stop

        finals = train_packed(
            trainer.final_spec,
            [(candidates[i], [chosen[i]]) for i in undecided],
            on_epoch=final_epoch,
        )
        for i, (final,) in zip(undecided, finals, strict=True):
            if i in pruned:  # the caller heard of it in on_epoch
                results[i] = FitnessResult(None, final.stop, chosen[i], screens[i], final)
            else:
                finish(i, final_result(chosen[i], screens[i], final, numpy_nan=numpy_nan))
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


# -- the Optuna side ---------------------------------------------------------------------------


def evaluate_pack(objective: ProxyObjective, pack: Pack) -> None:
    """:meth:`ProxyObjective.__call__` for every trial of a pack, trained together.

    Each trial gets the user attrs and reports of :func:`proxy.fitness.evaluate_genome` and
    is told as soon as its outcome is known; trials are packed per fidelity.
    """
    import optuna

    from optuna_nos.study.suggest import suggest_genome, trial_fidelity

    task = objective.task
    numpy_nan = task.settings.numpy_nan_semantics
    groups: dict[str, list[tuple[optuna.Trial, Genome]]] = {}
    for trial in pack.trials:
        try:
            genome = suggest_genome(trial, objective.space, task.settings)
        except optuna.TrialPruned as exc:
            pack.prune(trial, str(exc))
            continue
        fidelity: str = trial_fidelity(trial)
        trial.set_user_attr(FIDELITY_USER_ATTR, fidelity)
        groups.setdefault(fidelity, []).append((trial, genome))
    for fidelity, members in groups.items():
        _evaluate_group(objective, pack, fidelity, members, numpy_nan)


def _evaluate_group(
    objective: ProxyObjective,
    pack: Pack,
    fidelity: str,
    members: list[tuple[Any, Genome]],
    numpy_nan: bool,
) -> None:
    task = objective.task

    screened: set[int] = set()

    def screen_done(index: int, lr: float, runs: list[RunResult]) -> None:
        screened.add(index)
        trial = members[index][0]
        trial.set_user_attr(LR_ATTR, lr)
        set_system_attr(
            trial, SCREEN_ATTR, FitnessResult(None, None, lr, runs).screen_summary(numpy_nan)
        )

    def epoch_done(index: int, epoch: int, run: RunResult) -> bool:
        trial, genome = members[index]
        accuracy = run.val_acc[-1]
        trial.report(accuracy, epoch)
        if not trial.should_prune():
            return False
        set_system_attr(trial, FINAL_ATTR, run.to_dict())
        objective._record_recipe(trial, fidelity)
        objective._upload_schedule(trial, genome, fidelity)
        pack.prune(trial, f"pruned after epoch {epoch} (validation accuracy {accuracy:.4f})")
        return True

    def done(index: int, result: FitnessResult) -> None:
        trial, genome = members[index]
        if index not in screened:
            set_system_attr(trial, SCREEN_ATTR, result.screen_summary(numpy_nan))
        if result.final is not None:
            set_system_attr(trial, FINAL_ATTR, result.final.to_dict())
        objective._record_recipe(trial, fidelity)
        objective._upload_schedule(trial, genome, fidelity)
        if result.failed:
            assert result.reason is not None
            pack.prune(trial, result.reason)
        else:
            assert result.fitness is not None
            pack.complete(trial, result.fitness)

    measure_pack(
        [genome for _, genome in members],
        [task.evaluation_seed(trial.number) for trial, _ in members],
        task,
        fidelity,
        on_screen_done=screen_done,
        on_epoch=epoch_done,
        on_done=done,
    )


def auto_pack_size(task: ProxyTask, fidelity: str = "evolution") -> int:
    """``--pack auto``: a pack size measured on the task's device (``proxy.measure``).

    Sized for the screen's largest stage at ``fidelity`` (the wider model by default).
    """
    config = task.config
    trainer = GenomeTrainer(
        parse_equation(TIMED_GENOME),
        task.dataset(),
        config.fidelity(fidelity),
        config,
        seed=0,
        settings=task.settings,
        dtype=task.dtype,
    )
    widest = max((config.stage1_lrs, config.stage2_lrs), key=len)
    return auto_pack(trainer.screen_spec, widest)
