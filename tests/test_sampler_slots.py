"""Slot logic of the particle GA against hand-built trial histories.

The histories are lists of :class:`TrialRecord` written out by hand; the expected decisions,
rankings and selections follow from the GA's rules, worked out in each test.
"""

from __future__ import annotations

import datetime
import math
import random
import threading
from collections.abc import Iterable

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from optuna_nos import ParticleSampler, StopWhenFinished, suggest_genome, trial_fidelity
from optuna_nos.core.errors import NOSError
from optuna_nos.optim.integrity import integrity_check
from optuna_nos.sampler import (
    FINISHED_REASON,
    GA_CONFIG_ATTR,
    RETRY_REASON,
    SLOT_ATTR,
    DeriveMemo,
    GASizes,
    Slot,
    TrialRecord,
    derive_state,
)
from optuna_nos.space.genome import Genome
from optuna_nos.space.parse import parse_equation
from optuna_nos.study.suggest import GENOME_ATTR, IDLE_ATTR, genome_params

C, P, F = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL
R, W = TrialState.RUNNING, TrialState.WAITING
_T0 = datetime.datetime(2024, 1, 1)

# 2 particles from 4 initial genomes; 2 steps of 2 children; 3 attempts per child.
SMALL = GASizes(n_particles=2, init_factor=2, steps=2, mutations=2, max_redraws=3)


class History:
    """Builds records; trial numbers and completion times follow the order of calls."""

    def __init__(self) -> None:
        self.records: list[TrialRecord] = []

    def add(
        self,
        slot: str | None,
        state: TrialState,
        value: float | None = None,
        *,
        equation: str | None = None,
        behaviour: str | None = None,
        retry_of: Iterable[int] = (),
        has_genome: bool = True,
        completed_at: int | None = None,
    ) -> int:
        number = len(self.records)
        finished = state in (C, P, F)
        when = None
        if finished:
            when = _T0 + datetime.timedelta(
                seconds=number if completed_at is None else completed_at
            )
        self.records.append(
            TrialRecord(
                number=number,
                state=state,
                value=value if state == C else None,
                slot=Slot.parse(slot),
                equation=equation if equation is not None else f"eq{number}",
                behaviour=behaviour if behaviour is not None else f"bk{number}",
                has_genome=has_genome,
                completed=when,
                retry_of=tuple(retry_of),
            )
        )
        return number


def _open_names(state) -> set[str]:  # type: ignore[no-untyped-def]
    return {o.slot.name for o in state.open_slots}


def _init_done(h: History, values: list[float | None]) -> list[int]:
    """Decide init 0..3 with these values (None = pruned); returns the trial numbers."""
    numbers = []
    for j, value in enumerate(values):
        numbers.append(h.add(f"init {j}", C if value is not None else P, value))
    return numbers


# -- slot names and sizes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["init 0", "init 499", "p0 s0", "p49 s0", "p3 s2 c4", "p12 s5 c6"]
)
def test_slot_names_round_trip(name: str) -> None:
    slot = Slot.parse(name)
    assert slot is not None and slot.name == name


@pytest.mark.parametrize(
    "name", ["init", "init -1", "p1 s0 c1", "p1 s1", "q1 s1 c1", "", None, 3, "p1 s01 c1"]
)
def test_bad_slot_names_parse_to_none(name: object) -> None:
    assert Slot.parse(name) is None


def test_paper_sizes_give_the_paper_budget() -> None:
    sizes = GASizes()
    assert sizes.n_init == 500
    assert sizes.n_slots == 500 + 1_800  # 500 init + n * (1 + K * M)


@pytest.mark.parametrize(
    "field,value",
    [
        ("n_particles", 0),
        ("init_factor", 0),
        ("steps", -1),
        ("mutations", 0),
        ("max_redraws", 0),
        ("n_particles", 2.5),
        ("n_particles", True),
    ],
)
def test_bad_sizes_name_the_value(field: str, value: object) -> None:
    with pytest.raises(NOSError, match=field):
        GASizes(**{field: value})  # type: ignore[arg-type]


