"""Cluster launchers: the Slurm script's signal handling and requeue (with stand-ins for the
worker and scontrol), and the Kubernetes manifests against the Kubernetes API schemas."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SBATCH = DEPLOY / "slurm" / "workers.sbatch"

#: Stand-in worker: records its argv, then exits 0 at once, or sleeps until SIGTERM and exits
#: 130 as ``optuna-nos worker`` does.
FAKE_WORKER = """
import signal, sys, time
open(sys.argv[1], "w").write(" ".join(sys.argv[2:]))
if "{mode}" == "finish":
    sys.exit(0)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(130))
open(sys.argv[1] + ".ready", "w").close()
time.sleep(60)
sys.exit(1)
"""


def _run_sbatch(tmp_path: Path, mode: str) -> tuple[int, str, str]:
    worker = tmp_path / "worker.py"
    worker.write_text(FAKE_WORKER.format(mode=mode))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    argv_file = tmp_path / "argv"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "OPTUNA_NOS_BIN": f"{sys.executable} {worker} {argv_file}",
        "OPTUNA_NOS_STORAGE": "grpc://proxy:13000",
        "OPTUNA_NOS_STUDY": "s",
        "SLURM_ARRAY_JOB_ID": "77",
        "SLURM_ARRAY_TASK_ID": "3",
        "SLURM_JOB_ID": "80",
    }
    shell = subprocess.Popen(
        ["bash", str(SBATCH)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if mode == "preempt":
        deadline = time.monotonic() + 60
        while not Path(f"{argv_file}.ready").exists():
            assert time.monotonic() < deadline and shell.poll() is None
            time.sleep(0.05)
        shell.send_signal(signal.SIGTERM)  # what Slurm sends the batch shell
    out, _ = shell.communicate(timeout=60)
    log = tmp_path / "scontrol.log"
    assert argv_file.read_text() == "worker --storage grpc://proxy:13000 --study s"
    return shell.returncode, out, log.read_text() if log.exists() else ""


@pytest.mark.subprocess
def test_sigterm_reaches_the_worker_and_requeues_the_task(tmp_path: Path) -> None:
    code, out, scontrol = _run_sbatch(tmp_path, "preempt")
    assert code == 130
    assert "task 77_3 exited with status 130" in out
    assert scontrol.split() == ["requeue", "77_3"]


@pytest.mark.subprocess
def test_finished_search_ends_the_task(tmp_path: Path) -> None:
    code, out, scontrol = _run_sbatch(tmp_path, "finish")
    assert code == 0 and "status 0" in out and scontrol == ""


@pytest.mark.subprocess
def test_missing_storage_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTUNA_NOS_")}
    result = subprocess.run(
        ["bash", str(SBATCH)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0 and "OPTUNA_NOS_STORAGE" in result.stderr


@pytest.mark.parametrize("manifest", sorted((DEPLOY / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_match_the_api_schemas(manifest: Path) -> None:
    validate = pytest.importorskip("kubernetes_validate")
    yaml = pytest.importorskip("yaml")
    documents = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    assert documents
    version = validate.latest_version()
    for document in documents:
        validate.validate(document, version, strict=True)  # raises on any schema error
