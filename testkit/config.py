"""Small study configs (TOML text) for running the ``optuna-nos`` command in tests and drills.

A config is the concatenation of tables: :func:`ga_table` (the fast GA of
:data:`FAST_SIZES`: 2 particles, 4 initial genomes, one step), :func:`workers_table` and
:func:`objective_table` (an objective of :mod:`testkit.objectives`).
"""

from __future__ import annotations

import json

#: GA sizes of the fast test study: 2 * 2 initial slots, 2 re-evaluations, 2 * 2 children.
FAST_SIZES: dict[str, int] = {
    "n_particles": 2,
    "init_factor": 2,
    "steps": 1,
    "mutations": 2,
    "max_redraws": 2,
}


def _table(name: str, values: dict[str, object]) -> str:
    lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join([f"\n[{name}]", *lines]) + "\n"


def ga_table(seed: int | str | None = 0, **sizes: int) -> str:
    """The ``[ga]`` table: :data:`FAST_SIZES` with ``sizes`` replacing some, and ``seed``
    (None: no seed; a string is written as it is, e.g. a ``{seed}`` placeholder)."""
    table = _table("ga", {**FAST_SIZES, **sizes})
    return table if seed is None else table + f"seed = {seed}\n"


def workers_table(heartbeat_interval: int, grace_period: int, max_retry: int | None = None) -> str:
    """The ``[workers]`` table (``max_retry`` left out when None)."""
    values: dict[str, object] = {
        "heartbeat_interval": heartbeat_interval,
        "grace_period": grace_period,
    }
    if max_retry is not None:
        values["max_retry"] = max_retry
    return _table("workers", values)


def objective_table(name: str, **options: object) -> str:
    """The ``[objective]`` table running ``testkit.objectives:NAME`` with ``options``."""
    return _table("objective", {"target": f"testkit.objectives:{name}", **options})


#: The fast GA with seed 0.
FAST_GA = ga_table()
#: The fast GA, workers with 2 s heartbeats, 5 s grace and 2 retries, the ``fast`` objective.
FAST_CONFIG = FAST_GA + workers_table(2, 5, 2) + objective_table("fast")