def test_slots_outside_the_sizes_are_ignored() -> None:
    h = History()
    h.add("init 99", C, 1.0)
    h.add("p5 s0", C, 1.0)
    state = derive_state(h.records, SMALL)
    assert not state.slot(Slot("init", 0)).attempts
    assert len(state.open_slots) == SMALL.n_init and state.n_decided == 0


# -- initial population --------------------------------------------------------------------


def test_empty_study_opens_every_initial_slot() -> None:
    state = derive_state([], SMALL)
    assert _open_names(state) == {f"init {j}" for j in range(4)}
    assert state.ranking is None and not state.particles and not state.finished


def test_held_slots_are_not_open() -> None:
    h = History()
    h.add("init 0", R)
    h.add("init 1", W)
    h.add(None, R)  # a trial without a slot holds nothing
    state = derive_state(h.records, SMALL)
    assert _open_names(state) == {"init 2", "init 3"}


def test_ranking_is_best_first_failures_last_ties_to_lower_slot() -> None:
    h = History()
    _init_done(h, [0.5, None, 0.7, 0.5])
    state = derive_state(h.records, SMALL)
    assert state.ranking == [Slot("init", 2), Slot("init", 0)]
    assert [p.origin.number for p in state.particles] == [2, 0]
    minimizing = derive_state(h.records, SMALL, maximize=False)
    assert minimizing.ranking == [Slot("init", 0), Slot("init", 3)]


def test_failures_rank_below_negative_values() -> None:
    h = History()
    _init_done(h, [None, -3.0, None, -1.0])
    assert derive_state(h.records, SMALL).ranking == [Slot("init", 3), Slot("init", 1)]


def test_particles_wait_for_every_initial_slot() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7])
    h.add("init 3", R)
    state = derive_state(h.records, SMALL)
    assert state.ranking is None and not state.open_slots


def test_a_crash_reopens_an_initial_slot_with_the_same_genome() -> None:
    h = History()
    crashed = h.add("init 0", F)
    state = derive_state(h.records, SMALL)
    reopened = next(o for o in state.open_slots if o.slot.name == "init 0")
    assert reopened.source == crashed and not reopened.mutate


def test_max_redraws_crashes_decide_an_initial_slot_as_failed() -> None:
    h = History()
    for _ in range(SMALL.max_redraws):
        h.add("init 0", F)
    slot = derive_state(h.records, SMALL).slot(Slot("init", 0))
    assert slot.decided and not slot.success and slot.crashes == SMALL.max_redraws


def test_a_retried_crash_does_not_count_and_the_retry_holds_the_slot() -> None:
    h = History()
    dead = h.add("init 0", F)
    h.add("init 0", W, retry_of=[dead])
    state = derive_state(h.records, SMALL)
    slot = state.slot(Slot("init", 0))
    assert [r.number for r in slot.attempts] == [1]
    assert slot.held and not slot.open and state.retry_waiting
    h.records[1] = TrialRecord(
        number=1,
        state=C,
        value=0.9,
        slot=Slot("init", 0),
        equation="eq0",
        has_genome=True,
        completed=_T0 + datetime.timedelta(seconds=9),
        retry_of=(dead,),
    )
    slot = derive_state(h.records, SMALL).slot(Slot("init", 0))
    assert slot.decided_by is not None and slot.decided_by.number == 1 and slot.crashes == 0


def test_a_chain_of_retries_counts_once() -> None:
    h = History()
    first = h.add("init 0", F)
    second = h.add("init 0", F, retry_of=[first])
    h.add("init 0", F, retry_of=[first, second])  # the callback gave up after this one
    slot = derive_state(h.records, SMALL).slot(Slot("init", 0))
    assert slot.crashes == 1 and slot.open


def test_an_attempt_without_genome_counts_for_nothing() -> None:
    h = History()
    h.add("init 0", F, has_genome=False)
    slot = derive_state(h.records, SMALL).slot(Slot("init", 0))
    assert slot.crashes == 0 and slot.open
    assert (
        next(
            o for o in derive_state(h.records, SMALL).open_slots if o.slot.name == "init 0"
        ).source
        is None
    )


# -- re-evaluation and steps ---------------------------------------------------------------


