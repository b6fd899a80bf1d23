"""Genome <-> Optuna trial params, define-by-run.

Every gene is a categorical param with a short stable name and a fixed choice list; only the
genes of the active graph are params, suggested depth-first from the root::

    mom                       none | momentum | nesterov
    root.op                   a unary op name or a binary op name (arity and op in one gene)
    root.a, root.b            the 1st / 2nd input: an operand's paper name or n0..n4
    root.a.d                  the decay on that edge: none, or a decay op name (unary/binary)
    root.a.d.a, root.a.d.b    the decay root's inputs: a1..a14 or D
    root.a.d.D                the decay's hidden node D (only when the decay root reads it)
    root.a.d.D.a, root.a.d.D.b   D's inputs: a1..a14
    n3.op, n3.a, n3.a.d, ...  hidden node n3, suggested where it is first reached

So any Optuna sampler (Random, TPE) searches the same space, the dashboard shows the genome,
and ``study.enqueue_trial(genome_params(genome))`` queues a known optimizer. Params carry only
the active genes; the full genome (latent ops, inactive nodes, stored decays, flip) travels as
JSON in the trial's system attr ``nos:genome``. When the :class:`ParticleSampler` has put a
genome there, :func:`suggest_genome` suggests its active genes (which the sampler serves) and
returns that full genome.

Search-space variants (:mod:`optuna_nos.space.variants`) fix some genes, which are then not
params, and shorten some choice lists. A name's choice list is fixed within a variant.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import BaseTrial, FixedTrial, FrozenTrial

from optuna_nos.errors import NOSError
from optuna_nos.pruners import REASON_ATTR
from optuna_nos.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.space.decays import (
    DECAY_BINARY_OPS,
    DECAY_HIDDEN,
    DECAY_UNARY_OPS,
    N_BASE_SCHEDULES,
    Decay,
    DecayNode,
)
from optuna_nos.space.genome import HIDDEN_COLUMNS, N_HIDDEN, ROOT, Genome, Momentum, Node
from optuna_nos.space.notation import format_equation
from optuna_nos.space.operands import N_OPERANDS, OPERANDS
from optuna_nos.space.update_ops import BINARY_OPS, UNARY_OPS
from optuna_nos.space.variants import (
    ADAM_VARIANT_FIRST_INPUT,
    ADAM_VARIANT_OPERANDS,
    Variant,
    VariantLike,
    lr_schedule_template,
    resolve_variant,
    variant_violation,
)

__all__ = [
    "FIDELITIES",
    "FIDELITY_ATTR",
    "GENOME_ATTR",
    "IDLE_ATTR",
    "RECIPE_ATTR",
    "Fidelity",
    "display_attrs",
    "genome_from_params",
    "genome_params",
    "param_distribution",
    "set_system_attr",
    "suggest_genome",
    "trial_fidelity",
]

#: System attr: how the objective trained the genome (``lr``, ``total_steps``,
#: ``warmup_steps``, ``hold_steps``), carried into exported optimizers.
RECIPE_ATTR = "nos:recipe"
#: System attr holding the trial's full genome as versioned JSON.
GENOME_ATTR = "nos:genome"
#: System attr the sampler sets on a trial it has no work for; the value is the reason.
IDLE_ATTR = "nos:idle"
#: System attr holding the fidelity ("init" or "evolution") the objective should train at.
FIDELITY_ATTR = "nos:fidelity"

Fidelity = Literal["init", "evolution"]
FIDELITIES: tuple[str, ...] = ("init", "evolution")

MOMENTUM_CHOICES: tuple[str, ...] = ("none", "momentum", "nesterov")
_UNARY_NAMES: tuple[str, ...] = tuple(UNARY_OPS[code].name for code in sorted(UNARY_OPS))
_BINARY_NAMES: tuple[str, ...] = tuple(BINARY_OPS[code].name for code in sorted(BINARY_OPS))
NODE_OP_CHOICES: tuple[str, ...] = _UNARY_NAMES + _BINARY_NAMES
_HIDDEN_NAMES: tuple[str, ...] = tuple(f"n{i}" for i in range(N_HIDDEN))
INPUT_CHOICES: tuple[str, ...] = tuple(op.name for op in OPERANDS) + _HIDDEN_NAMES
_DECAY_UNARY_NAMES = tuple(DECAY_UNARY_OPS[c].name for c in sorted(DECAY_UNARY_OPS))
_DECAY_BINARY_NAMES = tuple(DECAY_BINARY_OPS[c].name for c in sorted(DECAY_BINARY_OPS))
DECAY_OP_CHOICES: tuple[str, ...] = _DECAY_UNARY_NAMES + _DECAY_BINARY_NAMES
NO_DECAY = "none"
DECAY_CHOICES: tuple[str, ...] = (NO_DECAY,) + DECAY_OP_CHOICES
_BASE_NAMES: tuple[str, ...] = tuple(f"a{k + 1}" for k in range(N_BASE_SCHEDULES))
DECAY_HIDDEN_NAME = "D"
DECAY_ROOT_INPUT_CHOICES: tuple[str, ...] = _BASE_NAMES + (DECAY_HIDDEN_NAME,)
DECAY_HIDDEN_INPUT_CHOICES: tuple[str, ...] = _BASE_NAMES

_OPERAND_INDEX = {op.name: op.index for op in OPERANDS}
_NODE_COLUMNS = {**{name: col for name, col in zip(_HIDDEN_NAMES, HIDDEN_COLUMNS, strict=True)},
                 "root": ROOT}
_COLUMN_NAMES = {col: name for name, col in _NODE_COLUMNS.items()}
_POSITIONS = ("a", "b")


class _InvalidGenome(Exception):
    """The params describe no valid genome; the message says why."""


# -- the gene schema ------------------------------------------------------------------------


def _gene_kind(name: str) -> str:
    """Classify a gene name: mom, op, input, decay, decay_input, decay_hidden, ..."""
    if name == "mom":
        return "mom"
    parts = name.split(".")
    if parts[0] not in _NODE_COLUMNS or len(parts) < 2:
        return ""
    tail = parts[1:]
    if tail == ["op"]:
        return "op"
    if tail[0] not in _POSITIONS:
        return ""
    rest = tail[1:]
    if not rest:
        return "input"
    if rest[0] != "d":
        return ""
    if len(rest) == 1:
        return "decay"
    if len(rest) == 2:
        if rest[1] in _POSITIONS:
            return "decay_input"
        return "decay_hidden" if rest[1] == DECAY_HIDDEN_NAME else ""
    if len(rest) == 3 and rest[1] == DECAY_HIDDEN_NAME and rest[2] in _POSITIONS:
        return "decay_hidden_input"
    return ""


_PAPER_CHOICES: dict[str, tuple[str, ...]] = {
    "mom": MOMENTUM_CHOICES,
    "op": NODE_OP_CHOICES,
    "input": INPUT_CHOICES,
    "decay": DECAY_CHOICES,
    "decay_input": DECAY_ROOT_INPUT_CHOICES,
    "decay_hidden": DECAY_OP_CHOICES,
    "decay_hidden_input": DECAY_HIDDEN_INPUT_CHOICES,
}


@dataclass(frozen=True)
class _Space:
    """A variant as the codec sees it: genes fixed to a value, and shortened choice lists.

    ``restricted`` replaces the choice list of single genes; ``hidden_inputs`` is the choice
    list of every hidden node's inputs (``n0.a``, ``n3.b``, ...).
    """

    variant: Variant
    fixed: Mapping[str, str]
    restricted: Mapping[str, tuple[str, ...]]
    hidden_inputs: tuple[str, ...] = INPUT_CHOICES

    def choices(self, name: str) -> tuple[str, ...]:
        kind = _gene_kind(name)
        if not kind:
            raise NOSError(f"{name!r} is not a genome param name")
        if name in self.restricted:
            return self.restricted[name]
        if kind == "input" and not name.startswith("root."):
            return self.hidden_inputs
        return _PAPER_CHOICES[kind]


@cache
def _space(variant: Variant) -> _Space:
    if variant.name == "adam_variants":
        return _Space(
            variant,
            fixed={"mom": MOMENTUM_CHOICES[Momentum.NONE],
                   "root.a": OPERANDS[ADAM_VARIANT_FIRST_INPUT].name},
            restricted={"root.op": _BINARY_NAMES, "root.b": _HIDDEN_NAMES},
            hidden_inputs=tuple(OPERANDS[c].name for c in ADAM_VARIANT_OPERANDS) + _HIDDEN_NAMES,
        )
    if variant.name == "lr_schedule":
        template = _encode(lr_schedule_template(variant.lr_base))
        decay_gene = "root.a.d"
        fixed = {k: v for k, v in template.items() if k != decay_gene}
        return _Space(variant, fixed=fixed, restricted={decay_gene: DECAY_OP_CHOICES})
    return _Space(variant, fixed={}, restricted={})


def param_distribution(name: str, space: VariantLike = "paper") -> CategoricalDistribution:
    """The categorical distribution of gene ``name`` in ``space`` (same for every trial)."""
    return CategoricalDistribution(_space(resolve_variant(space)).choices(name))


# -- genome -> params ------------------------------------------------------------------------


def _op_name(node: Node) -> str:
    return BINARY_OPS[node.binary_op].name if node.binary else UNARY_OPS[node.unary_op].name


def _input_name(column: int) -> str:
    return OPERANDS[column].name if column < N_OPERANDS else _COLUMN_NAMES[column]


def _decay_op_name(node: DecayNode) -> str:
    table = DECAY_BINARY_OPS if node.binary else DECAY_UNARY_OPS
    return table[node.binary_op if node.binary else node.unary_op].name


def _decay_input_name(index: int) -> str:
    return DECAY_HIDDEN_NAME if index == DECAY_HIDDEN else _BASE_NAMES[index]


def _encode_decay(prefix: str, decay: Decay | None, out: dict[str, str]) -> None:
    if decay is None:
        out[prefix] = NO_DECAY
        return
    out[prefix] = _decay_op_name(decay.root)
    for position, index in zip(_POSITIONS, decay.root.inputs, strict=False):
        out[f"{prefix}.{position}"] = _decay_input_name(index)
    if decay.uses_hidden:
        hidden_prefix = f"{prefix}.{DECAY_HIDDEN_NAME}"
        out[hidden_prefix] = _decay_op_name(decay.hidden)
        for position, index in zip(_POSITIONS, decay.hidden.inputs, strict=False):
            out[f"{hidden_prefix}.{position}"] = _decay_input_name(index)


def _encode(genome: Genome) -> dict[str, str]:
    """Every active gene of ``genome``, depth-first from the root (no variant applied)."""
    out: dict[str, str] = {"mom": MOMENTUM_CHOICES[genome.momentum]}
    visited: set[int] = set()

    def visit(column: int) -> None:
        visited.add(column)
        node = genome.node(column)
        name = _COLUMN_NAMES[column]
        out[f"{name}.op"] = _op_name(node)
        for position, child in zip(_POSITIONS, node.inputs, strict=False):
            out[f"{name}.{position}"] = _input_name(child)
            _encode_decay(f"{name}.{position}.d", node.decay_on(child), out)
            if child >= N_OPERANDS and child not in visited:
                visit(child)

    visit(ROOT)
    return out


def genome_params(genome: Genome, space: VariantLike = "paper") -> dict[str, str]:
    """The trial params of ``genome``'s active genes in ``space`` (fixed genes left out).

    ``study.enqueue_trial(genome_params(g))`` queues ``g``. Raises :class:`NOSError` when the
    genome is not in ``space`` or a gene takes a value outside its choice list there.
    """
    resolved = resolve_variant(space)
    spec = _space(resolved)
    reason = variant_violation(genome, resolved)
    if reason is not None:
        raise NOSError(f"the genome is outside the {resolved} space: {reason}")
    params: dict[str, str] = {}
    for name, value in _encode(genome).items():
        if name in spec.fixed:
            if spec.fixed[name] != value:
                raise NOSError(f"gene {name} = {value!r} but the {resolved} space fixes it to "
                               f"{spec.fixed[name]!r}")
            continue
        if value not in spec.choices(name):
            raise NOSError(f"gene {name} = {value!r} is not a choice of the {resolved} space")
        params[name] = value
    return params


# -- params -> genome ------------------------------------------------------------------------

Ask = Callable[[str], str]

_UNARY_CODES = {UNARY_OPS[c].name: c for c in UNARY_OPS}
_BINARY_CODES = {BINARY_OPS[c].name: c for c in BINARY_OPS}
_DECAY_UNARY_CODES = {DECAY_UNARY_OPS[c].name: c for c in DECAY_UNARY_OPS}
_DECAY_BINARY_CODES = {DECAY_BINARY_OPS[c].name: c for c in DECAY_BINARY_OPS}
_PLACEHOLDER = Node(inputs=(0,))


def _decay_node(ask: Ask, prefix: str, op: str) -> DecayNode:
    binary = op in _DECAY_BINARY_CODES
    names = [ask(f"{prefix}.{position}") for position in _POSITIONS[: 2 if binary else 1]]
    if len(set(names)) != len(names):
        raise _InvalidGenome(f"decay node {prefix} reads {names[0]} twice")
    indices = tuple(DECAY_HIDDEN if n == DECAY_HIDDEN_NAME else _BASE_NAMES.index(n)
                    for n in names)
    if binary:
        return DecayNode(inputs=indices, binary_op=_DECAY_BINARY_CODES[op])
    return DecayNode(inputs=indices, unary_op=_DECAY_UNARY_CODES[op])


def _decode_decay(ask: Ask, prefix: str) -> Decay | None:
    op = ask(prefix)
    if op == NO_DECAY:
        return None
    root = _decay_node(ask, prefix, op)
    if DECAY_HIDDEN not in root.inputs:
        return Decay(root=root)
    hidden_prefix = f"{prefix}.{DECAY_HIDDEN_NAME}"
    hidden = _decay_node(ask, hidden_prefix, ask(hidden_prefix))
    return Decay(root=root, hidden=hidden, hidden_flag=True)


def _decode(ask: Ask) -> Genome:
    """Build a genome by asking for its genes depth-first; raises :class:`_InvalidGenome`."""
    momentum = Momentum(MOMENTUM_CHOICES.index(ask("mom")))
    nodes: dict[int, Node] = {}
    on_path: set[int] = set()

    def visit(column: int) -> None:
        name = _COLUMN_NAMES[column]
        on_path.add(column)
        op = ask(f"{name}.op")
        binary = op in _BINARY_CODES
        inputs: list[int] = []
        decays: dict[int, Decay] = {}
        for position in _POSITIONS[: 2 if binary else 1]:
            child_name = ask(f"{name}.{position}")
            child = (_OPERAND_INDEX[child_name] if child_name in _OPERAND_INDEX
                     else _NODE_COLUMNS[child_name])
            if child in inputs:
                raise _InvalidGenome(f"{name} reads {child_name} twice")
            inputs.append(child)
            decay = _decode_decay(ask, f"{name}.{position}.d")
            if decay is not None:
                decays[child] = decay
            if child in on_path:
                raise _InvalidGenome(f"the active graph has a cycle through {child_name}")
            if child >= N_OPERANDS and child not in nodes:
                visit(child)
        if binary:
            nodes[column] = Node(inputs=tuple(inputs), binary_op=_BINARY_CODES[op], decays=decays)
        else:
            nodes[column] = Node(inputs=tuple(inputs), unary_op=_UNARY_CODES[op], decays=decays)
        on_path.discard(column)

    visit(ROOT)
    if not any(c in HIDDEN_COLUMNS for c in nodes[ROOT].inputs):
        raise _InvalidGenome("the root must read at least one hidden node (n0..n4)")
    hidden = tuple(nodes.get(column, _PLACEHOLDER) for column in HIDDEN_COLUMNS)
    try:
        return Genome(hidden, nodes[ROOT], momentum)
    except NOSError as exc:
        raise _InvalidGenome(str(exc)) from None


def _asker(spec: _Space, source: Callable[[str, tuple[str, ...]], Any]) -> Ask:
    def ask(name: str) -> str:
        if name in spec.fixed:
            return spec.fixed[name]
        choices = spec.choices(name)
        value = source(name, choices)
        if value not in choices:
            raise _InvalidGenome(f"param {name} = {value!r} is not one of its choices")
        return str(value)

    return ask


def genome_from_params(params: Mapping[str, Any], space: VariantLike = "paper") -> Genome:
    """The genome that trial params describe (inactive nodes and latent ops get defaults).

    Raises :class:`NOSError` when a needed gene is missing or the params describe no valid
    genome of ``space`` (cycle, duplicate input, root without hidden input, ...). No
    integrity check is run here.
    """
    resolved = resolve_variant(space)

    def source(name: str, choices: tuple[str, ...]) -> Any:
        if name not in params:
            raise _InvalidGenome(f"gene {name} is missing from the params")
        return params[name]

    try:
        genome = _decode(_asker(_space(resolved), source))
    except _InvalidGenome as exc:
        raise NOSError(str(exc)) from None
    reason = variant_violation(genome, resolved)
    if reason is not None:
        raise NOSError(f"the params lie outside the {resolved} space: {reason}")
    return genome


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
    * Otherwise (Random, TPE, an enqueued genome) the genome is built from the params and
      checked: a structurally invalid genome or one failing the integrity check
      raises :class:`optuna.TrialPruned`; flip is the check's outcome.
    * A trial the sampler marked idle (search finished) raises :class:`optuna.TrialPruned`.

    Every prune records its reason in the user attr ``nos.reason``. The user attrs
    ``equation`` (paper notation), ``equation_readable`` and ``flip`` are set for the
    dashboard, and the genome JSON goes to the system attr ``nos:genome``.
    """
    resolved = resolve_variant(space)
    _check_sampler_space(trial, resolved)
    _warn_cross_fidelity_pruner(trial)
    attrs = _system_attrs(trial)
    idle = attrs.get(IDLE_ATTR)
    if idle is not None:
        raise _prune(trial, str(idle))

    def source(name: str, choices: tuple[str, ...]) -> Any:
        return trial.suggest_categorical(name, choices)

    try:
        decoded = _decode(_asker(_space(resolved), source))
    except _InvalidGenome as exc:
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
    return {"equation": format_equation(genome, "paper"),
            "equation_readable": format_equation(genome, "readable"), "flip": genome.flip}


