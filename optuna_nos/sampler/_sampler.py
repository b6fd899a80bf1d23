"""ParticleSampler: the paper's particle GA as an Optuna sampler.

Each worker, in :meth:`ParticleSampler.before_trial`, derives the GA state from the trials
(:func:`~optuna_nos.sampler._state.derive_state`), claims an open slot, builds the slot's
genome (random, re-used or mutated) and writes it to the trial's system attrs; the genome's
params are then served from :meth:`~ParticleSampler.sample_independent` when the objective
calls :func:`optuna_nos.suggest_genome`. There is no coordinator:

* **Claims.** A worker writes the slot it wants into its trial, re-reads the running trials
  and yields to a lower-numbered trial holding the same slot, trying the next open slot.
  Two racing workers may both keep a slot (an extra attempt), never both yield.
* **Waiting.** With no open slot and the search unfinished, the worker polls the storage
  (failing stale trials on the way, so a dead worker's slot comes back). If a queued retry
  holds a slot, it marks its trial idle so that its next trial picks the retry up.
* **Finish.** When every slot is decided, the trial is marked idle, ``suggest_genome``
  prunes it ("search finished") and :class:`StopWhenFinished` stops the worker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.samplers import BaseSampler, RandomSampler
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.core.validation import check_real
from optuna_nos.sampler._liveness import worker_id
from optuna_nos.sampler._slots import GASizes, Slot
from optuna_nos.sampler._state import (
    DeriveMemo,
    GAState,
    OpenSlot,
    TrialRecord,
    derive_state,
)
from optuna_nos.space.genome import Genome
from optuna_nos.space.variants import VariantLike, resolve_variant
from optuna_nos.study.config import record_search
from optuna_nos.study.genes import genome_from_params, genome_params
from optuna_nos.study.liveness import fail_stale_trials, retried_number
from optuna_nos.study.stored import (
    FIDELITY_ATTR,
    FIDELITY_USER_ATTR,
    FIXED_PARAMS_ATTR,
    GA_ATTR,
    GENOME_ATTR,
    IDLE_ATTR,
    LINEAGE_ATTRS,
    REASON_ATTR,
    SLOT_ATTR,
    WORKER_ATTR,
    ensure_ga_record,
    search_record,
)
from optuna_nos.study.suggest import display_attrs

__all__ = [
    "BEHAVIOUR_REDRAWS",
    "FINISHED_REASON",
    "NO_WORK_REASON",
    "RETRY_REASON",
    "TAKEN_REASON",
    "ParticleSampler",
    "StopWhenFinished",
    "worker_id",
]

_logger = logging.getLogger("optuna_nos.sampler")

#: How many times a child is redrawn when its behaviour key is one the particle already has.
BEHAVIOUR_REDRAWS = 8
#: Seconds between "still waiting" log lines of a waiting worker.
_WAIT_LOG_EVERY_S = 60.0
_HELD = (TrialState.RUNNING, TrialState.WAITING)
FINISHED_REASON = "search finished"
RETRY_REASON = "yielded to a queued retry"
NO_WORK_REASON = "no open slot for a packed trial"
TAKEN_REASON = "retry dropped: its slot is decided or held by another attempt"


class ParticleSampler(BaseSampler):
    """The paper's mutation-only particle GA, all state in the study storage.

    Args:
        n_particles: particles (the paper: 50).
        init_factor: the initial population is ``init_factor * n_particles`` random genomes
            scored at the *init* fidelity; the best ``n_particles`` become particles.
        steps: steps per particle (the paper: 5).
        mutations: children per step (the paper: 7).
        max_redraws: attempts of a child slot before it counts as failed (the paper: 4),
            and crashes an initial or re-evaluation slot may take.
        elitism: keep the particle's genome when it beats all its children (the paper: no).
        seed: with one worker, a seed makes the run reproducible; None seeds each worker
            from (study name, process id, time).
        space: search-space variant (``"paper"``, ``"adam_variants"``, ``"lr_schedule"``,
            ``"lr_schedule:nesterov"``); pass the same to :func:`optuna_nos.suggest_genome`.
        settings: behaviour switches of random init, mutation and the integrity check.
        poll_interval: seconds between storage polls of a worker waiting for work.

    The objective calls ``genome = optuna_nos.suggest_genome(trial, space)`` and trains at
    ``optuna_nos.trial_fidelity(trial)``; ``callbacks=[StopWhenFinished()]`` ends the worker
    once every slot is decided. A trial's slot and lineage are in its system attrs
    (``nos:slot``, ``nos:ga``, ``nos:genome``, ``nos:fidelity``) and, for browsing, its user
    attrs (``slot``, ``fidelity``, ``particle``, ``step``, ``parent``, ``mutation``).

    * Failures (pruned trials, non-finite values) rank below every success, in the initial
      population and among children; for accuracies this equals the paper's scores 0 and -1.
    * An enqueued trial (``study.enqueue_trial(genome_params(g))``) that passes the integrity
      check takes an open initial slot; once none is open it runs outside the GA.
    * Params other than the genome's (an objective's own ``suggest_float``) are sampled by
      a :class:`~optuna.samplers.RandomSampler`. Single-objective studies only.
    * Every worker's sizes, space and settings must equal the study's GA record (``optuna-nos
      init`` writes it; in a study made in Python the first sampler to place a trial does);
      only the seed may differ. :meth:`from_ga_record` builds the sampler of a record.
    """

    def __init__(
        self,
        *,
        n_particles: int = 50,
        init_factor: int = 10,
        steps: int = 5,
        mutations: int = 7,
        max_redraws: int = 4,
        elitism: bool = False,
        seed: int | None = None,
        space: VariantLike = "paper",
        settings: Settings = DEFAULT_SETTINGS,
        poll_interval: float = 0.5,
    ) -> None:
        self._sizes = GASizes(
            n_particles, init_factor, steps, mutations, max_redraws, elitism, seed
        )
        if not isinstance(settings, Settings):
            raise NOSError(f"settings must be an optuna_nos Settings, got {settings!r}")
        if not check_real("poll_interval", poll_interval) > 0:
            raise NOSError(f"poll_interval must be a positive number, got {poll_interval!r}")
        self._variant = resolve_variant(space)
        self._settings = settings
        self._seed = seed
        self._poll_interval = float(poll_interval)
        self._fallback = RandomSampler(seed=seed)
        self._entropy: dict[int, int] = {}
        self._params: dict[int, dict[str, str]] = {}
        self._records: dict[int, dict[int, TrialRecord]] = {}
        self._memos: dict[int, DeriveMemo] = {}
        self._checked: set[int] = set()
        self._lock = threading.Lock()
        #: Seconds this sampler's trials have waited for a slot to open (a diagnostic).
        self.waited_s = 0.0
        #: False makes a trial that finds no open slot idle (NO_WORK_REASON) instead of
        #: waiting; packed workers set it while asking for more trials than the first.
        self.wait_for_work = True

    @classmethod
    def from_ga_record(cls, record: Mapping[str, Any], **kwargs: Any) -> ParticleSampler:
        """The sampler of a study's GA record (its sizes, seed, space and settings);
        ``kwargs`` are the other arguments (``poll_interval``)."""
        sizes, space, settings = record_search(record)
        return cls(
            n_particles=sizes.n_particles,
            init_factor=sizes.init_factor,
            steps=sizes.steps,
            mutations=sizes.mutations,
            max_redraws=sizes.max_redraws,
            elitism=sizes.elitism,
            seed=sizes.seed,
            space=space,
            settings=settings,
            **kwargs,
        )

    # -- read-only views ----------------------------------------------------------------------

    @property
    def sizes(self) -> GASizes:
        return self._sizes

    @property
    def space(self) -> str:
        return str(self._variant)

    @property
    def n_slots(self) -> int:
        """The number of slots of the whole search."""
        return self._sizes.n_slots

    def state(self, study: Study) -> GAState:
        """The GA state derived from the study's trials now."""
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        return self._derive(study, trials)

    def is_finished(self, study: Study) -> bool:
        """True when every slot of the search is decided."""
        return self.state(study).finished

    def n_decided(self, study: Study) -> int:
        """How many slots are decided (for progress bars)."""
        return self.state(study).n_decided

    # -- BaseSampler ----------------------------------------------------------------------------

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._raise_error_if_multi_objective(study)
        return {}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        self._raise_error_if_multi_objective(study)
        params = self._params.get(trial._trial_id)
        if (
            params is not None
            and param_name in params
            and isinstance(param_distribution, CategoricalDistribution)
            and params[param_name] in param_distribution.choices
        ):
            return params[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self._entropy.clear()
        self._fallback.reseed_rng()

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._params.pop(trial._trial_id, None)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._raise_error_if_multi_objective(study)
        storage = study._storage
        try:
            self._check_config(study)
            storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, worker_id())
            attrs = trial.system_attrs
            if attrs.get(IDLE_ATTR) is not None:
                storage.set_trial_system_attr(trial._trial_id, IDLE_ATTR, None)
            if Slot.parse(attrs.get(SLOT_ATTR)) is not None:
                if GENOME_ATTR in attrs:
                    # A queued retry of an attempt: same slot, same genome, unless another
                    # attempt took the slot meanwhile.
                    if self._retry_taken(study, trial, attrs[SLOT_ATTR]):
                        storage.set_trial_system_attr(trial._trial_id, SLOT_ATTR, None)
                        self._idle(study, trial, TAKEN_REASON)
                        return
                    genome = Genome.from_json(attrs[GENOME_ATTR])
                    self._params[trial._trial_id] = genome_params(genome, self._variant)
                    return
                # A retry of a trial whose worker died while claiming: start afresh.
                storage.set_trial_system_attr(trial._trial_id, SLOT_ATTR, None)
            self._place(study, trial)
        except BaseException as exc:
            # Leave no RUNNING trial and no claimed slot behind (errors, Ctrl-C).
            storage.set_trial_system_attr(trial._trial_id, SLOT_ATTR, None)
            reason = (
                f"interrupted: {str(exc) or 'SIGINT'}"
                if isinstance(exc, KeyboardInterrupt)
                else f"sampler error: {type(exc).__name__}"
            )
            storage.set_trial_user_attr(trial._trial_id, REASON_ATTR, reason)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            raise

    # -- placing a trial ----------------------------------------------------------------------

    def _place(self, study: Study, trial: FrozenTrial) -> None:
        storage = study._storage
        enqueued = self._enqueued_genome(trial)
        heartbeat = is_heartbeat_enabled(storage)
        started = last_log = time.monotonic()
        round_ = 0
        while True:
            trials = storage.get_all_trials(study._study_id, deepcopy=False)
            state = self._derive(study, trials, exclude=trial.number)
            if state.finished:
                self._idle(study, trial, FINISHED_REASON)
                return
            tie_break = self._rng(study, trial.number, "claim", round_)
            candidates = _preferred(state.open_slots, tie_break)
            if enqueued is not None:
                candidates = [c for c in candidates if c.slot.kind == "init"]
                if not candidates:
                    return  # no initial slot left: the enqueued genome runs outside the GA
            for candidate in candidates:
                if self._claim(study, trial, candidate.slot, heartbeat):
                    self._start(study, trial, candidate, state, trials, enqueued)
                    return
            round_ += 1
            if candidates:
                # Every open slot went to a lower-numbered rival: look again at once.
                storage.set_trial_system_attr(trial._trial_id, SLOT_ATTR, None)
                continue
            if state.retry_waiting:
                self._idle(study, trial, RETRY_REASON)
                return
            if not self.wait_for_work:
                self._idle(study, trial, NO_WORK_REASON)
                return
            if heartbeat:
                _record_heartbeat(storage, trial._trial_id)
                fail_stale_trials(study)
            now = time.monotonic()
            if now - last_log >= _WAIT_LOG_EVERY_S:
                last_log = now
                _logger.info(
                    "trial %d has waited %.0f s for work; %d of %d slots decided",
                    trial.number,
                    now - started,
                    state.n_decided,
                    state.n_slots,
                )
            time.sleep(self._poll_interval)
            self.waited_s += self._poll_interval

    def _claim(self, study: Study, trial: FrozenTrial, slot: Slot, heartbeat: bool) -> bool:
        """Write the claim, then yield to any lower-numbered unfinished trial holding it."""
        storage = study._storage
        storage.set_trial_system_attr(trial._trial_id, SLOT_ATTR, slot.name)
        if heartbeat:
            _record_heartbeat(storage, trial._trial_id)
        rivals = storage.get_all_trials(study._study_id, deepcopy=False, states=_HELD)
        return not any(
            rival.number < trial.number and rival.system_attrs.get(SLOT_ATTR) == slot.name
            for rival in rivals
        )

    def _start(
        self,
        study: Study,
        trial: FrozenTrial,
        candidate: OpenSlot,
        state: GAState,
        trials: Sequence[FrozenTrial],
        enqueued: Genome | None,
    ) -> None:
        from optuna_nos.optim.evolve import random_genome
        from optuna_nos.optim.integrity import behaviour_key

        slot = candidate.slot
        rng = self._rng(study, trial.number, "slot", zlib.crc32(slot.name.encode()))
        mutation: dict[str, Any] | None = None
        parent: int | None = None
        if candidate.mutate:
            assert candidate.source is not None and slot.particle is not None
            parent = candidate.source
            equations, behaviours = state.lineage(slot.particle)
            genome, mutation, behaviour = self._mutant(
                _genome_of(_trial_number(trials, parent)), rng, equations, behaviours
            )
        else:
            if enqueued is not None:
                genome = enqueued
            elif candidate.source is not None:
                genome = _genome_of(_trial_number(trials, candidate.source))
                parent = candidate.source if slot.kind == "reeval" else None
            else:
                genome = random_genome(rng, self._settings, variant=self._variant)
            behaviour = behaviour_key(genome, self._settings)
        equation = genome.equation()
        lineage: dict[str, Any] = {
            "slot": slot.name,
            "particle": slot.particle,
            "step": slot.step if slot.kind != "init" else None,
            "child": slot.child if slot.kind == "child" else None,
            "parent": parent,
            "equation": equation,
            "behaviour": behaviour,
            "mutation": mutation,
        }
        storage, tid = study._storage, trial._trial_id
        storage.set_trial_system_attr(tid, GENOME_ATTR, genome.to_json())
        storage.set_trial_system_attr(tid, FIDELITY_ATTR, slot.fidelity)
        storage.set_trial_system_attr(tid, GA_ATTR, lineage)
        for key, value in display_attrs(genome).items():  # first, so the dashboard lists it first
            storage.set_trial_user_attr(tid, key, value)
        for key in LINEAGE_ATTRS:
            if lineage[key] is not None:
                storage.set_trial_user_attr(tid, key, lineage[key])
        storage.set_trial_user_attr(tid, FIDELITY_USER_ATTR, slot.fidelity)
        self._params[tid] = genome_params(genome, self._variant)

    def _mutant(
        self,
        parent: Genome,
        rng: np.random.Generator,
        equations: set[str],
        behaviours: set[str],
    ) -> tuple[Genome, dict[str, Any], str]:
        """An accepted mutant new to the particle by equation and, when possible, by
        behaviour key (redrawn up to :data:`BEHAVIOUR_REDRAWS` times)."""
        from optuna_nos.optim.evolve import mutate
        from optuna_nos.optim.integrity import behaviour_key

        seen = set(equations)
        for redraw in range(BEHAVIOUR_REDRAWS + 1):
            mutant, mutation = mutate(
                parent, rng, self._settings, variant=self._variant, seen=seen
            )
            behaviour = behaviour_key(mutant, self._settings)
            if behaviour not in behaviours or redraw == BEHAVIOUR_REDRAWS:
                record = mutation.to_dict()
                record["behaviour_redraws"] = redraw
                return mutant, record, behaviour
            seen.add(mutant.equation())
        raise AssertionError("unreachable")

    def _retry_taken(self, study: Study, trial: FrozenTrial, slot_name: str) -> bool:
        """Whether a popped retry gives way (its slot is then free of it).

        It gives way when the trial it repeats did not end ``FAIL`` (its worker told a late
        result; one still RUNNING is failed here first, as the sweeper that queued this retry
        is about to), when a lower-numbered retry of the same trial exists (racing sweepers
        queued two), when its slot is decided, or when another attempt holds the slot and got
        its genome (past its claim) or is lower-numbered (the claim rule). Its own original
        and later duplicates of itself are no rivals."""
        slot = Slot.parse(slot_name)
        if slot is None or not slot.within(self._sizes):
            return False
        original = retried_number(trial)
        if original is not None and not _failed_for_retry(study, original):
            return True
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        siblings = [
            t.number for t in trials if original is not None and retried_number(t) == original
        ]
        if min(siblings, default=trial.number) < trial.number:
            return True
        if self._derive(study, trials).slot(slot).decided:
            return True
        return any(
            rival.number != trial.number
            and rival.number not in siblings
            and rival.state in _HELD
            and rival.system_attrs.get(SLOT_ATTR) == slot_name
            and (GENOME_ATTR in rival.system_attrs or rival.number < trial.number)
            for rival in trials
        )

    def _enqueued_genome(self, trial: FrozenTrial) -> Genome | None:
        """The genome of an enqueued trial's fixed params, if it is a valid candidate."""
        fixed = trial.system_attrs.get(FIXED_PARAMS_ATTR)
        if not fixed:
            return None
        from optuna_nos.optim.integrity import integrity_check

        try:
            genome = genome_from_params(fixed, self._variant)
        except NOSError:
            return None  # suggest_genome prunes it with the reason
        result = integrity_check(genome, self._settings)
        return genome.replace(flip=bool(result.flip)) if result.passed else None

    def _idle(self, study: Study, trial: FrozenTrial, reason: str) -> None:
        study._storage.set_trial_system_attr(trial._trial_id, IDLE_ATTR, reason)

    # -- state ----------------------------------------------------------------------------------

    def _derive(
        self, study: Study, trials: Sequence[FrozenTrial], exclude: int | None = None
    ) -> GAState:
        maximize = study.direction == StudyDirection.MAXIMIZE
        with self._lock:
            cache = self._records.setdefault(study._study_id, {})
            memo = self._memos.setdefault(study._study_id, DeriveMemo())
            records = []
            for trial in trials:
                if trial.number == exclude:
                    continue
                record = cache.get(trial._trial_id)
                if record is None:
                    record = TrialRecord.from_trial(trial)
                    if trial.state.is_finished():
                        cache[trial._trial_id] = record
                records.append(record)
            return derive_state(records, self._sizes, maximize=maximize, memo=memo)

    def _check_config(self, study: Study) -> None:
        """Check this sampler's GA (sizes, space, settings; not the seed) against the study's
        GA record, which ``optuna-nos init`` wrote; a study made in Python gets its record
        from the first sampler to place a trial (the first writer wins)."""
        if study._study_id in self._checked:
            return
        mine = search_record(self._sizes, str(self._variant), self._settings)
        ensure_ga_record(
            study._storage,
            study._study_id,
            study.study_name,
            mine,
            "this worker's ParticleSampler",
        )
        self._checked.add(study._study_id)

    def _rng(self, study: Study, trial_number: int, *words: str | int) -> np.random.Generator:
        """A generator seeded from (seed or this worker's entropy, trial number, words)."""
        if self._seed is not None:
            base = self._seed
        else:
            base = self._entropy.get(study._study_id, -1)
            if base < 0:
                text = f"{study.study_name}|{os.getpid()}|{time.time_ns()}"
                base = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
                self._entropy[study._study_id] = base
        numbers = [w if isinstance(w, int) else zlib.crc32(w.encode()) for w in words]
        return np.random.default_rng([base, trial_number, *numbers])