def test_particles_open_step0_and_step1_together_without_elitism() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    state = derive_state(h.records, SMALL)
    assert _open_names(state) == {"p0 s0", "p1 s0", "p0 s1 c0", "p0 s1 c1", "p1 s1 c0", "p1 s1 c1"}
    by_name = {o.slot.name: o for o in state.open_slots}
    assert by_name["p0 s0"].source == 3 and not by_name["p0 s0"].mutate
    assert by_name["p0 s1 c1"].source == 3 and by_name["p0 s1 c1"].mutate
    assert by_name["p1 s1 c0"].source == 2


def test_elitism_makes_step1_wait_for_the_reevaluation() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    elitist = GASizes(
        n_particles=2, init_factor=2, steps=2, mutations=2, max_redraws=3, elitism=True
    )
    assert _open_names(derive_state(h.records, elitist)) == {"p0 s0", "p1 s0"}
    h.add("p0 s0", P)  # a failed re-evaluation still lets the particle evolve
    assert "p0 s1 c0" in _open_names(derive_state(h.records, elitist))


def test_a_child_is_redrawn_after_failures_then_succeeds() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    h.add("p0 s1 c0", P)
    h.add("p0 s1 c0", C, math.nan)  # a non-finite value is a failure
    state = derive_state(h.records, SMALL)
    slot = state.slot(Slot("child", 0, 1, 0))
    assert slot.failures == 2 and slot.open
    h.add("p0 s1 c0", C, 0.9)
    slot = derive_state(h.records, SMALL).slot(Slot("child", 0, 1, 0))
    assert slot.decided and slot.success and slot.value == 0.9


def test_a_child_fails_after_max_redraws_keeping_its_last_mutant() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    h.add("p0 s1 c0", P)
    h.add("p0 s1 c0", F)  # a crash is an attempt too
    last = h.add("p0 s1 c0", P)
    slot = derive_state(h.records, SMALL).slot(Slot("child", 0, 1, 0))
    assert slot.decided and not slot.success and slot.decided_by is not None
    assert slot.decided_by.number == last


def _step1(h: History, particle: int, values: list[float | None]) -> list[int]:
    numbers = []
    for m, value in enumerate(values):
        numbers.append(h.add(f"p{particle} s1 c{m}", C if value is not None else P, value))
    return numbers


def test_selection_is_argmax_and_step2_mutates_the_winner() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    _c0, c1 = _step1(h, 0, [0.81, 0.85])
    state = derive_state(h.records, SMALL)
    assert state.particles[0].current.source == c1
    step2 = {o.slot.name: o for o in state.open_slots if o.slot.step == 2}
    assert set(step2) == {"p0 s2 c0", "p0 s2 c1"}
    assert all(o.source == c1 and o.mutate for o in step2.values())


def test_selection_ties_go_to_the_first_slot() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    c0, _c1 = _step1(h, 0, [0.8, 0.8])
    assert derive_state(h.records, SMALL).particles[0].current.source == c0


def test_without_elitism_the_particle_may_get_worse() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    h.add("p0 s0", C, 0.95)
    _c0, c1 = _step1(h, 0, [0.1, 0.2])
    particle = derive_state(h.records, SMALL).particles[0]
    assert particle.current.source == c1 and particle.current.value == 0.2


def test_elitism_keeps_a_better_parent_and_drops_a_worse_one() -> None:
    elitist = GASizes(
        n_particles=2, init_factor=2, steps=2, mutations=2, max_redraws=3, elitism=True
    )
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    h.add("p0 s0", C, 0.95)
    _step1(h, 0, [0.1, 0.2])
    particle = derive_state(h.records, elitist).particles[0]
    assert particle.current.source == 3 and particle.current.slot is None  # origin kept
    h2 = History()
    _init_done(h2, [0.5, 0.6, 0.7, 0.8])
    h2.add("p0 s0", C, 0.05)
    _c0, c1 = _step1(h2, 0, [0.1, 0.2])
    assert derive_state(h2.records, elitist).particles[0].current.source == c1


def test_all_children_failed_selects_the_first_slots_last_mutant() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    last_of_c0 = 0
    for m in range(2):
        for _ in range(SMALL.max_redraws):
            number = h.add(f"p0 s1 c{m}", P)
            last_of_c0 = number if m == 0 else last_of_c0
    particle = derive_state(h.records, SMALL).particles[0]
    assert particle.current.source == last_of_c0 and particle.current.value is None


