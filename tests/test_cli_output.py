"""What the command prints and writes from stored data: escaped attrs, tolerated malformed
baselines, ``export -o`` written whole or not at all, and artifacts that never fail a trial."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import optuna
import pytest

from optuna_nos.cli.commands import main
from optuna_nos.space.parse import parse_equation
from optuna_nos.study.artifacts import upload_schedule_artifact

ADAM = "None ~ (v hat) / (sqrt(|s hat|))"
HOSTILE = "evil\x1b[2J\nsecond line\u2028\r"


@pytest.fixture()
def storage(tmp_path: Path) -> str:
    """A study with one finished trial whose text attrs hold control characters."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            value=0.5,
            user_attrs={
                "genome": parse_equation(ADAM).to_json(),
                "slot": HOSTILE,
                "equation": HOSTILE,
                "fidelity": HOSTILE,
                "nos.reason": HOSTILE,
                "mutation": {"kind": HOSTILE, "node": "n1", "before": "a", "after": HOSTILE},
            },
        )
    )
    study.set_user_attr(
        "nos.baselines",
        {"adam": {"init": 0.5, "evolution": "x"}, "sgd": 0.3, "nest\x1b": {"init": [1]}},
    )
    return url


@pytest.mark.parametrize("argv", [["leaderboard"], ["show", "0"]])
def test_stored_text_is_printed_escaped(
    argv: list[str], storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--storage", storage, "--study", "s"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\u2028" not in out
    assert "second line" not in out.split("evil")[0]
    assert all("second line" in line for line in out.splitlines() if "evil" in line)
    assert "evil\\x1b[2J\\nsecond line\\u2028\\r" in out


def test_malformed_baselines_are_skipped(storage: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "--storage", storage, "--study", "s"]) == 0
    baselines = [
        line.split() for line in capsys.readouterr().out.splitlines() if "baseline" in line
    ]
    assert baselines == [["-", "-", "0.5000", "-", "baseline", "adam"]]  # evolution, init


def _export(storage: str, path: Path, *extra: str) -> int:
    return main(["export", "0", "--storage", storage, "--study", "s", "-o", str(path), *extra])


def test_export_keeps_an_existing_file_without_force(
    storage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "mine.py"
    target.write_text("my work\n")
    assert _export(storage, target) == 2
    assert "--force" in capsys.readouterr().err
    assert target.read_text() == "my work\n"
    assert _export(storage, target, "--force") == 0
    assert "class EvolvedOptimizer" in target.read_text()


def test_a_failed_export_leaves_the_old_file_whole(
    storage: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "mine.py"
    target.write_text("my work\n")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    assert _export(storage, target, "--force") == 2
    assert "No space left on device" in capsys.readouterr().err
    assert target.read_text() == "my work\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.py", "s.db"]


# -- artifacts -----------------------------------------------------------------------------


def _upload(artifact_dir: str) -> str | None:
    study = optuna.create_study()
    trial = study.ask()
    return upload_schedule_artifact(
        trial, parse_equation(ADAM), artifact_dir, lr=0.1, total_steps=20
    )


def test_a_nul_in_the_artifact_dir_does_not_fail_the_trial(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        assert _upload("art\x00ifacts") is None
    assert "trials continue without them" in caplog.text


@pytest.mark.parametrize("spelling", ["~/art", "$HOME/art", "${HOME}/art"])
def test_home_is_expanded(spelling: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    assert _upload(spelling) is not None
    assert list(cwd.iterdir()) == []
    assert any(path.is_file() for path in (home / "art").rglob("*"))


def test_a_dangling_symlink_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    link = tmp_path / "art"
    link.symlink_to(tmp_path / "gone")
    with caplog.at_level(logging.WARNING):
        assert _upload(str(link)) is None
    assert "symbolic link to the missing" in caplog.text
    assert "File exists" not in caplog.text
