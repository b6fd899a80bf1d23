"""Every number of a study config has a range, named in the error; only plain values parse.

The ranges are checked at both ends; values the red team found (2,000,000 particles, a
heartbeat of 10^10 s, a grace period of 10^14 s) are refused with the allowed range, and
nesting, datetimes and NaN give one NOSError instead of RecursionError, TypeError or a
config that compares unequal to itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from optuna_nos.core.errors import NOSError
from optuna_nos.study.config import (
    GA_RANGES,
    MAX_DEPTH,
    MAX_PHASE_SLOTS,
    WORKER_RANGES,
    load_config,
    parse_config,
)

RANGES = [("ga", key, low, high) for key, (low, high) in GA_RANGES.items()] + [
    ("workers", key, low, high) for key, (low, high) in WORKER_RANGES.items()
]


def _with(section: str, key: str, value: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ga": {"n_particles": 2, "init_factor": 2, "steps": 1, "mutations": 1},
        "workers": {"heartbeat_interval": 1, "grace_period": 86_400},
    }
    data[section][key] = value
    return data


@pytest.mark.parametrize(("section", "key", "low", "high"), RANGES)
def test_each_integer_is_accepted_at_its_bounds_and_refused_beyond(
    section: str, key: str, low: int, high: int
) -> None:
    for edge in (low, high):
        parse_config(_with(section, key, edge))
    for beyond in (low - 1, high + 1):
        with pytest.raises(NOSError, match=rf"'{section}\.{key}'.*{low}\.\.{high}"):
            parse_config(_with(section, key, beyond))


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("ga", "n_particles", 2_000_000),
        ("workers", "heartbeat_interval", 10**10),
        ("workers", "grace_period", 10**14),
        ("ga", "seed", 4294967296),
    ],
)
def test_the_red_teams_values_are_refused(section: str, key: str, value: int) -> None:
    with pytest.raises(NOSError, match=f"{section}.{key}"):
        parse_config(_with(section, key, value))


def test_the_number_of_trials_of_a_phase_is_bounded() -> None:
    data = {"ga": {"n_particles": 10_000, "init_factor": 1_000}}
    with pytest.raises(NOSError, match=f"n_particles \\* init_factor.*{MAX_PHASE_SLOTS}"):
        parse_config(data)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_is_bounded_in_tables_from_storage() -> None:
    """The config table is level 0, [objective] level 1, its key x level 2."""
    parse_config({"objective": {"x": _nested(MAX_DEPTH - 2)}})
    with pytest.raises(NOSError, match="nests more than"):
        parse_config({"objective": {"x": _nested(MAX_DEPTH - 1)}})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[objective]\nx = " + "[" * 1000 + "]" * 1000 + "\n", "too deeply"),
        ("[objective]\nx = " + "{a = " * 1000 + "1" + "}" * 1000 + "\n", "too deeply"),
        ("[objective]\nx = " + "[" * 40 + "]" * 40 + "\n", "nests more than"),
        ("[objective]\nwhen = 1979-05-27T07:32:00Z\n", "'objective.when' is a datetime"),
        ("[objective]\nday = 1979-05-27\n", "'objective.day' is a date"),
        ("[objective]\nx = nan\n", "'objective.x' = nan"),
        ("[objective]\nx = [1.0, -inf]\n", "'objective.x[1]' = -inf"),
        ("[objective]\nx = 9223372036854775807\ny = -9223372036854775808\n", "'objective.y'"),
        ('[artifacts]\ndir = "a\\u0000b"\n', "NUL"),
    ],
)
def test_values_that_json_cannot_hold_alike_are_refused(
    text: str, fragment: str, tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(NOSError) as caught:
        load_config(path)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_stored_config_equals_itself() -> None:
    config = parse_config({"objective": {"x": [1.5, 2], "t": {"a": "b"}}})
    assert parse_config(json.loads(config.to_json())).raw == config.raw


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (
            {"init": {"width": 10**6}},
            "'objective.init.width' = 1000000 is not allowed; allowed: an integer in 1..4096",
        ),
        ({"evolution": {"total_steps": 10**12}}, "'objective.evolution.total_steps'"),
        ({"batch_size": 10**9}, "'objective.batch_size'"),
        ({"seed": 2**40}, "'objective.seed'"),
        ({"split_seed": -1}, "'objective.split_seed'"),
        ({"cpu_threads": 0}, "'objective.cpu_threads'"),
        ({"final_stop_epoch": 10**10}, "'objective.final_stop_epoch'"),
    ],
)
def test_the_objective_bounds_its_integers(options: dict[str, Any], fragment: str) -> None:
    from proxy.tasks import digits

    config = parse_config({"objective": {"target": "proxy.tasks:digits", **options}})
    with pytest.raises(NOSError) as caught:
        digits(config)
    assert fragment in str(caught.value)
