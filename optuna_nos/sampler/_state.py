"""The GA state as a pure function of the study's trials.

Nothing the GA needs lives in a worker's memory: :func:`derive_state` recomputes the slots,
the particles, their current genomes and their duplicate lists from the trials alone, so any
worker started at any time agrees with every other. It is linear in the number of trials.

Outcome of one attempt (a trial holding a slot):

* success: ``COMPLETE`` with a finite value;
* failure: ``PRUNED``, or ``COMPLETE`` with a non-finite value;
* crash: ``FAIL``. A ``FAIL`` marked as an infrastructure fault (``nos:fault``: the worker's
  data, device or storage failed, not the genome) counts for nothing, like an attempt
  without a genome. A ``FAIL`` that ``RetryHeartbeatStaleTrialCallback`` queued again (its
  number is in another trial's ``retry_history``) is *superseded*: the queued copy, with the
  same genome, is the same attempt, so the ``FAIL`` does not count;
* held: ``RUNNING`` or ``WAITING``.

Attempts that never got a genome (a worker died while claiming) count for nothing once
finished. Finished attempts are taken in completion order, so a decision never changes once
made, even when a racing duplicate attempt finishes later.

A slot is decided:

* ``init j`` and ``p{i} s0``: by the first success or failure; each crash reopens it, and
  after ``max_redraws`` crashes it is decided as a failure;
* a child: by its first success, or as a failure after ``max_redraws`` failed or crashed
  attempts, keeping the last attempt's mutant.

A slot is *open* when it exists, is not decided and no attempt holds it.

Speed: a :class:`DeriveMemo` passed to :func:`derive_state` remembers what cannot change any
more - finished trials (immutable in Optuna), the ranking of a fully decided initial
population and the selections of fully decided steps - and is checked on every use (a
remembered decision that counted a crash later superseded by a retry is recomputed). The
result is the same with or without a memo; with one, a derivation costs a pass over the
unfinished trials and the new ones plus the particles' current steps.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

from optuna.trial import FrozenTrial, TrialState

from optuna_nos.core.errors import NOSError
from optuna_nos.sampler._slots import GASizes, Slot
from optuna_nos.study.stored import FAULT_ATTR, GA_ATTR, GENOME_ATTR, INFRASTRUCTURE, SLOT_ATTR

__all__ = [
    "DeriveMemo",
    "GAState",
    "OpenSlot",
    "ParticleState",
    "Selection",
    "SlotState",
    "TrialRecord",
    "derive_state",
]

_HELD = (TrialState.RUNNING, TrialState.WAITING)
_NEVER = datetime.datetime.max


@dataclass(frozen=True, slots=True)
class TrialRecord:
    """What the GA reads from one trial."""

    number: int
    state: TrialState
    value: float | None = None
    slot: Slot | None = None
    equation: str | None = None
    behaviour: str | None = None
    has_genome: bool = False
    completed: datetime.datetime | None = None
    retry_of: tuple[int, ...] = ()
    infrastructure: bool = False
    #: Derived once (records of finished trials are cached and re-read on every claim).
    slot_key: str | None = field(default=None, init=False, compare=False)
    held: bool = field(default=False, init=False, compare=False)
    success: bool = field(default=False, init=False, compare=False)
    crashed: bool = field(default=False, init=False, compare=False)
    #: Whether the attempt's outcome counts towards its slot's decision.
    counts: bool = field(default=False, init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot_key", None if self.slot is None else self.slot.name)
        object.__setattr__(self, "held", self.state in _HELD)
        object.__setattr__(
            self,
            "success",
            self.state == TrialState.COMPLETE
            and self.value is not None
            and math.isfinite(self.value),
        )
        object.__setattr__(self, "crashed", self.state == TrialState.FAIL)
        object.__setattr__(
            self, "counts", self.has_genome and not (self.crashed and self.infrastructure)
        )

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialRecord:
        attrs = trial.system_attrs
        ga = attrs.get(GA_ATTR)
        ga = ga if isinstance(ga, dict) else {}
        value = None
        if trial.state == TrialState.COMPLETE and trial.values:
            value = float(trial.values[0])
        history = attrs.get("retry_history") or ()
        return cls(
            number=trial.number,
            state=trial.state,
            value=value,
            slot=Slot.parse(attrs.get(SLOT_ATTR)),
            equation=ga.get("equation"),
            behaviour=ga.get("behaviour"),
            has_genome=GENOME_ATTR in attrs,
            completed=trial.datetime_complete,
            retry_of=tuple(int(n) for n in history),
            infrastructure=attrs.get(FAULT_ATTR) == INFRASTRUCTURE,
        )


@dataclass(slots=True)
class SlotState:
    """One slot's attempts and decision.

    ``decided_by`` is the attempt whose outcome decided the slot (for a slot decided as a
    failure, the last counted attempt), ``success`` whether that outcome is a success.
    """

    slot: Slot
    attempts: list[TrialRecord] = field(default_factory=list)
    decided_by: TrialRecord | None = None
    success: bool = False
    held: bool = False
    failures: int = 0
    crashes: int = 0

    @property
    def decided(self) -> bool:
        return self.decided_by is not None

    @property
    def open(self) -> bool:
        return not self.decided and not self.held

    @property
    def value(self) -> float | None:
        """The fitness when decided by a success, else None (failure or undecided)."""
        return self.decided_by.value if self.success and self.decided_by is not None else None


@dataclass(frozen=True)
class Selection:
    """A particle's genome after a step: the trial holding it and that trial's fitness
    (None for a failure or an unknown value); ``slot`` is the chosen child (None when the
    particle kept its genome)."""

    source: int
    value: float | None
    slot: Slot | None = None


@dataclass
class ParticleState:
    """Particle ``index``: where it came from and its genome after each decided step.

    ``selections[0]`` is the particle's own genome (with its re-evaluation's value once
    known); ``selections[s]`` the genome chosen after step s. ``children`` holds the slots
    of the step in progress.
    """

    index: int
    init_slot: Slot
    origin: TrialRecord
    reeval: SlotState
    selections: list[Selection] = field(default_factory=list)
    children: list[SlotState] = field(default_factory=list)
    done: bool = False

    @property
    def current(self) -> Selection:
        """The genome the particle holds now (after its last decided step)."""
        return self.selections[-1]

    @property
    def step(self) -> int:
        """Steps decided so far (0 = none)."""
        return len(self.selections) - 1


@dataclass(frozen=True)
class OpenSlot:
    """A slot a worker may claim. ``source`` is the trial whose genome the attempt starts
    from: re-used as it is (``mutate`` False: a re-evaluation, or an initial genome after
    a crash), or mutated (a child). None means a fresh random genome."""

    slot: Slot
    source: int | None = None
    mutate: bool = False


@dataclass
class GAState:
    """Everything the sampler knows, derived from the trials.

    :meth:`slot` and :meth:`lineage` read the trials of this derivation; with a shared
    :class:`DeriveMemo`, use them before the memo's next derivation.
    """

    sizes: GASizes
    ranking: list[Slot] | None
    particles: list[ParticleState]
    open_slots: list[OpenSlot]
    finished: bool
    n_decided: int
    retry_waiting: bool
    _attempts: Callable[[str], list[TrialRecord]] = field(repr=False)

    @property
    def n_slots(self) -> int:
        return self.sizes.n_slots

    def slot(self, slot: Slot) -> SlotState:
        """The state of any slot (empty and open when no trial has held it)."""
        attempts = self._attempts(slot.name)
        return _decide(slot, attempts, self.sizes.max_redraws) if attempts else SlotState(slot)

    def lineage(self, particle: int) -> tuple[set[str], set[str]]:
        """The particle's duplicate lists: the equations and behaviour keys of its own genome
        and of every child attempt it has had (evaluated, failed or running)."""
        origin = self.particles[particle].origin
        equations = {origin.equation} if origin.equation is not None else set()
        behaviours = {origin.behaviour} if origin.behaviour is not None else set()
        for step_slots in _catalog(self.sizes).children[particle]:
            for _, key in step_slots:
                for record in self._attempts(key):
                    if record.equation is not None:
                        equations.add(record.equation)
                    if record.behaviour is not None:
                        behaviours.add(record.behaviour)
        return equations, behaviours


def _completion_key(record: TrialRecord) -> tuple[datetime.datetime, int]:
    return (record.completed or _NEVER, record.number)


def _decide(slot: Slot, attempts: list[TrialRecord], max_redraws: int) -> SlotState:
    if len(attempts) == 1:  # the common case, kept fast
        only = attempts[0]
        if only.held:
            return SlotState(slot, attempts, held=True)
        if only.success:
            return SlotState(slot, attempts, decided_by=only, success=True)
        if not only.counts:
            return SlotState(slot, attempts)
        finished = [only]
    else:
        finished = sorted((r for r in attempts if not r.held and r.counts), key=_completion_key)
    state = SlotState(slot, attempts, held=any(r.held for r in attempts))
    for record in finished:
        if record.success:
            state.decided_by, state.success = record, True
            return state
        if slot.kind == "child" or record.crashed:
            state.failures += 1
            state.crashes += int(record.crashed)
            if state.failures >= max_redraws:
                state.decided_by = record
                return state
        else:
            state.decided_by = record
            return state
    return state


def _better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def _rank_initial(states: Sequence[SlotState], maximize: bool) -> list[SlotState]:
    """Best first; ties keep the lower slot first.

    The paper's GA scores a failure 0; here a failure ranks below every success, which is the same
    for fitness values above 0 (accuracies) and stays right for any other objective.
    """
    sign = 1.0 if maximize else -1.0

    def key(state: SlotState) -> tuple[int, float, int]:
        value = state.value
        if value is None:
            return (1, 0.0, state.slot.index)
        return (0, -sign * value, state.slot.index)

    return sorted(states, key=key)


def _select(
    children: list[SlotState], parent: Selection, *, elitism: bool, maximize: bool
) -> Selection:
    """Argmax of the children's fitness (ties: first slot; all failed: first slot's last
    mutant). With ``elitism`` the parent stays when it succeeded and beats that child."""
    best, best_value = children[0], None
    for child in children:
        value = child.value
        if value is not None and (best_value is None or _better(value, best_value, maximize)):
            best, best_value = child, value
    assert best.decided_by is not None
    selection = Selection(best.decided_by.number, best_value, best.slot)
    if (
        elitism
        and parent.value is not None
        and (best_value is None or _better(parent.value, best_value, maximize))
    ):
        return Selection(parent.source, parent.value, None)
    return selection


@dataclass(frozen=True)
class _Catalog:
    """Every slot of a GA shape with its name, built once per shape."""

    init: tuple[tuple[Slot, str], ...]
    reeval: tuple[tuple[Slot, str], ...]
    children: tuple[tuple[tuple[tuple[Slot, str], ...], ...], ...]  # [particle][step - 1]
    keys: frozenset[str]


@cache
def _catalog(sizes: GASizes) -> _Catalog:
    def named(slot: Slot) -> tuple[Slot, str]:
        return slot, slot.name

    init = tuple(named(Slot("init", j)) for j in range(sizes.n_init))
    reeval = tuple(named(Slot("reeval", i)) for i in range(sizes.n_particles))
    children = tuple(
        tuple(
            tuple(named(Slot("child", i, step, m)) for m in range(sizes.mutations))
            for step in range(1, sizes.steps + 1)
        )
        for i in range(sizes.n_particles)
    )
    keys = {key for _, key in init + reeval}
    keys |= {key for particle in children for step in particle for _, key in step}
    return _Catalog(init, reeval, children, frozenset(keys))


_NO_ATTEMPTS: list[TrialRecord] = []


class DeriveMemo:
    """What :func:`derive_state` may remember between calls on one study (see module doc).

    A memo belongs to one GA shape and study direction, and to one growing list of trials.
    """

    def __init__(self) -> None:
        self.bound: tuple[GASizes, bool] | None = None
        self.ingested: set[int] = set()
        self.finished: dict[str, list[TrialRecord]] = {}
        self.superseded: set[int] = set()
        #: The ranked seeds of the particles and every trial number their ranking used.
        self.ranking: tuple[list[SlotState], frozenset[int]] | None = None
        #: Per particle: (origin trial, selections of decided steps 1..k, trial numbers used).
        self.progress: dict[int, tuple[int, list[Selection], set[int]]] = {}

    def bind(self, sizes: GASizes, maximize: bool) -> None:
        if self.bound is None:
            self.bound = (sizes, maximize)
        elif self.bound != (sizes, maximize):
            raise NOSError("a DeriveMemo serves one GA shape and study direction")

    def ingest(self, record: TrialRecord) -> None:
        """Remember a finished trial (finished trials never change)."""
        self.ingested.add(record.number)
        if record.retry_of:
            self.superseded.update(record.retry_of)
        if record.slot_key is not None:
            self.finished.setdefault(record.slot_key, []).append(record)


def _used(state: SlotState) -> set[int]:
    """Trial numbers a decision rests on: the counted attempts up to the deciding one."""
    decided_by = state.decided_by
    assert decided_by is not None
    limit = _completion_key(decided_by)
    return {
        r.number for r in state.attempts if not r.held and r.counts and _completion_key(r) <= limit
    }


def derive_state(
    records: Iterable[TrialRecord],
    sizes: GASizes,
    *,
    maximize: bool = True,
    memo: DeriveMemo | None = None,
) -> GAState:
    """The GA state of a study whose trials are ``records`` (any order).

    Trials without a slot of this GA (other samplers' trials, idle trials) are ignored.
    ``maximize`` is the study's direction: the initial population is ranked and children
    are selected by it. ``memo`` (optional, see :class:`DeriveMemo`) makes repeated calls
    on a growing list of trials cheap without changing the result.
    """
    memo = memo if memo is not None else DeriveMemo()
    memo.bind(sizes, maximize)
    unfinished: dict[str, list[TrialRecord]] = {}
    superseded_now: set[int] = set()
    waiting: set[str] = set()
    for record in records:
        if record.held:
            if record.retry_of:
                superseded_now.update(record.retry_of)
            key = record.slot_key
            if key is not None:
                unfinished.setdefault(key, []).append(record)
                if record.state == TrialState.WAITING:
                    waiting.add(key)
        elif record.number not in memo.ingested:
            memo.ingest(record)
    superseded = memo.superseded | superseded_now if superseded_now else memo.superseded

    def attempts(key: str) -> list[TrialRecord]:
        done = memo.finished.get(key, _NO_ATTEMPTS)
        running = unfinished.get(key, _NO_ATTEMPTS)
        found = [r for r in done if not (r.crashed and r.number in superseded)] if done else []
        if running:
            found.extend(running)
        if len(found) > 1:
            found.sort(key=lambda r: r.number)
        return found

    def state_of(slot: Slot, key: str) -> SlotState:
        found = attempts(key)
        return _decide(slot, found, sizes.max_redraws) if found else SlotState(slot)

    catalog = _catalog(sizes)
    open_slots: list[OpenSlot] = []
    n_decided = 0
    seeds: list[SlotState] | None = None
    if memo.ranking is not None and memo.ranking[1].isdisjoint(superseded):
        seeds = memo.ranking[0]
        n_decided += sizes.n_init
    else:
        memo.ranking = None
        initial = [state_of(slot, key) for slot, key in catalog.init]
        for state in initial:
            if state.open:
                crashed = [r for r in state.attempts if r.crashed and r.has_genome]
                source = max(crashed, key=_completion_key).number if crashed else None
                open_slots.append(OpenSlot(state.slot, source, mutate=False))
        n_decided += sum(1 for state in initial if state.decided)
        if n_decided == sizes.n_init:
            seeds = _rank_initial(initial, maximize)[: sizes.n_particles]
            used: set[int] = set()
            for state in initial:
                used |= _used(state)
            memo.ranking = (seeds, frozenset(used))

    particles: list[ParticleState] = []
    for index, seed in enumerate(seeds or ()):
        particle, decided = _particle(
            index, seed, sizes, catalog, state_of, memo, superseded, open_slots, maximize
        )
        particles.append(particle)
        n_decided += decided

    finished = seeds is not None and all(p.done for p in particles)
    retry_waiting = any(key in catalog.keys for key in waiting)
    return GAState(
        sizes,
        None if seeds is None else [s.slot for s in seeds],
        particles,
        open_slots,
        finished,
        n_decided,
        retry_waiting,
        attempts,
    )


def _particle(
    index: int,
    seed: SlotState,
    sizes: GASizes,
    catalog: _Catalog,
    state_of: Callable[[Slot, str], SlotState],
    memo: DeriveMemo,
    superseded: set[int],
    open_slots: list[OpenSlot],
    maximize: bool,
) -> tuple[ParticleState, int]:
    """The particle's state and how many of its slots are decided."""
    origin = seed.decided_by
    assert origin is not None
    reeval_slot, reeval_key = catalog.reeval[index]
    reeval = state_of(reeval_slot, reeval_key)
    particle = ParticleState(index, seed.slot, origin, reeval)
    if reeval.open:
        open_slots.append(OpenSlot(reeval_slot, origin.number, mutate=False))
    particle.selections.append(Selection(origin.number, reeval.value if reeval.decided else None))
    decided = int(reeval.decided)

    remembered = memo.progress.get(index)
    if (
        remembered is not None
        and remembered[0] == origin.number
        and remembered[2].isdisjoint(superseded)
    ):
        particle.selections.extend(remembered[1])
        used = remembered[2]
    else:
        used = set()
        memo.progress[index] = (origin.number, [], used)
    steps_known = len(particle.selections) - 1
    decided += steps_known * sizes.mutations

    complete = True
    for step, step_slots in enumerate(
        catalog.children[index][steps_known:], start=steps_known + 1
    ):
        if step == 1 and sizes.elitism and not reeval.decided:
            complete = False
            break
        parent = particle.current
        children = [state_of(slot, key) for slot, key in step_slots]
        decided += sum(1 for child in children if child.decided)
        if not all(child.decided for child in children):
            particle.children = children
            for child in children:
                if child.open:
                    open_slots.append(OpenSlot(child.slot, parent.source, mutate=True))
            complete = False
            break
        selection = _select(children, parent, elitism=sizes.elitism, maximize=maximize)
        particle.selections.append(selection)
        memo.progress[index][1].append(selection)
        for child in children:
            used |= _used(child)
        if step == 1 and sizes.elitism:
            used |= _used(reeval)
    particle.done = complete and reeval.decided
    return particle, decided
