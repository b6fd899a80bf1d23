"""The ``optuna-nos`` command: run | init | worker | proxy | leaderboard | show | export.

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
from typing import Any, NoReturn

import optuna

from optuna_nos.config import CONFIG_ATTR, StudyConfig, load_config, parse_config
from optuna_nos.errors import NOSError

__all__ = ["main"]

DEFAULT_STORAGE = "sqlite:///optuna-nos.db"
DEFAULT_STUDY = "optuna-nos"
DEFAULT_CONFIG = "cpu_digits.toml"
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
    except ImportError as exc:
        raise NOSError(f"cannot import objective module {module_name!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise NOSError(f"objective target {config.objective_target!r} is not a callable")
    return factory(config)


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


def _write_config(study: optuna.Study, config: StudyConfig) -> None:
    existing = study.user_attrs.get(CONFIG_ATTR)
    if existing is not None and existing != config.raw:
        raise NOSError(
            f"study {study.study_name!r} already holds a different config; use a new study name"
        )
    if existing is None:
        study.set_user_attr(CONFIG_ATTR, config.raw)


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the current trial ends FAIL."""


def _raise_interrupt(signum: int, frame: object) -> None:
    raise _Interrupted(f"signal {signal.Signals(signum).name}")


def _fail_own_running_trials(study: optuna.Study, reason: str, *, retry: bool = False) -> None:
    """Mark trials this process left RUNNING (e.g. interrupted while claiming a slot) FAIL.

    With ``retry`` each one is also handed to the storage's failed-trial callback
    (``RetryHeartbeatStaleTrialCallback``), as a heartbeat-stale trial would be, so it is
    retried with the same genome.
    """
    from optuna_nos.sampler import WORKER_ATTR, worker_id

    me = worker_id()
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.system_attrs.get(WORKER_ATTR) != me:
            continue
        storage.set_trial_user_attr(trial._trial_id, "nos.reason", reason)
        if not storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
            continue
        callback = getattr(storage, "get_failed_trial_callback", lambda: None)()
        if retry and callback is not None:
            callback(study, storage.get_trial(trial._trial_id))