def _set_user_attrs(trial: BaseTrial, attrs: Mapping[str, Any]) -> None:
    """Set the attrs whose value differs (a rewrite would move an attr to the end of the
    dashboard's list on PostgreSQL)."""
    current = trial.user_attrs
    for key, value in attrs.items():
        if current.get(key) != value:
            trial.set_user_attr(key, value)


def _check_sampler_space(trial: BaseTrial, variant: Variant) -> None:
    """A ParticleSampler serves the genes of its own space; refuse a different one."""
    study = getattr(trial, "study", None)
    sampler = getattr(study, "sampler", None)
    sampler_space = getattr(sampler, "space", None)
    from optuna_nos.sampler import ParticleSampler

    if isinstance(sampler, ParticleSampler) and sampler_space != str(variant):
        raise NOSError(f"suggest_genome(space={str(variant)!r}) but the study's "
                       f"ParticleSampler searches space {sampler_space!r}; pass the same space")


_warned_studies: set[str] = set()


def _compares_trials(pruner: Any) -> bool:
    """Whether ``pruner`` judges a trial by other trials' values (Median, Percentile,
    SuccessiveHalving, Hyperband, Wilcoxon, ...): anything but these known-safe ones."""
    from optuna_nos.pruners import DivergencePruner

    if isinstance(pruner, DivergencePruner):
        return _compares_trials(pruner._wrapped) if pruner._wrapped is not None else False
    if isinstance(pruner, optuna.pruners.PatientPruner):
        return _compares_trials(pruner._wrapped_pruner)
    return not isinstance(pruner, optuna.pruners.NopPruner | optuna.pruners.ThresholdPruner)


