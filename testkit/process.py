"""Running the ``optuna-nos`` command in subprocesses, as users run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

#: The repository root (holds ``testkit``, ``optuna_nos``, ``proxy``, ...).
ROOT = Path(__file__).resolve().parent.parent

#: Modules a fork server imports once, so that each sampler worker process starts in
#: milliseconds.
SAMPLER_PRELOAD = [
    "optuna",
    "optuna_nos.sampler",
    "optuna_nos.optim.integrity",
    "optuna_nos.optim.evolve",
    "optuna_nos.study.storage",
    "optuna_nos.study.suggest",
]


def cli_env() -> dict[str, str]:
    """The environment for a subprocess: the repository root first on PYTHONPATH (so
    ``testkit.objectives`` imports), one OpenMP thread, the Agg matplotlib backend."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {
        **os.environ,
        "PYTHONPATH": path,
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
    }


def cli_command(*args: str) -> list[str]:
    """The argv of ``optuna-nos ARGS`` run by this interpreter."""
    return [sys.executable, "-m", "optuna_nos.cli.commands", *args]


def run_argv(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in ``cwd`` with :func:`cli_env` to its end; its exit status and text output."""
    return subprocess.run(
        argv,
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``optuna-nos ARGS`` in ``cwd`` to its end; its exit status and text output."""
    return run_argv(cli_command(*args), cwd, timeout)


def run_args(config: Path, url: str, study: str) -> list[str]:
    """The arguments of ``optuna-nos run``: study ``study`` of ``config`` in ``url``, no
    baselines."""
    return ["run", "--config", str(config), "--storage", url, "--study", study, "--no-baselines"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