def test_step2_waits_for_every_child_of_step1() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    h.add("p0 s1 c0", C, 0.9)
    h.add("p0 s1 c1", R)
    assert not any(o.slot.step == 2 for o in derive_state(h.records, SMALL).open_slots)


def test_a_racing_duplicate_never_changes_a_decision() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    # Two attempts of one slot (a racing claim): trial 5 finishes first, then trial 4.
    late = h.add("p0 s1 c0", C, 0.99, completed_at=100)
    early = h.add("p0 s1 c0", C, 0.80, completed_at=50)
    slot = derive_state(h.records, SMALL).slot(Slot("child", 0, 1, 0))
    assert slot.decided_by is not None and slot.decided_by.number == early != late


def test_duplicate_lists_hold_the_origin_and_every_child_attempt() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    h.add("p0 s1 c0", P, equation="A", behaviour="ka")
    h.add("p0 s1 c0", R, equation="B", behaviour="kb")
    h.add("p1 s1 c0", C, 0.3, equation="C", behaviour="kc")
    state = derive_state(h.records, SMALL)
    assert state.lineage(0) == ({"eq3", "A", "B"}, {"bk3", "ka", "kb"})
    assert state.lineage(1)[0] == {"eq2", "C"}


def test_a_complete_history_is_finished_with_every_slot_decided() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    for particle in range(2):
        h.add(f"p{particle} s0", C, 0.5)
        for step in (1, 2):
            for child in range(2):
                h.add(f"p{particle} s{step} c{child}", C, 0.5 + step / 10 + child / 100)
    state = derive_state(h.records, SMALL)
    assert state.finished and not state.open_slots
    assert state.n_decided == SMALL.n_slots == 4 + 2 * (1 + 2 * 2)
    assert state.particles[1].current.value == pytest.approx(0.71)


def test_an_unfinished_reevaluation_keeps_the_search_open() -> None:
    h = History()
    _init_done(h, [0.5, 0.6, 0.7, 0.8])
    for particle in range(2):
        for step in (1, 2):
            for child in range(2):
                h.add(f"p{particle} s{step} c{child}", C, 0.6)
    h.add("p0 s0", C, 0.5)
    h.add("p1 s0", R)
    state = derive_state(h.records, SMALL)
    assert not state.finished and not state.open_slots
    assert state.n_decided == SMALL.n_slots - 1


# -- the memo never changes the result -----------------------------------------------------


def _summary(state) -> tuple:  # type: ignore[no-untyped-def]
    particles = [
        (
            p.index,
            p.origin.number,
            p.selections,
            p.done,
            p.reeval.decided_by,
            [c.decided_by for c in p.children],
            state.lineage(p.index),
        )
        for p in state.particles
    ]
    open_slots = [(o.slot, o.source, o.mutate) for o in state.open_slots]
    return (
        state.ranking,
        open_slots,
        state.finished,
        state.n_decided,
        state.retry_waiting,
        particles,
    )


