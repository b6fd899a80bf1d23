"""A small finished study for dashboard checks, and optuna-dashboard serving it.

Used by ``tests/test_dashboard.py`` and ``tests/test_cli.py`` (through the HTTP API) and by
``bench/dashboard_screenshots.py`` (through a headless browser).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from testkit.config import ga_table, objective_table
from testkit.process import free_port, run_cli

SHOWCASE_CONFIG = (
    ga_table(steps=2, mutations=1) + objective_table("showcase") + '\n[artifacts]\ndir = "art"\n'
)


def run_showcase_study(folder: Path) -> subprocess.CompletedProcess[str]:
    """``optuna-nos run`` of :data:`SHOWCASE_CONFIG` in ``folder`` (sqlite, artifacts in art/)."""
    config = folder / "showcase.toml"
    config.write_text(SHOWCASE_CONFIG)
    return run_cli("run", "--config", str(config), cwd=folder)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@contextlib.contextmanager
def dashboard(folder: Path) -> Iterator[str]:
    """Serve ``folder``'s study with optuna-dashboard; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "optuna-dashboard"),
            f"sqlite:///{folder / 'optuna-nos.db'}",
            "--artifact-dir",
            str(folder / "art"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
