"""The optuna-nos command: run | init | worker | proxy | leaderboard | show | export.

Bad input (URL, database, study, config, trial) prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, NoReturn

import optuna

from optuna_nos.cli.arguments import count, study_name
from optuna_nos.cli.progress import redirect_logging
from optuna_nos.core.atomic_write import write_text_file
from optuna_nos.core.display import printable
from optuna_nos.core.errors import NOSError
from optuna_nos.study.baselines import claim_baselines, release_baselines
from optuna_nos.study.config import StudyConfig, load_config, parse_config, study_settings
from optuna_nos.study.dashboard import name_metric
from optuna_nos.study.stored import (
    CONFIG_ATTR,
    EQUATION_ATTR,
    FIDELITY_USER_ATTR,
    MUTATION_ATTR,
    PARENT_ATTR,
    REASON_ATTR,
    SLOT_USER_ATTR,
    read_ga_record,
    trial_genome,
)
from optuna_nos.study.study_setup import create_configured_study

if TYPE_CHECKING:
    from optuna_nos.study.faults import ObjectiveGuard

__all__ = ["main"]

DEFAULT_STORAGE = "sqlite:///optuna-nos.db"
DEFAULT_STUDY = "optuna-nos"
DEFAULT_CONFIG = "cpu_mnist1d.toml"
EXIT_BAD_INPUT = 2

_logger = logging.getLogger("optuna_nos")


class _Parser(argparse.ArgumentParser):
    """argparse with errors in one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"optuna-nos: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _default_config_path() -> str:
    return str(resources.files("studies").joinpath(DEFAULT_CONFIG))


