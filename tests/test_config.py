"""Study config validation: every error names the key and what it allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_nos.core.errors import NOSError
from optuna_nos.study.config import load_config, parse_config


def test_defaults_are_the_paper_sizes() -> None:
    config = parse_config({})
    assert (
        config.ga.n_particles,
        config.ga.init_factor,
        config.ga.steps,
        config.ga.mutations,
        config.ga.max_redraws,
    ) == (50, 10, 5, 7, 4)
    assert config.ga.elitism is False and config.space == "paper"
    assert config.settings.paper_mode is False


def test_objective_options_pass_through() -> None:
    config = parse_config({"objective": {"target": "proxy.tasks:cifar10", "data_root": "/d"}})
    assert config.objective_target == "proxy.tasks:cifar10"
    assert config.objective_options == {"data_root": "/d"}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"gaa": {}}, "unknown config section 'gaa'"),
        ({"ga": {"n_particle": 3}}, "unknown config key 'ga.n_particle'; allowed: n_particles"),
        ({"ga": {"n_particles": 0}}, "'ga.n_particles' = 0 is not allowed"),
        ({"ga": {"steps": "5"}}, "'ga.steps' must be an integer"),
        ({"ga": {"elitism": 1}}, "'ga.elitism' must be true/false"),
        ({"ga": {"mutations": True}}, "'ga.mutations' must be an integer"),
        ({"study": {"space": "adam"}}, "allowed: paper, adam_variants, lr_schedule"),
        ({"study": {"unary_root_decay_prob": 1.5}}, "'study.unary_root_decay_prob'"),
        ({"objective": {"target": "proxy.tasks"}}, "'objective.target' must look like"),
        ({"workers": {"heartbeat_interval": 10, "grace_period": 5}}, "'workers.grace_period'"),
        ({"ga": []}, "config section 'ga' must be a table"),
    ],
)
def test_errors_name_the_key(data: dict, fragment: str) -> None:
    with pytest.raises(NOSError, match=None) as info:
        parse_config(data)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(NOSError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[ga\nn_particles = 3\n")
    with pytest.raises(NOSError, match="not valid TOML"):
        load_config(bad)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(NOSError, match="not UTF-8"):
        load_config(binary)


def test_bundled_configs_validate() -> None:
    studies = Path(__file__).resolve().parents[1] / "studies"
    names = sorted(p.name for p in studies.glob("*.toml"))
    assert {
        "paper_cifar10.toml",
        "adam_variants.toml",
        "lr_schedules.toml",
        "cpu_digits.toml",
        "cpu_mnist1d.toml",
    } <= set(names)
    for path in studies.glob("*.toml"):
        load_config(path)