def _finish(
    record: TrialRecord, state: TrialState, value: float | None, clock: int
) -> TrialRecord:
    return TrialRecord(
        number=record.number,
        state=state,
        value=value,
        slot=record.slot,
        equation=record.equation,
        behaviour=record.behaviour,
        has_genome=record.has_genome,
        completed=_T0 + datetime.timedelta(seconds=clock),
        retry_of=record.retry_of,
    )


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("elitism", [False, True])
def test_a_memo_gives_the_same_state_as_a_fresh_derivation(seed: int, elitism: bool) -> None:
    """Simulated workers claim open slots (sometimes racing for a held one), and attempts
    succeed, fail or crash; some crashes get a queued retry, some only later. After every
    event, a long-lived memo and a fresh derivation must agree."""
    rng = random.Random(seed)
    sizes = GASizes(
        n_particles=3, init_factor=2, steps=3, mutations=2, max_redraws=2, elitism=elitism
    )
    records: list[TrialRecord] = []
    pending_retries: list[int] = []
    memo = DeriveMemo()
    for clock in range(1, 700):
        fresh = derive_state(records, sizes)
        assert _summary(derive_state(records, sizes, memo=memo)) == _summary(fresh)
        if fresh.finished:
            break
        held = [k for k, r in enumerate(records) if r.held]
        roll = rng.random()
        if pending_retries and roll < 0.1:
            failed = records[pending_retries.pop(0)]
            records.append(
                TrialRecord(
                    number=len(records),
                    state=W,
                    slot=failed.slot,
                    equation=failed.equation,
                    behaviour=failed.behaviour,
                    has_genome=True,
                    retry_of=failed.retry_of + (failed.number,),
                )
            )
        elif held and (roll < 0.55 or not fresh.open_slots):
            k = rng.choice(held)
            outcome = rng.random()
            if outcome < 0.6:
                records[k] = _finish(records[k], C, round(rng.random(), 2), clock)
            elif outcome < 0.8:
                records[k] = _finish(records[k], P, None, clock)
            else:
                records[k] = _finish(records[k], F, None, clock)
                if rng.random() < 0.5:
                    pending_retries.append(k)
        else:
            candidates: list[Slot | None] = [o.slot for o in fresh.open_slots]
            if held and rng.random() < 0.1:  # a racing claim on a slot already held
                candidates = [records[rng.choice(held)].slot]
            if candidates:
                slot = rng.choice(candidates)
                number = len(records)
                records.append(
                    TrialRecord(
                        number=number,
                        state=R,
                        slot=slot,
                        equation=f"e{rng.randrange(40)}",
                        behaviour=f"b{rng.randrange(40)}",
                        has_genome=rng.random() > 0.03,
                    )
                )
    assert derive_state(records, sizes).n_decided > 0


def test_a_memo_serves_one_shape() -> None:
    memo = DeriveMemo()
    derive_state([], SMALL, memo=memo)
    with pytest.raises(NOSError, match="one GA shape"):
        derive_state([], GASizes(), memo=memo)


# -- the sampler on an in-memory storage: claims, retries, waiting, finish ---------------------

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = {"n_particles": 2, "init_factor": 2, "steps": 2, "mutations": 2, "max_redraws": 3}


def _sphere_objective(trial: optuna.Trial) -> float:
    genome = suggest_genome(trial)
    loss = integrity_check(genome).loss
    assert loss is not None
    return -loss


def _study(**overrides: object) -> optuna.Study:
    sampler = ParticleSampler(**{**TINY, "seed": 7, "poll_interval": 0.02, **overrides})
    return optuna.create_study(direction="maximize", sampler=sampler)


def _slot_of(study: optuna.Study, trial: optuna.Trial) -> str | None:
    return study._storage.get_trial_system_attrs(trial._trial_id).get(SLOT_ATTR)


def test_unfinished_trials_claim_distinct_slots() -> None:
    study = _study()
    trials = [study.ask() for _ in range(4)]
    assert sorted(_slot_of(study, t) or "" for t in trials) == [f"init {j}" for j in range(4)]


def test_a_claim_yields_to_a_lower_numbered_rival() -> None:
    study = _study()
    first, second = study.ask(), study.ask()
    sampler = study.sampler
    assert isinstance(sampler, ParticleSampler)
    taken = _slot_of(study, first)
    frozen_second = study._storage.get_trial(second._trial_id)
    assert not sampler._claim(study, frozen_second, Slot.parse(taken), heartbeat=False)
    frozen_first = study._storage.get_trial(first._trial_id)
    assert sampler._claim(
        study, frozen_first, Slot.parse(_slot_of(study, second)), heartbeat=False
    )


def test_a_full_search_decides_every_slot_once_and_stops() -> None:
    study = _study()
    study.optimize(_sphere_objective, n_trials=500, callbacks=[StopWhenFinished()])
    sampler = study.sampler
    assert isinstance(sampler, ParticleSampler)
    slots = [str(t.system_attrs.get(SLOT_ATTR)) for t in study.trials]
    n_slots = 2 * 2 + 2 * (1 + 2 * 2)
    assert len(study.trials) == n_slots == sampler.n_slots  # sphere losses never fail
    assert sorted(slots) == sorted(
        [f"init {j}" for j in range(4)]
        + [f"p{i} s0" for i in range(2)]
        + [f"p{i} s{s} c{c}" for i in range(2) for s in (1, 2) for c in range(2)]
    )
    assert sampler.is_finished(study) and sampler.n_decided(study) == n_slots
    idle = study.ask()
    with pytest.raises(optuna.TrialPruned, match=FINISHED_REASON):
        suggest_genome(idle)


