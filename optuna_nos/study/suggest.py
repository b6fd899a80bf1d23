"""Suggest a genome on an Optuna trial, whatever the sampler.

:func:`suggest_genome` asks the genome's active genes as categorical params (the encoding is
in :mod:`optuna_nos.study.genes`: every choice there is a structurally valid genome, so Random and
TPE draws are only ever rejected by the integrity check) and returns the genome. The full
genome (latent ops, inactive nodes, stored decays, flip) travels as JSON in the trial's system
attr ``nos:genome``. When the :class:`ParticleSampler` has put a genome there,
:func:`suggest_genome` suggests its active genes (which the sampler serves) and returns that
full genome. ``study.enqueue_trial(genome_params(genome))`` queues a known optimizer.

The study's system attr ``nos:encoding`` holds the param encoding version; a study whose
trials hold params of another encoding is refused with a one-line :class:`NOSError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import BaseTrial, FixedTrial, FrozenTrial

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.space.genome import Genome
from optuna_nos.space.notation import format_equation
from optuna_nos.space.variants import Variant, VariantLike, resolve_variant, variant_violation
from optuna_nos.study.genes import (
    ENCODING_VERSION,
    InvalidParams,
    asker,
    decode,
    genome_from_params,
    genome_params,
    is_gene_name,
    param_distribution,
)
from optuna_nos.study.stored import (
    ENCODING_ATTR,
    EQUATION_ATTR,
    EQUATION_READABLE_ATTR,
    FIDELITY_ATTR,
    FIXED_PARAMS_ATTR,
    FLIP_ATTR,
    GENOME_ATTR,
    IDLE_ATTR,
    REASON_ATTR,
    RECIPE_ATTR,
    read_ga_record,
)

__all__ = [
    "ENCODING_ATTR",
    "ENCODING_VERSION",
    "FIDELITIES",
    "FIDELITY_ATTR",
    "GENOME_ATTR",
    "IDLE_ATTR",
    "RECIPE_ATTR",
    "Fidelity",
    "check_encoding",
    "display_attrs",
    "genome_from_params",
    "genome_params",
    "param_distribution",
    "set_system_attr",
    "suggest_genome",
    "trial_fidelity",
]

Fidelity = Literal["init", "evolution"]
FIDELITIES: tuple[str, ...] = ("init", "evolution")


# -- trials ---------------------------------------------------------------------------------


def _system_attrs(trial: BaseTrial | FrozenTrial) -> Mapping[str, Any]:
    if isinstance(trial, optuna.Trial):
        return trial.storage.get_trial_system_attrs(trial._trial_id)
    return getattr(trial, "system_attrs", {})


def set_system_attr(trial: BaseTrial, key: str, value: Any) -> None:
    """Set a trial system attr (an Optuna trial's, or a FixedTrial's dict)."""
    if isinstance(trial, optuna.Trial):
        trial.storage.set_trial_system_attr(trial._trial_id, key, value)
    elif isinstance(trial, FixedTrial):
        trial.system_attrs[key] = value


def _enqueued_params(trial: BaseTrial, attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The params a trial was given up front: enqueued, or a :class:`FixedTrial`'s."""
    if isinstance(trial, FixedTrial):
        return trial._params
    return attrs.get(FIXED_PARAMS_ATTR) or {}


def _prune(trial: BaseTrial, reason: str) -> optuna.TrialPruned:
    trial.set_user_attr(REASON_ATTR, reason)
    return optuna.TrialPruned(reason)


def trial_fidelity(trial: BaseTrial | FrozenTrial) -> Fidelity:
    """``"init"`` or ``"evolution"``: the fidelity the objective should train this trial at.

    The :class:`ParticleSampler` decides it per slot; a trial it did not place (another
    sampler, an enqueued baseline outside the initial population) trains at ``"evolution"``.
    """
    value = _system_attrs(trial).get(FIDELITY_ATTR, "evolution")
    return "init" if value == "init" else "evolution"


