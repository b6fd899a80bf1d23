"""The optuna-nos command, run as users run it: real subprocesses and real storages."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pytest

from optuna_nos.cli.commands import main
from optuna_nos.sampler import ParticleSampler
from optuna_nos.study.storage import normalize_url
from testkit.config import FAST_CONFIG, FAST_SIZES
from testkit.dashboard import dashboard, get_json
from testkit.process import cli_command, cli_env, run_cli


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(FAST_CONFIG + extra)
    return path


def _states(storage: str, study: str) -> list[optuna.trial.TrialState]:
    loaded = optuna.load_study(study_name=study, storage=normalize_url(storage))
    return [t.state for t in loaded.trials]


def _finished(storage: str, study: str) -> bool:
    loaded = optuna.load_study(study_name=study, storage=normalize_url(storage))
    sampler = ParticleSampler(**FAST_SIZES)  # type: ignore[arg-type]
    return sampler.is_finished(loaded)


@pytest.mark.subprocess
def test_run_show_leaderboard_export(tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = run_cli("run", "--config", str(config), "--no-baselines", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "leaderboard of study 'optuna-nos'" in done.stdout
    storage = f"sqlite:///{tmp_path / 'optuna-nos.db'}"
    assert _finished(storage, "optuna-nos")
    assert optuna.trial.TrialState.RUNNING not in _states(storage, "optuna-nos")

    shown = run_cli("show", "0", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "paper:" in shown.stdout and "latex:" in shown.stdout and "lineage:" in shown.stdout

    board = run_cli("leaderboard", "--top", "3", cwd=tmp_path)
    assert board.returncode == 0 and board.stdout.count("~") == 3

    study = optuna.load_study(study_name="optuna-nos", storage=storage)
    best = study.best_trial.number
    out = tmp_path / "found.py"
    exported = run_cli("export", str(best), "-o", str(out), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    text = out.read_text()
    assert f"trial {best}" in text and "class EvolvedOptimizer(torch.optim.Optimizer)" in text

    again = run_cli("run", "--config", str(config), "--no-baselines", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(_states(storage, "optuna-nos")) == len(study.trials)  # finished: nothing new


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["leaderboard", "--storage", "notaurl"], "cannot parse storage URL"),
        (["leaderboard", "--storage", "postgresql://u:hunter2@127.0.0.1:1/x"], "unreachable"),
        (["worker", "--storage", "sqlite:///{tmp}/x.db", "--study", "missing"], "does not exist"),
        (["run", "--config", "{tmp}/missing.toml"], "cannot read config file"),
        (
            [
                "init",
                "--storage",
                "sqlite:///{tmp}/x.db",
                "--study",
                "s",
                "--config",
                "{tmp}/bad.toml",
            ],
            "unknown config key 'ga.n_particle'",
        ),
        (["show", "99", "--storage", "sqlite:///{tmp}/x.db", "--study", "s"], "does not exist"),
        (["frobnicate"], "invalid choice"),
        (["run", "--n-trials", "abc"], "expected an integer >= 1"),
        (["worker", "--study", "s"], "required"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.toml").write_text("[ga]\nn_particle = 3\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(args))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("optuna-nos: error: ")
    assert fragment in err
    assert "hunter2" not in err


def test_worker_without_config_says_how_to_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 'x.db'}"
    optuna.create_study(study_name="bare", storage=storage, direction="maximize")
    assert main(["worker", "--storage", storage, "--study", "bare"]) == 2
    assert "optuna-nos init" in capsys.readouterr().err


@pytest.mark.subprocess
def test_console_script_reports_errors(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "optuna-nos"
    done = subprocess.run(
        [str(script), "leaderboard", "--storage", "notaurl"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1


@pytest.mark.subprocess
@pytest.mark.slow
def test_init_and_two_workers_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    config = _config(tmp_path)
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "optuna.cli",
            "create-study",
            "--storage",
            normalize_url(postgres_url),
            "--study-name",
            "cli",
            "--direction",
            "maximize",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    init = run_cli(
        "init", "--storage", postgres_url, "--study", "cli", "--config", str(config), cwd=tmp_path
    )
    assert init.returncode == 0, init.stderr
    workers = [
        subprocess.Popen(
            cli_command("worker", "--storage", postgres_url, "--study", "cli"),
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    assert _finished(postgres_url, "cli")
    states = _states(postgres_url, "cli")
    assert optuna.trial.TrialState.RUNNING not in states
    logged = "".join(err for _, err in outputs)
    assert logged.count("trial ") >= len(states) - 2  # one line per trial (idle ones aside)


@pytest.mark.subprocess
@pytest.mark.slow
def test_dashboard_serves_attrs_and_artifacts(tmp_path: Path) -> None:
    config = _config(tmp_path, '\n[artifacts]\ndir = "art"\n')
    done = run_cli("run", "--config", str(config), "--no-baselines", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with dashboard(tmp_path) as base:
        studies = get_json(f"{base}/api/studies")
        study_id = studies["study_summaries"][0]["study_id"]
        detail = get_json(f"{base}/api/studies/{study_id}")
        trial = next(t for t in detail["trials"] if t["state"] == "Complete")
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert {"equation", "equation_readable", "fidelity", "slot"} <= set(attrs)
        assert attrs["equation"].split(" ~ ")[0] in {"None", "Mom", "Nest"}
        artifact = trial["artifacts"][0]
        url = f"{base}/artifacts/{study_id}/{trial['trial_id']}/{artifact['artifact_id']}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bundled_default_config_loads() -> None:
    from optuna_nos.cli.commands import _default_config_path
    from optuna_nos.study.config import load_config

    config = load_config(_default_config_path())
    assert config.objective_target == "proxy.tasks:mnist1d"


@pytest.mark.subprocess
@pytest.mark.slow
def test_run_without_a_config_uses_the_bundled_default(tmp_path: Path) -> None:
    done = run_cli("run", "--n-trials", "2", "--no-baselines", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    storage = f"sqlite:///{tmp_path / 'optuna-nos.db'}"
    study = optuna.load_study(study_name="optuna-nos", storage=storage)
    assert study.user_attrs["nos.config"]["objective"]["target"] == "proxy.tasks:mnist1d"
    assert len(study.trials) == 2
    assert optuna.trial.TrialState.RUNNING not in _states(storage, "optuna-nos")