def _with_interrupt_reason(
    objective: Callable[[optuna.Trial], float],
) -> Callable[[optuna.Trial], float]:
    """``objective`` that records ``nos.reason`` on its trial when interrupted (Optuna then
    marks the trial FAIL)."""

    def guarded(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except KeyboardInterrupt as exc:
            trial.set_user_attr("nos.reason", f"interrupted: {str(exc) or 'SIGINT'}")
            raise

    return guarded


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback; an interrupt needs only the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            record.exc_info = None
            record.exc_text = None
        return True


_INTERRUPT_FILTER = _NoInterruptTraceback()


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    attrs = trial.user_attrs
    where = attrs.get("slot", "?")
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    reason = f" ({attrs['nos.reason']})" if trial.state != optuna.trial.TrialState.COMPLETE \
        and "nos.reason" in attrs else ""
    _logger.info("trial %d %s %s %s %s%s", trial.number, where, trial.state.name.lower(),
                 value, attrs.get("equation", ""), reason)


BASELINES_ATTR = "nos.baselines"


def _record_baselines(study: optuna.Study, objective: Any) -> None:
    """Score the objective's built-in baselines once per study, at both fidelities.

    Objectives opt in by offering ``baselines`` (names) and ``evaluate_baseline(name,
    fidelity)``; the results go to the study user attr ``nos.baselines``.
    """
    names = getattr(objective, "baselines", ())
    if not names or BASELINES_ATTR in study.user_attrs:
        return
    results: dict[str, dict[str, float]] = {}
    for name in names:
        for fidelity in ("init", "evolution"):
            _logger.info("baseline %s at the %s fidelity ...", name, fidelity)
            results.setdefault(name, {})[fidelity] = objective.evaluate_baseline(name, fidelity)
    study.set_user_attr(BASELINES_ATTR, results)


#: How long a worker waits for an unreachable storage server before giving up.
STORAGE_OUTAGE_S = 600.0
#: Outages in a row without a finished trial in between before the worker gives up.
_MAX_OUTAGES_WITHOUT_PROGRESS = 5
_OUTAGE_POLL_S = 2.0


def _is_storage_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a lost database connection,
    or an unreachable ``optuna-nos proxy``."""
    import sqlalchemy.exc

    from optuna_nos.grpc_proxy import is_proxy_outage

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


def _optimize_through_outages(
    study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int | None,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]],
) -> None:
    """``study.optimize`` that survives a storage server restart.

    A lost connection abandons the current trial. The worker waits for the server (up to
    :data:`STORAGE_OUTAGE_S` s), marks the trial it left RUNNING FAIL and queues its retry
    with the same genome (as the heartbeat would, had another worker noticed), and carries on.
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
            study.optimize(objective, n_trials=remaining, callbacks=[*callbacks, count],
                           catch=())
            return
        except Exception as exc:
            if not _is_storage_outage(exc):
                raise
            outages = 0 if finished[0] > before else outages + 1
            if outages > _MAX_OUTAGES_WITHOUT_PROGRESS:
                raise
            _logger.warning("storage unavailable (%s); waiting up to %.0f s for it",
                            type(exc).__name__, STORAGE_OUTAGE_S)
            _wait_for_storage(study)
            _fail_own_running_trials(study, "storage outage during the trial", retry=True)
            _logger.warning("storage reachable again; resuming")


def _optimize(study: optuna.Study, objective: Callable[[optuna.Trial], float], *,
              n_trials: int | None, progress: bool) -> None:
    from optuna_nos.sampler import StopWhenFinished

    sampler = study.sampler
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [
        _log_trial, StopWhenFinished(),
    ]
    bar = None
    if progress:
        from tqdm import tqdm

        total = sampler.n_slots if hasattr(sampler, "n_slots") else None
        bar = tqdm(total=total, unit="slot", disable=None, desc="search")

        def advance(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            done = sampler.n_decided(study) if hasattr(sampler, "n_decided") else trial.number
            bar.update(done - bar.n)

        callbacks.append(advance)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        _optimize_through_outages(study, _with_interrupt_reason(objective), n_trials, callbacks)
    except KeyboardInterrupt as exc:
        _fail_own_running_trials(study, f"interrupted: {str(exc) or 'SIGINT'}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()


def _make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    from optuna_nos.sampler import ParticleSampler

    ga = config.ga
    return ParticleSampler(
        n_particles=ga.n_particles, init_factor=ga.init_factor, steps=ga.steps,
        mutations=ga.mutations, max_redraws=ga.max_redraws, elitism=ga.elitism, seed=ga.seed,
        space=config.space, settings=config.settings,
    )


def _make_pruner() -> optuna.pruners.BasePruner:
    """Prune only diverging runs (non-finite values): the fitness protocol does the rest.

    Optuna's default MedianPruner would cut candidates by comparison with other trials,
    which changes what the GA's fitness means.
    """
    from optuna_nos.pruners import DivergencePruner

    return DivergencePruner()


def _storage(url: str, config: StudyConfig | None) -> Any:
    """The storage at ``url``: a database, or ``grpc://HOST:PORT`` (``optuna-nos proxy``)."""
    from optuna_nos.config import WorkerConfig
    from optuna_nos.grpc_proxy import is_grpc_url, make_grpc_storage
    from optuna_nos.storage import make_storage

    workers = config.workers if config is not None else WorkerConfig()
    make = make_grpc_storage if is_grpc_url(url) else make_storage
    return make(url, heartbeat_interval=workers.heartbeat_interval,
                grace_period=workers.grace_period, max_retry=workers.max_retry)


def _check_artifacts(config: StudyConfig, storage_url: str) -> None:
    from optuna_nos.artifact_store import check_artifact_location

    check_artifact_location(config.artifact_dir, storage_url)


# -- commands ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config or _default_config_path())
    if args.artifact_dir:
        config = parse_config({**config.raw, "artifacts": {"dir": args.artifact_dir}})
    _check_artifacts(config, args.storage)
    storage = _storage(args.storage, config)
    study = optuna.create_study(study_name=args.study, storage=storage, direction="maximize",
                                sampler=_make_sampler(config), pruner=_make_pruner(),
                                load_if_exists=True)
    _write_config(study, config)
    objective = load_objective(config)
    if not args.no_baselines:
        _record_baselines(study, objective)
    _optimize(study, objective, n_trials=args.n_trials, progress=True)
    print_leaderboard(study, top=args.top)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    storage = _storage(args.storage, config)
    study = optuna.create_study(study_name=args.study, storage=storage, direction="maximize",
                                load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise NOSError(f"study {args.study!r} minimizes; optuna-nos studies maximize fitness")
    _write_config(study, config)
    print(f"study {args.study!r} is ready: start workers with "
          f"'optuna-nos worker --storage URL --study {args.study}'")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    probe = _load_study(_storage(args.storage, None), args.study)
    config = _study_config(probe)
    _check_artifacts(config, args.storage)
    storage = _storage(args.storage, config)
    study = optuna.load_study(study_name=args.study, storage=storage,
                              sampler=_make_sampler(config), pruner=_make_pruner())
    _optimize(study, load_objective(config), n_trials=args.n_trials, progress=False)
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    from optuna_nos.grpc_proxy import serve_proxy

    serve_proxy(args.storage, host=args.host, port=args.port, threads=args.threads)
    return 0


def leaderboard_rows(study: optuna.Study, top: int) -> list[dict[str, Any]]:
    """The best completed trials, best first: trial, value, fidelity, slot, equation."""
    done = [t for t in study.get_trials(deepcopy=False,
                                        states=(optuna.trial.TrialState.COMPLETE,))
            if t.value is not None]
    done.sort(key=lambda t: (-(t.value or 0.0), t.number))
    return [{"trial": t.number, "value": t.value, "fidelity": t.user_attrs.get("fidelity", ""),
             "slot": t.user_attrs.get("slot", ""), "equation": t.user_attrs.get("equation", "")}
            for t in done[:top]]


def print_leaderboard(study: optuna.Study, top: int = 10) -> None:
    rows = leaderboard_rows(study, top)
    baselines = study.user_attrs.get("nos.baselines", {})
    print(f"leaderboard of study {study.study_name!r} (best {len(rows)})")
    for name, by_fidelity in sorted(baselines.items()):
        shown = ", ".join(f"{fid} {acc:.4f}" for fid, acc in sorted(by_fidelity.items(),
                                                                      reverse=True))
        print(f"  baseline {name}: {shown}")
    print(f"  {'#':>3} {'trial':>6} {'fitness':>8} {'fidelity':<9} {'slot':<14} equation")
    for rank, row in enumerate(rows, 1):
        print(f"  {rank:>3} {row['trial']:>6} {row['value']:>8.4f} {row['fidelity']:<9} "
              f"{row['slot']:<14} {row['equation']}")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    print_leaderboard(_load_study(_storage(args.storage, None), args.study), top=args.top)
    return 0


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise NOSError(f"study {study.study_name!r} has no trial {number}")
    return trials[number]


def _trial_genome(trial: optuna.trial.FrozenTrial) -> Any:
    from optuna_nos.space.genome import Genome

    text = trial.user_attrs.get("genome")
    if text is None:
        raise NOSError(f"trial {trial.number} carries no genome")
    return Genome.from_json(text)


def _describe_mutation(mutation: Any) -> str:
    """``[op n3: tanh(g) -> atan(g)]`` from a trial's ``mutation`` user attr."""
    if not isinstance(mutation, dict):
        return ""
    where = mutation.get("node") or ""
    change = f"{mutation.get('before')} -> {mutation.get('after')}"
    return f"[{mutation.get('kind', '?')} {where}: {change}]"


def cmd_show(args: argparse.Namespace) -> int:
    from optuna_nos.space.notation import format_equation

    study = _load_study(_storage(args.storage, None), args.study)
    trial = _trial(study, args.trial)
    genome = _trial_genome(trial)
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    print(f"trial {trial.number}: {trial.state.name.lower()}, fitness {value}, "
          f"fidelity {trial.user_attrs.get('fidelity', '?')}, flip {genome.flip}")
    print(f"paper:    {format_equation(genome, 'paper')}")
    print(f"readable: {format_equation(genome, 'readable')}")
    print(f"latex:    {format_equation(genome, 'latex')}")
    if "nos.reason" in trial.user_attrs:
        print(f"reason:   {trial.user_attrs['nos.reason']}")
    print("lineage:")
    current: optuna.trial.FrozenTrial | None = trial
    seen: set[int] = set()
    while current is not None and current.number not in seen:
        seen.add(current.number)
        value = "-" if current.value is None else f"{current.value:.4f}"
        mutation = _describe_mutation(current.user_attrs.get("mutation"))
        print(f"  trial {current.number:>5} {current.user_attrs.get('slot', ''):<14} {value:>8} "
              f"{current.user_attrs.get('equation', '')} {mutation}")
        parent = current.user_attrs.get("parent")
        current = _trial(study, parent) if isinstance(parent, int) else None
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from optuna_nos.export import export_source

    study = _load_study(_storage(args.storage, None), args.study)
    trial = _trial(study, args.trial)
    source = export_source(
        _trial_genome(trial), class_name=args.class_name,
        origin=f"study {study.study_name!r}, trial {trial.number}, fitness "
               + ("-" if trial.value is None else f"{trial.value:.4f}"),
    )
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(source)
        except OSError as exc:
            raise NOSError(f"cannot write {args.output!r}: {exc.strerror}") from None
    else:
        sys.stdout.write(source)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="optuna-nos", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def storage_args(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--storage", required=required, default=DEFAULT_STORAGE,
                       help=f"Optuna storage URL (default {DEFAULT_STORAGE})")
        p.add_argument("--study", required=required, default=DEFAULT_STUDY,
                       help=f"study name (default {DEFAULT_STUDY})")

    run = sub.add_parser("run", help="the whole search in this process")
    run.add_argument("--config", help=f"study config TOML (default: the bundled {DEFAULT_CONFIG})")
    storage_args(run, required=False)
    run.add_argument("--artifact-dir", help="where to write per-trial PNG artifacts: a "
                     "directory all workers share, or s3://BUCKET")
    run.add_argument("--n-trials", type=int, help="stop after this many trials")
    run.add_argument("--top", type=int, default=10, help="leaderboard size")
    run.add_argument("--no-baselines", action="store_true",
                     help="skip scoring the built-in baselines (Adam, SGD+Nesterov)")
    run.set_defaults(handler=cmd_run)

    init = sub.add_parser("init", help="write a config into a (new) study")
    storage_args(init, required=True)
    init.add_argument("--config", required=True, help="study config TOML")
    init.set_defaults(handler=cmd_init)

    worker = sub.add_parser("worker", help="evaluate trials of a study until it is finished")
    storage_args(worker, required=True)
    worker.add_argument("--n-trials", type=int, help="stop after this many trials")
    worker.set_defaults(handler=cmd_worker)

    proxy = sub.add_parser("proxy", help="serve a database to many workers over gRPC "
                           "(workers take --storage grpc://HOST:PORT)")
    proxy.add_argument("--storage", required=True, help="database URL the proxy serves")
    proxy.add_argument("--host", default="0.0.0.0", help="address to listen on")
    proxy.add_argument("--port", type=int, default=13000, help="port to listen on")
    proxy.add_argument("--threads", type=int, default=16,
                       help="concurrent requests, and database connections (default 16)")
    proxy.set_defaults(handler=cmd_proxy)

    board = sub.add_parser("leaderboard", help="the best genomes of a study")
    storage_args(board, required=False)
    board.add_argument("--top", type=int, default=10)
    board.set_defaults(handler=cmd_leaderboard)

    show = sub.add_parser("show", help="a trial's equation in all dialects, and its lineage")
    show.add_argument("trial", type=int)
    storage_args(show, required=False)
    show.set_defaults(handler=cmd_show)

    export = sub.add_parser("export", help="a trial's genome as a standalone torch optimizer")
    export.add_argument("trial", type=int)
    storage_args(export, required=False)
    export.add_argument("-o", "--output", help="write to this file instead of stdout")
    export.add_argument("--class-name", default="EvolvedOptimizer")
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
    except KeyboardInterrupt:
        print("optuna-nos: interrupted; the current trial was marked FAIL", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