def suggest_genome(
    trial: BaseTrial,
    space: VariantLike = "paper",
    settings: Settings = DEFAULT_SETTINGS,
) -> Genome:
    """Suggest a genome's active genes as categorical params and return the genome.

    * A trial the :class:`ParticleSampler` has placed carries its full genome in the system
      attr ``nos:genome``; its active genes are suggested (the sampler serves them) and the
      full genome is returned, latent genes, inactive nodes, stored decays and flip included.
    * Otherwise (Random, TPE, an enqueued genome) the genome is built from the params, which
      always describe a valid structure, and checked: one failing the integrity check, or
      enqueued params outside their choice lists, raise :class:`optuna.TrialPruned`; flip
      is the check's outcome.
    * A trial the sampler marked idle (search finished) raises :class:`optuna.TrialPruned`.
    * A study whose params use another encoding raises :class:`NOSError` (see
      :func:`check_encoding`).

    Every prune records its reason in the user attr ``nos.reason``. The user attrs
    ``equation`` (paper notation), ``equation_readable`` and ``flip`` are set for the
    dashboard, and the genome JSON goes to the system attr ``nos:genome``.
    """
    resolved = resolve_variant(space)
    record = _ga_record(trial)
    _check_sampler_space(record, resolved)
    check_encoding(trial, resolved)
    if record is not None:
        _warn_cross_fidelity_pruner(trial)
    attrs = _system_attrs(trial)
    idle = attrs.get(IDLE_ATTR)
    if idle is not None:
        raise _prune(trial, str(idle))

    enqueued = _enqueued_params(trial, attrs)
    asked: set[str] = set()

    def source(name: str, choices: tuple[str, ...]) -> Any:
        if name in enqueued and enqueued[name] not in choices:
            raise InvalidParams(f"param {name} = {enqueued[name]!r} is not one of its choices")
        return trial.suggest_categorical(name, choices)

    ask = asker(resolved, source)

    def recorded(name: str) -> str:
        asked.add(name)
        return ask(name)

    try:
        decoded = decode(recorded, resolved)
        stray = sorted(n for n in enqueued if is_gene_name(n) and n not in asked)
        if stray:
            raise InvalidParams(f"param {stray[0]} is not a gene of this genome")
    except InvalidParams as exc:
        raise _prune(trial, f"invalid genome: {exc}") from None

    stored_json = attrs.get(GENOME_ATTR)
    if stored_json is not None:
        genome = Genome.from_json(stored_json)
        if genome.equation() != decoded.equation():
            raise NOSError(
                f"trial {trial.number}: params describe {decoded.equation()!r} but the stored "
                f"genome is {genome.equation()!r}; use the same space in the sampler and "
                "suggest_genome"
            )
    else:
        genome = _checked(trial, decoded, resolved, settings)
        set_system_attr(trial, GENOME_ATTR, genome.to_json())
    _set_user_attrs(trial, display_attrs(genome))
    return genome


def display_attrs(genome: Genome) -> dict[str, Any]:
    """The short user attrs a dashboard shows first: ``equation`` (paper notation),
    ``equation_readable`` and ``flip``. The full genome stays in the system attr
    ``nos:genome``."""
    return {
        EQUATION_ATTR: format_equation(genome, "paper"),
        EQUATION_READABLE_ATTR: format_equation(genome, "readable"),
        FLIP_ATTR: genome.flip,
    }


def _set_user_attrs(trial: BaseTrial, attrs: Mapping[str, Any]) -> None:
    """Set the attrs whose value differs (a rewrite would move an attr to the end of the
    dashboard's list on PostgreSQL)."""
    current = trial.user_attrs
    for key, value in attrs.items():
        if current.get(key) != value:
            trial.set_user_attr(key, value)


def _ga_record(trial: BaseTrial) -> Mapping[str, Any] | None:
    """The GA record of the trial's study: present once ``optuna-nos init`` set the study up
    or a ParticleSampler placed a trial."""
    study = getattr(trial, "study", None)
    if not isinstance(trial, optuna.Trial) or study is None:
        return None
    return read_ga_record(study._storage, study._study_id)


