"""A small finished study for dashboard checks, and optuna-dashboard serving it.

Used by ``tests/test_dashboard.py`` (through the HTTP API) and by
``bench/dashboard_screenshots.py`` (through a headless browser).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
SHOWCASE_CONFIG = """
[ga]
n_particles = 2
init_factor = 2
steps = 2
mutations = 1
max_redraws = 2
seed = 0

[objective]
target = "cli_objective:showcase"

[artifacts]
dir = "art"
"""


def run_showcase_study(folder: Path) -> subprocess.CompletedProcess[str]:
    """``optuna-nos run`` of :data:`SHOWCASE_CONFIG` in ``folder`` (sqlite, artifacts in art/)."""
    config = folder / "showcase.toml"
    config.write_text(SHOWCASE_CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "optuna_nos.cli", "run", "--config",
                           str(config)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@contextlib.contextmanager
def dashboard(folder: Path) -> Iterator[str]:
    """Serve ``folder``'s study with optuna-dashboard; yields its base URL."""
    port = _free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "optuna-dashboard"),
         f"sqlite:///{folder / 'optuna-nos.db'}", "--artifact-dir", str(folder / "art"),
         "--host", "127.0.0.1", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                get_json(f"{base}/api/studies")
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("optuna-dashboard did not start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)