def test_lineage_follows_the_selection() -> None:
    study = _study()
    study.optimize(_sphere_objective, n_trials=500, callbacks=[StopWhenFinished()])
    by_slot = {t.user_attrs["slot"]: t for t in study.trials}
    ranked = sorted(
        (by_slot[f"init {j}"] for j in range(4)), key=lambda t: (-(t.value or 0.0), t.number)
    )
    for particle in range(2):
        origin = ranked[particle]
        assert by_slot[f"p{particle} s0"].user_attrs["parent"] == origin.number
        assert by_slot[f"p{particle} s0"].user_attrs["equation"] == origin.user_attrs["equation"]
        parent = origin.number
        for step in (1, 2):
            children = [by_slot[f"p{particle} s{step} c{c}"] for c in range(2)]
            for child in children:
                assert child.user_attrs["parent"] == parent
                assert child.user_attrs["particle"] == particle
                assert child.user_attrs["step"] == step
                assert child.user_attrs["fidelity"] == "evolution"
                assert trial_fidelity(child) == "evolution"
                assert child.user_attrs["mutation"]["kind"]
            parent = max(children, key=lambda t: (t.value, -t.number)).number
    assert all(trial_fidelity(by_slot[f"init {j}"]) == "init" for j in range(4))


def test_children_of_a_particle_never_repeat_an_equation() -> None:
    study = _study()
    study.optimize(_sphere_objective, n_trials=500, callbacks=[StopWhenFinished()])
    for particle in range(2):
        own = [t for t in study.trials if t.user_attrs.get("particle") == particle]
        reeval = next(t for t in own if t.user_attrs["slot"] == f"p{particle} s0")
        children = [t.user_attrs["equation"] for t in own if t is not reeval]
        assert len(set(children)) == len(children)
        assert reeval.user_attrs["equation"] not in children


def test_failed_children_are_redrawn_as_new_mutants() -> None:
    study = _study()

    def objective(trial: optuna.Trial) -> float:
        genome = suggest_genome(trial)
        attrs = study._storage.get_trial_system_attrs(trial._trial_id)
        if attrs[SLOT_ATTR].startswith("p0 s1"):
            raise optuna.TrialPruned("test: fail every child of particle 0 at step 1")
        return -(integrity_check(genome).loss or 0.0)

    study.optimize(objective, n_trials=500, callbacks=[StopWhenFinished()])
    attempts = {
        c: [t for t in study.trials if t.user_attrs.get("slot") == f"p0 s1 c{c}"] for c in range(2)
    }
    for tries in attempts.values():
        assert len(tries) == TINY["max_redraws"]
        assert len({t.user_attrs["equation"] for t in tries}) == len(tries)
        assert {t.user_attrs["parent"] for t in tries} == {tries[0].user_attrs["parent"]}
    last_of_first_slot = attempts[0][-1].number
    step2 = [t for t in study.trials if t.user_attrs.get("slot", "").startswith("p0 s2")]
    assert step2 and all(t.user_attrs["parent"] == last_of_first_slot for t in step2)


def test_a_queued_retry_runs_the_same_slot_and_genome() -> None:
    study = _study()
    first = study.ask()
    genome = suggest_genome(first)
    storage = study._storage
    storage.set_trial_state_values(first._trial_id, optuna.trial.TrialState.FAIL)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        RetryHeartbeatStaleTrialCallback(max_retry=3)(study, storage.get_trial(first._trial_id))
    retry = study.ask()  # pops the WAITING copy
    assert retry.number != first.number
    assert _slot_of(study, retry) == _slot_of(study, first)
    assert suggest_genome(retry) == genome
    assert retry.params == first.params == genome_params(genome)
    sampler = study.sampler
    assert isinstance(sampler, ParticleSampler)
    state = sampler.state(study)
    slot = state.slot(Slot.parse(_slot_of(study, first)))
    assert [r.number for r in slot.attempts] == [retry.number] and slot.held


