"""What ``optuna-nos run`` shows on a terminal (a real pseudo-terminal), and its leaderboard."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import sys
import termios
from pathlib import Path

import optuna
import pytest

from optuna_nos.cli.progress import eta_seconds
from testkit.config import ga_table, objective_table
from testkit.process import cli_command, cli_env

CONFIG = ga_table() + objective_table("showcase")


def _run_on_terminal(*args: str, cwd: Path) -> str:
    """Run ``optuna-nos`` on a 120-column pseudo-terminal; its whole output."""
    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.chdir(cwd)
        os.execve(sys.executable, cli_command(*args), cli_env())
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode()


def test_eta_is_slots_left_times_mean_duration_per_fidelity() -> None:
    assert eta_seconds({"init": 2, "evolution": 3}, {"init": 1.0, "evolution": 4.0}) == (
        14.0,
        True,
    )
    assert eta_seconds({"init": 2, "evolution": 3}, {"init": 1.0}) == (5.0, False)
    assert eta_seconds({"init": 0, "evolution": 3}, {}) == (None, False)


@pytest.mark.slow
@pytest.mark.subprocess
def test_run_on_a_terminal_and_rerun(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    output = _run_on_terminal("run", "--config", "c.toml", cwd=tmp_path)
    # each log line starts a terminal line: after the bar was cleared (\r) or a newline
    for match in re.finditer(r"trial \d+ (init|p\d)", output):
        assert output[match.start() - 1] in "\r\n", output[match.start() - 80 : match.end()]
    assert "baselines: 100%" in output and "4/4" in output
    bars = re.findall(r"slots decided: (\d+)/(\d+) ", output)
    assert bars and bars[-1][0] == bars[-1][1] == "10"  # 4 initial + 2 x (1 + 1 x 2)
    assert re.search(r"\d+ trials, ETA (>= )?\d\d:\d\d", output)

    storage = f"sqlite:///{tmp_path / 'optuna-nos.db'}"
    study = optuna.load_study(study_name="optuna-nos", storage=storage)
    before = len(study.trials)
    rerun = _run_on_terminal("run", "--config", "c.toml", cwd=tmp_path)
    assert "the search is finished" in rerun
    assert len(optuna.load_study(study_name="optuna-nos", storage=storage).trials) == before

    board = rerun[rerun.index("leaderboard of study") :].splitlines()
    assert any("baseline adam" in line for line in board)
    equations = [line.split(None, 4)[-1] for line in board[2:] if re.match(r"\s+\d+ ", line)]
    assert equations and len(equations) == len(set(equations))  # one row per genome


def test_reasons_say_diverged_not_minus_inf() -> None:
    from proxy.protocol import _fmt

    assert _fmt([0.5, float("-inf"), float("nan")]) == "0.5000, diverged, diverged"


def test_help_explains_slots_and_trial_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    from optuna_nos.cli.commands import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top and "'p3 s1 c0'" in top and "'flip'" in top
    for command in ("init", "worker"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        assert "default sqlite" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["show", "--help"])
    assert "the trial's number" in capsys.readouterr().out


def test_transfer_help_names_the_suite(capsys: pytest.CaptureFixture[str]) -> None:
    from transfer.__main__ import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "transfer suite" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.subprocess
def test_racing_workers_score_the_baselines_once(postgres_url: str, tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "c.toml").write_text(CONFIG)
    env = cli_env()
    subprocess.run(
        cli_command("init", "--storage", postgres_url, "--study", "b", "--config", "c.toml"),
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    workers = [
        subprocess.Popen(
            cli_command("worker", "--storage", postgres_url, "--study", "b", "--n-trials", "1"),
            cwd=tmp_path,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    logs = [w.communicate(timeout=300)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], logs
    assert sum("scoring the baselines" in log for log in logs) == 1
    from optuna_nos.study.storage import normalize_url

    storage = normalize_url(postgres_url)
    study = optuna.load_study(study_name="b", storage=storage)
    assert set(study.user_attrs["nos.baselines"]) == {"adam", "sgd_nesterov"}
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["b"]