def load_objective(config: StudyConfig) -> Callable[[optuna.Trial], float]:
    """Import ``objective.target`` ("module:factory") and build the objective from the config.

    The factory is called with the :class:`StudyConfig` and returns ``objective(trial)``.
    """
    module_name, attr = config.objective_target.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or any error the module raises while loading
        raise NOSError(
            f"cannot import objective module {module_name!r}: "
            f"{type(exc).__name__}: {exc}".splitlines()[0]
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise NOSError(f"objective target {config.objective_target!r} is not a callable")
    try:
        objective = factory(config)
    except NOSError:
        raise
    except Exception as exc:
        raise NOSError(
            f"objective target {config.objective_target!r} failed on this config: "
            f"{type(exc).__name__}: {exc}".splitlines()[0]
        ) from None
    if not callable(objective):
        raise NOSError(
            f"objective target {config.objective_target!r} returned "
            f"{type(objective).__name__}, not an objective(trial)"
        )
    return objective


def _study_config(study: optuna.Study) -> StudyConfig:
    raw = study.user_attrs.get(CONFIG_ATTR)
    if raw is None:
        raise NOSError(
            f"study {study.study_name!r} has no optuna-nos config; run "
            "'optuna-nos init --storage URL --study NAME --config FILE' first"
        )
    return parse_config(raw)


def _load_study(storage: Any, name: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise NOSError(f"study {name!r} does not exist in this storage") from None


def _read_study(args: argparse.Namespace) -> optuna.Study:
    """The study of ``--storage``/``--study``, opened without creating anything."""
    return _load_study(_storage(args.storage, None, read_only=True), args.study)


class _Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT, raised like Ctrl-C so the current trial ends FAIL; ``trials`` are
    the numbers of the trials marked FAIL for it."""

    trials: tuple[int, ...] = ()


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise_interrupt(signum: int, frame: object) -> None:
    # Later signals are ignored: the worker is already failing its trial and exits 130.
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise _Interrupted(f"signal {signal.Signals(signum).name}")


def _fail_own_running_trials(
    study: optuna.Study, reason: str, *, retry: bool = False
) -> list[int]:
    """:func:`~optuna_nos.sampler._liveness.fail_own_running_trials`, or [] with a warning
    when the storage cannot be reached (the trials' heartbeats then expire)."""
    from optuna_nos.sampler._liveness import fail_own_running_trials

    try:
        return fail_own_running_trials(study, reason, retry=retry)
    except Exception as exc:  # noqa: BLE001 - nothing more to do for an unreachable storage
        _logger.warning(
            "could not mark this worker's running trials FAIL (%s); other "
            "workers fail them once their heartbeat expires",
            type(exc).__name__,
        )
        return []


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback; an interrupt, an infrastructure fault
    (the worker stops with one line) or a trial failed elsewhere needs only the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from optuna_nos.study.faults import is_infrastructure

        error = record.exc_info[1] if record.exc_info else None
        quiet = (KeyboardInterrupt, optuna.exceptions.UpdateFinishedTrialError)
        if error is not None and (isinstance(error, quiet) or is_infrastructure(error)):
            record.exc_info = None
            record.exc_text = None
        return True


_INTERRUPT_FILTER = _NoInterruptTraceback()


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    attrs = trial.user_attrs
    where = printable(attrs.get(SLOT_USER_ATTR, "?"))
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    reason = (
        f" ({printable(attrs[REASON_ATTR])})"
        if trial.state != optuna.trial.TrialState.COMPLETE and REASON_ATTR in attrs
        else ""
    )
    _logger.info(
        "trial %d %s %s %s %s%s",
        trial.number,
        where,
        trial.state.name.lower(),
        value,
        printable(attrs.get(EQUATION_ATTR, "")),
        reason,
    )


def _record_baselines(study: optuna.Study, objective: Any, *, progress: bool) -> None:
    """Score the objective's built-in baselines once per study, at both fidelities.

    Objectives opt in by offering ``baselines`` (names) and ``evaluate_baseline(name,
    fidelity)``; the results go to the study user attr ``nos.baselines``.
    """
    from optuna_nos.cli.progress import baseline_bar
    from optuna_nos.study.stored import BASELINES_ATTR

    names = getattr(objective, "baselines", ())
    if not names or BASELINES_ATTR in study.user_attrs:
        return
    results: dict[str, dict[str, float]] = {}
    bar = baseline_bar(2 * len(names), disable=None if progress else True)
    with bar:
        for name in names:
            for fidelity in ("init", "evolution"):
                bar.set_postfix_str(f"{name} at the {fidelity} fidelity")
                results.setdefault(name, {})[fidelity] = objective.evaluate_baseline(
                    name, fidelity
                )
                bar.update(1)
    study.set_user_attr(BASELINES_ATTR, results)


def _score_baselines_once(study: optuna.Study, objective: Any, *, progress: bool) -> None:
    """Score the baselines unless recorded or another process is scoring them now."""
    if not claim_baselines(study, objective):
        return
    _logger.info("scoring the baselines of study %r", study.study_name)
    try:
        _record_baselines(study, objective, progress=progress)
    finally:
        release_baselines(study)


#: How long a worker waits for an unreachable storage server before giving up.
STORAGE_OUTAGE_S = 600.0
#: Outages in a row without a finished trial in between before the worker gives up.
_MAX_OUTAGES_WITHOUT_PROGRESS = 5
_OUTAGE_POLL_S = 2.0


def _is_storage_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a lost database connection,
    or an unreachable ``optuna-nos proxy``."""
    import sqlalchemy.exc

    from optuna_nos.study.grpc_proxy import is_proxy_outage

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if is_proxy_outage(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _wait_for_storage(study: optuna.Study) -> None:
    """Poll the storage until it answers; re-raise after :data:`STORAGE_OUTAGE_S` seconds."""
    deadline = time.monotonic() + STORAGE_OUTAGE_S
    while True:
        try:
            study._storage.get_study_user_attrs(study._study_id)
            return
        except Exception as exc:
            if not _is_storage_outage(exc) or time.monotonic() > deadline:
                raise
        time.sleep(_OUTAGE_POLL_S)


Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def _through_outages(
    study: optuna.Study,
    n_trials: int | None,
    run: Callable[[int | None, Callback], None],
    other_error: Callable[[Exception], bool] | None = None,
) -> None:
    """``run(remaining trials, count callback)`` again after each storage outage.

    A lost connection abandons the trials in hand. The worker waits for the server (up to
    :data:`STORAGE_OUTAGE_S` s), marks the trials it left RUNNING FAIL and queues their
    retries with the same genomes (as the heartbeat would, had another worker noticed), and
    carries on; it gives up after :data:`_MAX_OUTAGES_WITHOUT_PROGRESS` outages in a row with
    no trial finished. Any other error goes to ``other_error``: True counts one trial as
    finished and carries on, False (or no ``other_error``) re-raises it.
    """
    finished = [0]

    def count(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        finished[0] += 1

    outages = 0
    while True:
        remaining = None if n_trials is None else n_trials - finished[0]
        if remaining is not None and remaining <= 0:
            return
        before = finished[0]
        try:
            run(remaining, count)
            return
        except Exception as exc:
            if not _is_storage_outage(exc):
                if other_error is not None and other_error(exc):
                    finished[0] += 1
                    continue
                raise
            outages = 0 if finished[0] > before else outages + 1
            if outages > _MAX_OUTAGES_WITHOUT_PROGRESS:
                raise
            _logger.warning(
                "storage unavailable (%s); waiting up to %.0f s for it",
                type(exc).__name__,
                STORAGE_OUTAGE_S,
            )
            _wait_for_storage(study)
            _fail_own_running_trials(study, "storage outage during the trial", retry=True)
            _logger.warning("storage reachable again; resuming")


def _optimize_through_outages(
    study: optuna.Study,
    objective: ObjectiveGuard,
    n_trials: int | None,
    callbacks: list[Callback],
) -> None:
    """``study.optimize`` that survives a storage server restart (:func:`_through_outages`)
    and trials failed elsewhere.

    A trial that another worker failed as stale while its objective ran (Optuna then refuses
    to tell it) is dropped with a warning. An infrastructure fault (:mod:`optuna_nos.study.faults`)
    stops the worker with one line; its slot stays open.
    """

    def run(remaining: int | None, count: Callback) -> None:
        study.optimize(objective, n_trials=remaining, callbacks=[*callbacks, count], catch=())

    def other_error(exc: Exception) -> bool:
        if objective.taken is not None and isinstance(exc, ValueError | AssertionError):
            return True  # trial failed elsewhere; the guard logged it
        if objective.fault is not None:
            raise NOSError(
                f"a trial failed for this worker's environment "
                f"({objective.fault}); the worker stops and the trial's "
                "slot stays open"
            ) from None
        return False

    _through_outages(study, n_trials, run, other_error)


def _optimize(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    n_trials: int | None,
    progress: bool,
    artifact_dir: str | None = None,
) -> None:
    from optuna_nos.cli.progress import SearchProgress
    from optuna_nos.sampler import StopWhenFinished
    from optuna_nos.study.dashboard import StudyView, describe_trial, record_fitness_by_fidelity

    is_finished = getattr(study.sampler, "is_finished", None)
    if callable(is_finished) and is_finished(study):
        _logger.info("study %r: the search is finished; nothing to do", study.study_name)
        return
    view = StudyView(artifact_dir)
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [
        describe_trial,
        _log_trial,
        view,
        StopWhenFinished(),
    ]
    bar = SearchProgress(study) if progress else None
    if bar is not None:
        callbacks.append(bar)
    from optuna_nos.study.faults import ObjectiveGuard

    previous = [signal.signal(sig, _raise_interrupt) for sig in _STOP_SIGNALS]
    guard = ObjectiveGuard(record_fitness_by_fidelity(objective))
    try:
        _optimize_through_outages(study, guard, n_trials, callbacks)
    except KeyboardInterrupt as exc:
        failed = _fail_own_running_trials(study, f"interrupted: {str(exc) or 'SIGINT'}")
        interrupted = _Interrupted(str(exc))
        interrupted.trials = tuple(sorted({*failed, *guard.interrupted}))
        raise interrupted from None
    else:
        for sig, handler in zip(_STOP_SIGNALS, previous, strict=True):
            signal.signal(sig, handler)
    finally:
        if bar is not None:
            bar.close()
        view.refresh(study)


def _make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """The sampler of a config that is about to be stored (``run``, ``init``)."""
    from optuna_nos.sampler import ParticleSampler

    return ParticleSampler.from_ga_record(config.ga_record())


def _make_pruner() -> optuna.pruners.BasePruner:
    """Prune only diverging runs (non-finite values): the fitness protocol does the rest.

    Optuna's default MedianPruner would cut candidates by comparison with other trials,
    which changes what the GA's fitness means.
    """
    from optuna_nos.study.pruners import DivergencePruner

    return DivergencePruner()


def _storage(url: str, config: StudyConfig | None, *, read_only: bool = False) -> Any:
    """The storage at ``url``: a database, or ``grpc://HOST:PORT`` (``optuna-nos proxy``)."""
    from optuna_nos.study.config import WorkerConfig
    from optuna_nos.study.grpc_proxy import is_grpc_url, make_grpc_storage
    from optuna_nos.study.storage import make_storage

    workers = config.workers if config is not None else WorkerConfig()
    if is_grpc_url(url):
        return make_grpc_storage(
            url,
            heartbeat_interval=workers.heartbeat_interval,
            grace_period=workers.grace_period,
            max_retry=workers.max_retry,
        )
    return make_storage(
        url,
        heartbeat_interval=workers.heartbeat_interval,
        grace_period=workers.grace_period,
        max_retry=workers.max_retry,
        read_only=read_only,
    )


def _check_artifacts(config: StudyConfig, storage_url: str) -> None:
    from optuna_nos.study.artifact_store import check_artifact_location

    check_artifact_location(config.artifact_dir, storage_url)


# -- commands ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from optuna_nos.study.faults import check_environment

    config = load_config(args.config or _default_config_path())
    if args.artifact_dir:
        config = parse_config({**config.raw, "artifacts": {"dir": args.artifact_dir}})
    _check_artifacts(config, args.storage)
    objective, sampler = load_objective(config), _make_sampler(config)
    study = create_configured_study(
        _storage(args.storage, config),
        args.study,
        config.raw,
        sampler=sampler,
        pruner=_make_pruner(),
    )
    name_metric(study)
    check_environment(objective)
    with redirect_logging():
        if not args.no_baselines:
            _score_baselines_once(study, objective, progress=True)
        _optimize(
            study,
            objective,
            n_trials=args.n_trials,
            progress=True,
            artifact_dir=config.artifact_dir,
        )
    print_leaderboard(study, top=args.top)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    load_objective(config)  # a config that cannot run is refused before it is stored
    _make_sampler(config)
    study = create_configured_study(_storage(args.storage, config), args.study, config.raw)
    name_metric(study)
    print(
        f"study {args.study!r} is ready: start workers with "
        f"'optuna-nos worker --storage URL --study {args.study}'"
    )
    return 0


def _stored_sampler(study: optuna.Study, config: StudyConfig) -> optuna.samplers.BaseSampler:
    """The sampler of the study's GA record (``init`` writes it), or of ``config`` for a
    study set up before ``init`` wrote records (its first sampler writes one)."""
    from optuna_nos.sampler import ParticleSampler

    record = read_ga_record(study._storage, study._study_id)
    return _make_sampler(config) if record is None else ParticleSampler.from_ga_record(record)


def _open_worker_study(args: argparse.Namespace) -> tuple[StudyConfig, optuna.Study]:
    """The worker's config and study; a storage outage while opening them is waited out
    (polling, up to :data:`STORAGE_OUTAGE_S` s) as it is during the search."""
    deadline = time.monotonic() + STORAGE_OUTAGE_S
    while True:
        try:
            stored = _read_study(args)
            config = _study_config(stored)
            study = optuna.load_study(
                study_name=args.study,
                storage=_storage(args.storage, config),
                sampler=_stored_sampler(stored, config),
                pruner=_make_pruner(),
            )
            return config, study
        except Exception as exc:
            if not _is_storage_outage(exc) or time.monotonic() > deadline:
                raise
            _logger.warning(
                "storage unavailable while starting (%s); retrying", type(exc).__name__
            )
            time.sleep(_OUTAGE_POLL_S)


def cmd_worker(args: argparse.Namespace) -> int:
    from optuna_nos.study.faults import check_environment

    config, study = _open_worker_study(args)
    _check_artifacts(config, args.storage)
    objective = load_objective(config)
    check_environment(objective)
    _score_baselines_once(study, objective, progress=False)
    if args.pack is not None:
        _optimize_packed(study, objective, args.pack, n_trials=args.n_trials)
        return 0
    _optimize(
        study, objective, n_trials=args.n_trials, progress=False, artifact_dir=config.artifact_dir
    )
    return 0


def _optimize_packed(
    study: optuna.Study, objective: Any, pack: str, *, n_trials: int | None
) -> None:
    """``worker --pack``: trials evaluated ``pack`` at a time (:mod:`optuna_nos.study.packing`),
    through storage outages as the plain worker (:func:`_through_outages`)."""
    from optuna_nos.study.packing import optimize_packed, pack_size, packed_objective

    evaluate = packed_objective(objective)
    size = pack_size(pack, objective)
    _logger.info("packed worker: %d trials at a time", size)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        _through_outages(
            study,
            n_trials,
            lambda remaining, count: optimize_packed(
                study, evaluate, size, n_trials=remaining, callbacks=[_log_trial, count]
            ),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_proxy(args: argparse.Namespace) -> int:
    from optuna_nos.study.grpc_proxy import serve_proxy

    serve_proxy(args.storage, host=args.host, port=args.port, threads=args.threads)
    return 0


def print_leaderboard(study: optuna.Study, top: int = 10) -> None:
    from optuna_nos.study.leaderboard import format_leaderboard

    print("\n".join(format_leaderboard(study, top)))


def cmd_leaderboard(args: argparse.Namespace) -> int:
    print_leaderboard(_read_study(args), top=args.top)
    return 0


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise NOSError(f"study {study.study_name!r} has no trial {number}")
    return trials[number]


def _trial_genome(trial: optuna.trial.FrozenTrial) -> Any:
    genome = trial_genome(trial)
    if genome is None:
        raise NOSError(f"trial {trial.number} carries no genome")
    return genome


def _trial_recipe(trial: optuna.trial.FrozenTrial) -> dict[str, Any] | None:
    """How the objective trained the trial's genome (system attr ``nos:recipe``), if known."""
    from optuna_nos.study.stored import RECIPE_ATTR

    recipe = trial.system_attrs.get(RECIPE_ATTR)
    return dict(recipe) if isinstance(recipe, dict) else None


def _describe_mutation(mutation: Any) -> str:
    """``[op n3: tanh(g) -> atan(g)]`` from a trial's ``mutation`` user attr."""
    if not isinstance(mutation, dict):
        return ""
    where = mutation.get("node") or ""
    change = f"{mutation.get('before')} -> {mutation.get('after')}"
    return printable(f"[{mutation.get('kind', '?')} {where}: {change}]")


def cmd_show(args: argparse.Namespace) -> int:
    from optuna_nos.space.notation import format_equation

    study = _read_study(args)
    trial = _trial(study, args.trial)
    genome = _trial_genome(trial)
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    fidelity = printable(trial.user_attrs.get(FIDELITY_USER_ATTR, "?"))
    print(
        f"trial {trial.number}: {trial.state.name.lower()}, fitness {value}, "
        f"fidelity {fidelity}, flip {genome.flip}"
    )
    print(f"paper:    {format_equation(genome, 'paper')}")
    print(f"readable: {format_equation(genome, 'readable')}")
    print(f"latex:    {format_equation(genome, 'latex')}")
    recipe = _trial_recipe(trial)
    if recipe:
        print("recipe:   " + ", ".join(f"{k}={v!r}" for k, v in recipe.items()))
    if REASON_ATTR in trial.user_attrs:
        print(f"reason:   {printable(trial.user_attrs[REASON_ATTR])}")
    print("lineage:")
    current: optuna.trial.FrozenTrial | None = trial
    seen: set[int] = set()
    while current is not None and current.number not in seen:
        seen.add(current.number)
        value = "-" if current.value is None else f"{current.value:.4f}"
        mutation = _describe_mutation(current.user_attrs.get(MUTATION_ATTR))
        slot, equation = (
            printable(current.user_attrs.get(key, "")) for key in (SLOT_USER_ATTR, EQUATION_ATTR)
        )
        print(f"  trial {current.number:>5} {slot:<14} {value:>8} {equation} {mutation}")
        parent = current.user_attrs.get(PARENT_ATTR)
        current = _trial(study, parent) if isinstance(parent, int) else None
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from optuna_nos.optim.export import export_source

    study = _read_study(args)
    trial = _trial(study, args.trial)
    source = export_source(
        _trial_genome(trial),
        class_name=args.class_name,
        recipe=_trial_recipe(trial),
        settings=study_settings(study._storage, study._study_id),
        origin=f"study {study.study_name!r}, trial {trial.number}, fitness "
        + ("-" if trial.value is None else f"{trial.value:.4f}"),
    )
    if args.output:
        write_text_file(args.output, source, force=args.force)
        print(f"wrote {args.class_name} (trial {trial.number}) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(source)
    return 0


_EPILOG = """\
Trial lines read 'trial N SLOT STATE FITNESS EQUATION'. SLOT is the unit of GA work the
trial scored: 'init 14' = random genome 14 of the initial population (cheap init fidelity);
'p3 s0' = particle 3's genome re-evaluated at the evolution fidelity; 'p3 s1 c0' = child 0
of particle 3's step 1 (a mutant). 'flip' (in show) says the update's sign is reversed: the
integrity check found the genome descends only with its sign flipped.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="optuna-nos",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def storage_args(p: argparse.ArgumentParser, required: bool) -> None:
        if required:
            p.add_argument("--storage", required=True, help="Optuna storage URL")
            p.add_argument("--study", required=True, type=study_name, help="study name")
            return
        p.add_argument(
            "--storage",
            default=DEFAULT_STORAGE,
            help=f"Optuna storage URL (default {DEFAULT_STORAGE})",
        )
        p.add_argument(
            "--study",
            default=DEFAULT_STUDY,
            type=study_name,
            help=f"study name (default {DEFAULT_STUDY})",
        )

    run = sub.add_parser("run", help="the whole search in this process")
    run.add_argument("--config", help=f"study config TOML (default: the bundled {DEFAULT_CONFIG})")
    storage_args(run, required=False)
    run.add_argument(
        "--artifact-dir",
        help="where to write per-trial PNG artifacts: a "
        "directory all workers share, or s3://BUCKET",
    )
    run.add_argument("--n-trials", type=count, help="stop after this many trials")
    run.add_argument(
        "--top", type=count, default=10, help="genomes in the closing leaderboard (default 10)"
    )
    run.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip scoring the objective's built-in tuned baselines",
    )
    run.set_defaults(handler=cmd_run)

    init = sub.add_parser("init", help="write a config into a (new) study")
    storage_args(init, required=True)
    init.add_argument("--config", required=True, help="study config TOML")
    init.set_defaults(handler=cmd_init)

    worker = sub.add_parser("worker", help="evaluate trials of a study until it is finished")
    storage_args(worker, required=True)
    worker.add_argument("--n-trials", type=count, help="stop after this many trials")
    worker.add_argument(
        "--pack",
        metavar="K",
        help="evaluate K trials together as one stacked model; 'auto' sizes "
        "K from free GPU memory (on a CPU, from a timing)",
    )
    worker.set_defaults(handler=cmd_worker)

    proxy = sub.add_parser(
        "proxy",
        help="serve a database to many workers over gRPC "
        "(workers take --storage grpc://HOST:PORT)",
    )
    proxy.add_argument("--storage", required=True, help="database URL the proxy serves")
    proxy.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: give the address the "
        "workers reach; the channel is not authenticated)",
    )
    proxy.add_argument("--port", type=int, default=13000, help="port to listen on")
    proxy.add_argument(
        "--threads",
        type=int,
        default=16,
        help="concurrent requests, and database connections (default 16)",
    )
    proxy.set_defaults(handler=cmd_proxy)

    board = sub.add_parser("leaderboard", help="the best genomes of a study")
    storage_args(board, required=False)
    board.add_argument("--top", type=count, default=10, help="genomes to list (default 10)")
    board.set_defaults(handler=cmd_leaderboard)

    show = sub.add_parser("show", help="a trial's equation in all dialects, and its lineage")
    show.add_argument("trial", type=int, help="the trial's number (as in 'trial 12')")
    storage_args(show, required=False)
    show.set_defaults(handler=cmd_show)

    export = sub.add_parser("export", help="a trial's genome as a standalone torch optimizer")
    export.add_argument("trial", type=int, help="the trial's number (as in 'trial 12')")
    storage_args(export, required=False)
    export.add_argument("-o", "--output", help="write to this file instead of stdout")
    export.add_argument("--force", action="store_true", help="overwrite an existing --output")
    export.add_argument(
        "--class-name",
        default="EvolvedOptimizer",
        help="name of the generated class (default EvolvedOptimizer)",
    )
    export.set_defaults(handler=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``optuna-nos`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna.study._optimize").addFilter(_INTERRUPT_FILTER)
    try:
        return int(args.handler(args))
    except NOSError as exc:
        print(f"optuna-nos: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        trials = getattr(exc, "trials", ())
        marked = (
            f"trial {', '.join(map(str, trials))} marked FAIL"
            if trials
            else "no trial was running"
        )
        print(f"optuna-nos: interrupted; {marked}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