def _check_sampler_space(record: Mapping[str, Any] | None, variant: Variant) -> None:
    """A ParticleSampler serves the genes of its own space; refuse a different one."""
    if record is not None and record.get("space") != str(variant):
        raise NOSError(
            f"suggest_genome(space={str(variant)!r}) but the study's "
            f"ParticleSampler searches space {record.get('space')!r}; "
            "pass the same space"
        )


def check_encoding(trial: BaseTrial, space: VariantLike = "paper") -> None:
    """Refuse to add trials to a study whose params use another encoding.

    A study records :data:`ENCODING_VERSION` in its system attr ``nos:encoding`` on its first
    :func:`suggest_genome`. A study without it (made before the encoding was versioned) is
    accepted when every genome param its trials hold has this encoding's name and choice
    list, as Optuna requires of a param within one study; otherwise, or when it records
    another version, this raises a one-line :class:`NOSError`. Its genomes stay readable
    from the system attr ``nos:genome``.
    """
    study = getattr(trial, "study", None)
    if not isinstance(trial, optuna.Trial) or study is None:
        return
    storage, study_id = study._storage, study._study_id
    version = storage.get_study_system_attrs(study_id).get(ENCODING_ATTR)
    if version == ENCODING_VERSION:
        return
    if version is None:
        clash = _foreign_param(storage.get_all_trials(study_id, deepcopy=False), space)
        if clash is None:
            storage.set_study_system_attr(study_id, ENCODING_ATTR, ENCODING_VERSION)
            return
        version = f"1 (param {clash!r})"
    raise NOSError(
        f"study {study.study_name!r} holds genome params of encoding {version}; this "
        f"optuna-nos suggests encoding {ENCODING_VERSION}: start a new study (the old one's "
        "genomes stay readable)"
    )


def _foreign_param(trials: Sequence[FrozenTrial], space: VariantLike) -> str | None:
    """The first genome param of ``trials`` whose distribution this encoding does not use."""
    for trial in trials:
        for name, distribution in trial.distributions.items():
            if not is_gene_name(name):
                continue
            try:
                expected: CategoricalDistribution | None = param_distribution(name, space)
            except NOSError:
                expected = None
            if distribution != expected:
                return name
    return None


_warned_studies: set[str] = set()


def _compares_trials(pruner: Any) -> bool:
    """Whether ``pruner`` judges a trial by other trials' values (Median, Percentile,
    SuccessiveHalving, Hyperband, Wilcoxon, ...): anything but these known-safe ones."""
    from optuna_nos.study.pruners import DivergencePruner

    if isinstance(pruner, DivergencePruner):
        return _compares_trials(pruner._wrapped) if pruner._wrapped is not None else False
    if isinstance(pruner, optuna.pruners.PatientPruner):
        return _compares_trials(pruner._wrapped_pruner)
    return not isinstance(pruner, optuna.pruners.NopPruner | optuna.pruners.ThresholdPruner)


def _warn_cross_fidelity_pruner(trial: BaseTrial) -> None:
    """Warn (once per study and process) when a ParticleSampler study (one holding a GA
    record) runs under a pruner that compares trials: it would compare evolution-fidelity
    children with init-fidelity trials and prune most of the search."""
    study: Any = getattr(trial, "study", None)
    if study.study_name in _warned_studies or not _compares_trials(study.pruner):
        return
    _warned_studies.add(study.study_name)
    warnings.warn(
        f"study {study.study_name!r} runs a ParticleSampler under "
        f"{type(study.pruner).__name__}, which compares trials across fidelities and prunes "
        "most evolution children; pass pruner=optuna_nos.DivergencePruner() to "
        "optuna.create_study",
        UserWarning,
        stacklevel=3,
    )


def _checked(trial: BaseTrial, genome: Genome, variant: Variant, settings: Settings) -> Genome:
    import torch

    from optuna_nos.optim.integrity import integrity_check

    reason = variant_violation(genome, variant)
    if reason is not None:
        raise _prune(trial, f"outside the {variant} space: {reason}")
    generator = torch.Generator().manual_seed(int(trial.number))
    result = integrity_check(genome, settings, generator=generator)
    if not result.passed:
        raise _prune(trial, f"integrity check failed: {result.reason}")
    return genome.replace(flip=bool(result.flip))