def test_a_retry_of_an_unfinished_claim_is_placed_afresh() -> None:
    study = _study()
    storage = study._storage
    dead = optuna.trial.create_trial(state=TrialState.FAIL, system_attrs={SLOT_ATTR: "init 0"})
    study.add_trial(dead)  # its worker died after claiming, before writing a genome
    retry = optuna.trial.create_trial(
        state=TrialState.WAITING,
        system_attrs={SLOT_ATTR: "init 0", "failed_trial": 0, "retry_history": [0]},
    )
    study.add_trial(retry)
    trial = study.ask()
    assert trial.number == 1
    attrs = storage.get_trial_system_attrs(trial._trial_id)
    assert attrs[SLOT_ATTR].startswith("init ") and GENOME_ATTR in attrs
    assert suggest_genome(trial) == Genome.from_json(attrs[GENOME_ATTR])


def test_a_waiting_retry_makes_a_worker_without_work_go_idle() -> None:
    study = _study(n_particles=1, init_factor=1)
    first = study.ask()
    suggest_genome(first)
    storage = study._storage
    storage.set_trial_state_values(first._trial_id, optuna.trial.TrialState.FAIL)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        RetryHeartbeatStaleTrialCallback(max_retry=3)(study, storage.get_trial(first._trial_id))
    fresh = optuna.Trial(study, storage.create_new_trial(study._study_id))  # skips the queue
    assert storage.get_trial_system_attrs(fresh._trial_id)[IDLE_ATTR] == RETRY_REASON
    with pytest.raises(optuna.TrialPruned, match=RETRY_REASON):
        suggest_genome(fresh)


def test_a_waiting_worker_claims_a_slot_as_soon_as_one_opens() -> None:
    study = _study(n_particles=1, init_factor=1, steps=1, mutations=1)
    first = study.ask()
    suggest_genome(first)
    claimed: list[str | None] = []

    def worker() -> None:
        claimed.append(_slot_of(study, study.ask()))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=0.3)
    assert thread.is_alive() and not claimed  # nothing is open while init 0 runs
    study.tell(first, 1.0)
    thread.join(timeout=30)
    assert claimed and claimed[0] in ("p0 s0", "p0 s1 c0")


def test_a_seeded_single_worker_is_reproducible() -> None:
    def run(seed: int) -> list[tuple[str, str, float | None]]:
        study = _study(seed=seed)
        study.optimize(_sphere_objective, n_trials=500, callbacks=[StopWhenFinished()])
        return [(t.user_attrs["slot"], t.user_attrs["equation"], t.value) for t in study.trials]

    first = run(11)
    assert run(11) == first
    assert run(12) != first


def test_an_enqueued_genome_takes_an_initial_slot() -> None:
    study = _study()
    adam = parse_equation("None ~ (v hat) / (sqrt(|s hat|))")
    study.enqueue_trial(genome_params(adam))
    trial = study.ask()
    assert (_slot_of(study, trial) or "").startswith("init ")
    genome = suggest_genome(trial)
    assert genome.equation() == adam.equation()
    stored = Genome.from_json(study._storage.get_trial_system_attrs(trial._trial_id)[GENOME_ATTR])
    assert stored == genome


def test_workers_with_a_different_config_are_refused() -> None:
    study = _study()
    study.ask()
    other = ParticleSampler(**{**TINY, "n_particles": 3})
    clash = optuna.load_study(study_name=study.study_name, storage=study._storage, sampler=other)
    with pytest.raises(NOSError, match="n_particles=3"):
        clash.ask()
    assert (
        study._storage.get_study_system_attrs(study._study_id)[GA_CONFIG_ATTR]["n_particles"] == 2
    )
    assert study.trials[-1].state == optuna.trial.TrialState.FAIL


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"space": "nope"}, "nope"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"elitism": "yes"}, "elitism"),
        ({"mutations": 0}, "mutations"),
    ],
)
def test_bad_sampler_arguments_name_the_value(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(NOSError, match=name):
        ParticleSampler(**kwargs)  # type: ignore[arg-type]


def test_multi_objective_studies_are_refused() -> None:
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=ParticleSampler(**TINY)
    )
    with pytest.raises(ValueError):
        study.ask()
