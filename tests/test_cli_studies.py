"""Every bundled study config, and every search-space variant, runs end to end under the CLI.

Each run is ``optuna-nos run`` in a real subprocess on a bundled config whose GA sizes and
proxy protocol are shrunk to a few steps (the CIFAR-10 configs train on the bundled digits
instead, since tests have no CIFAR-10), and must finish with no failed trial, every genome in
the config's variant.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import optuna
import pytest

from optuna_nos.space.parse import parse_equation
from optuna_nos.space.variants import conforms
from testkit.process import run_cli

STUDIES = Path(__file__).resolve().parents[1] / "studies"
BUNDLED = sorted(path.name for path in STUDIES.glob("*.toml"))

TINY_GA = {
    "n_particles": 1,
    "init_factor": 2,
    "steps": 1,
    "mutations": 1,
    "max_redraws": 2,
    "seed": 0,
}
TINY_FIDELITY = {
    "width": 2,
    "total_steps": 8,
    "warmup_steps": 1,
    "final_epochs": 1,
    "final_steps_per_epoch": 2,
    "screen_epochs": 1,
    "screen_steps_per_epoch": 2,
}
TINY_OBJECTIVE = {
    "target": "proxy.tasks:digits",
    "device": "cpu",
    "stage1_lrs": [0.01],
    "stage2_lrs": [],
    "stage1_fail_below": 0.0,
    "screen_fail_below": 0.0,
}

CASES = [(name, None) for name in BUNDLED] + [("lr_schedules.toml", "nesterov")]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml(data: dict[str, Any]) -> str:
    """Sections as TOML text; ``init`` and ``evolution`` become sub-tables."""
    out = []
    for section, table in data.items():
        subtables = {k: v for k, v in table.items() if k in ("init", "evolution")}
        out.append(f"[{section}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in table.items() if k not in subtables]
        for key, sub in subtables.items():
            out.append(f"[{section}.{key}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in sub.items()]
    return "\n".join(out) + "\n"


def _tiny(name: str, base: str | None) -> dict[str, Any]:
    """The bundled config ``name`` with tiny GA sizes and protocol, on the digits proxy."""
    data = tomllib.loads((STUDIES / name).read_text())
    if base is not None:
        data["study"]["lr_schedule_base"] = base
    data["ga"] = TINY_GA
    objective = {**TINY_OBJECTIVE}
    for fidelity in ("init", "evolution"):
        table = data.get("objective", {}).get(fidelity, {})
        objective[fidelity] = {**table, **TINY_FIDELITY}
    data["objective"] = objective
    return data


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize(("name", "base"), CASES)
def test_bundled_config_runs_end_to_end(name: str, base: str | None, tmp_path: Path) -> None:
    data = _tiny(name, base)
    config = tmp_path / name
    config.write_text(_toml(data))
    done = run_cli("run", "--config", str(config), "--no-baselines", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    study = optuna.load_study(
        study_name="optuna-nos", storage=f"sqlite:///{tmp_path / 'optuna-nos.db'}"
    )
    trials = study.get_trials(deepcopy=False)
    assert trials
    assert all(t.state != optuna.trial.TrialState.FAIL for t in trials), [
        t.user_attrs.get("nos.reason") for t in trials
    ]
    space = data["study"].get("space", "paper")
    variant = f"lr_schedule:{base}" if base is not None else space
    for trial in trials:
        genome = parse_equation(trial.user_attrs["equation"])
        assert conforms(genome, variant), trial.user_attrs["equation"]


@pytest.mark.parametrize("paper_mode", [False, True])
def test_export_bakes_in_the_study_settings(
    paper_mode: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``optuna-nos export`` writes the study's arithmetic: paper mode's float32 EMA terms."""
    from optuna_nos.cli.commands import main
    from optuna_nos.study.config import CONFIG_ATTR

    storage = f"sqlite:///{tmp_path / 'export.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr(CONFIG_ATTR, {"study": {"paper_mode": paper_mode}})
    trial = study.ask()
    trial.set_user_attr("genome", parse_equation("None ~ id(id(lam hat))").to_json())
    study.tell(trial, 0.5)
    assert main(["export", "0", "--storage", storage, "--study", "s"]) == 0
    source = capsys.readouterr().out
    assert f"FLOAT32_EMA = {paper_mode}" in source
    assert f"NAN_SIGN = {paper_mode}" in source