def _record_heartbeat(storage: BaseStorage, trial_id: int) -> None:
    """Mark the trial alive now, so that a worker dying before its objective starts leaves a
    trial that goes stale (and is retried) instead of one that runs forever."""
    if isinstance(storage, BaseHeartbeat):
        storage.record_heartbeat(trial_id)


def _failed_for_retry(study: Study, number: int) -> bool:
    """Whether trial ``number``, which a queued retry repeats, ended ``FAIL``. A retry is
    queued before its original is failed, so an original still unfinished is failed here (the
    storage lets one transition win: this ``FAIL`` or the original's own late result)."""
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    if not storage.get_trial(trial_id).state.is_finished():
        try:
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass  # finished meanwhile: by its sweeper, or by its worker's result
    return storage.get_trial(trial_id).state == TrialState.FAIL


def _trial_number(trials: Sequence[FrozenTrial], number: int) -> FrozenTrial:
    """The trial numbered ``number`` (trials come sorted by their consecutive numbers)."""
    if number < len(trials) and trials[number].number == number:
        return trials[number]
    return next(t for t in trials if t.number == number)


def _genome_of(trial: FrozenTrial) -> Genome:
    return Genome.from_json(trial.system_attrs[GENOME_ATTR])


def _preferred(open_slots: Sequence[OpenSlot], rng: np.random.Generator) -> list[OpenSlot]:
    """Open slots, earliest phase and step first; ties in random order (spreads workers)."""
    noise = rng.random(len(open_slots))
    order = sorted(range(len(open_slots)), key=lambda i: (open_slots[i].slot.preference, noise[i]))
    return [open_slots[i] for i in order]


class StopWhenFinished:
    """Study callback: stop ``study.optimize`` once the ParticleSampler's search is finished.

    ``study.optimize(objective, callbacks=[StopWhenFinished()])`` runs a worker until every
    slot is decided; other samplers are left alone.
    """

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        sampler = study.sampler
        if not isinstance(sampler, ParticleSampler):
            return
        if trial.system_attrs.get(IDLE_ATTR) == FINISHED_REASON or sampler.is_finished(study):
            study.stop()