def _warn_cross_fidelity_pruner(trial: BaseTrial) -> None:
    """Warn (once per study and process) when a ParticleSampler study runs under a pruner that
    compares trials: it would compare evolution-fidelity children with init-fidelity trials
    and prune most of the search."""
    study: Any = getattr(trial, "study", None)
    from optuna_nos.sampler import ParticleSampler

    if not isinstance(getattr(study, "sampler", None), ParticleSampler) \
            or study.study_name in _warned_studies or not _compares_trials(study.pruner):
        return
    _warned_studies.add(study.study_name)
    warnings.warn(
        f"study {study.study_name!r} runs a ParticleSampler under "
        f"{type(study.pruner).__name__}, which compares trials across fidelities and prunes "
        "most evolution children; pass pruner=optuna_nos.DivergencePruner() to "
        "optuna.create_study", UserWarning, stacklevel=3)


def _checked(trial: BaseTrial, genome: Genome, variant: Variant, settings: Settings) -> Genome:
    import torch

    from optuna_nos.integrity import integrity_check

    reason = variant_violation(genome, variant)
    if reason is not None:
        raise _prune(trial, f"outside the {variant} space: {reason}")
    generator = torch.Generator().manual_seed(int(trial.number))
    result = integrity_check(genome, settings, generator=generator)
    if not result.passed:
        raise _prune(trial, f"integrity check failed: {result.reason}")
    return genome.replace(flip=bool(result.flip))
