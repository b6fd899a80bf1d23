"""The particle GA as a distributed Optuna sampler.

* :class:`ParticleSampler` - the sampler; :class:`StopWhenFinished` - the callback that ends
  a worker once every slot is decided.
* :func:`derive_state` - the GA state as a pure function of the trials, and its parts.
* :class:`Slot` / :class:`GASizes` - the units of GA work and the GA's shape.
"""

from optuna_nos.sampler._sampler import (
    BEHAVIOUR_REDRAWS,
    FINISHED_REASON,
    RETRY_REASON,
    ParticleSampler,
    StopWhenFinished,
    worker_id,
)
from optuna_nos.sampler._slots import GASizes, Slot
from optuna_nos.sampler._state import (
    DeriveMemo,
    GAState,
    OpenSlot,
    ParticleState,
    Selection,
    SlotState,
    TrialRecord,
    derive_state,
)
from optuna_nos.study.stored import GA_ATTR, GA_CONFIG_ATTR, SLOT_ATTR, WORKER_ATTR

__all__ = [
    "BEHAVIOUR_REDRAWS",
    "DeriveMemo",
    "FINISHED_REASON",
    "GA_ATTR",
    "GA_CONFIG_ATTR",
    "RETRY_REASON",
    "SLOT_ATTR",
    "WORKER_ATTR",
    "GASizes",
    "GAState",
    "OpenSlot",
    "ParticleSampler",
    "ParticleState",
    "Selection",
    "Slot",
    "SlotState",
    "StopWhenFinished",
    "TrialRecord",
    "derive_state",
    "worker_id",
]
