"""Artifact locations: a shared directory, or an S3 bucket on a real S3-compatible server
(moto's standalone server, over HTTP), and the warning for relative paths."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from optuna_nos.core.errors import NOSError
from optuna_nos.space.parse import parse_equation
from optuna_nos.study import artifacts
from optuna_nos.study.artifact_store import check_artifact_location, open_artifact_store
from testkit.process import free_port

GENOME = parse_equation("None ~ (v hat) / (sqrt(|s hat|))")


@pytest.fixture()
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server on a free port, with boto3 pointed at it by the usual variables."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                boto3.client("s3").list_buckets()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("moto S3 server did not start")
                time.sleep(0.3)
        yield endpoint
    finally:
        server.terminate()
        server.wait(30)


def _trial() -> tuple[optuna.Study, optuna.Trial]:
    study = optuna.create_study()
    return study, study.ask()


def test_s3_bucket_round_trip(s3_endpoint: str, tmp_path: Path) -> None:
    import boto3
    from optuna.artifacts import download_artifact, get_all_artifact_meta

    boto3.client("s3").create_bucket(Bucket="nos-artifacts")
    study, trial = _trial()
    artifact_id = artifacts.upload_schedule_artifact(
        trial, GENOME, "s3://nos-artifacts", lr=0.1, total_steps=50, warmup_steps=5
    )
    assert artifact_id is not None
    [meta] = get_all_artifact_meta(trial)
    assert meta.artifact_id == artifact_id and meta.mimetype == "image/png"
    stored = boto3.client("s3").get_object(Bucket="nos-artifacts", Key=artifact_id)
    body = stored["Body"].read()
    assert body.startswith(b"\x89PNG")
    downloaded = tmp_path / "out.png"
    download_artifact(
        artifact_store=open_artifact_store("s3://nos-artifacts"),
        artifact_id=artifact_id,
        file_path=str(downloaded),
    )
    assert downloaded.read_bytes() == body


def test_missing_bucket_warns_once_and_trials_go_on(
    s3_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="optuna_nos.study.artifacts")
    for _ in range(2):
        _, trial = _trial()
        assert (
            artifacts.upload_schedule_artifact(
                trial, GENOME, "s3://no-such-bucket", lr=0.1, total_steps=20
            )
            is None
        )
    assert sum("cannot write artifacts" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("location", ["s3://", "s3://Bad_Bucket", "s3://bucket/prefix"])
def test_bad_s3_location(location: str) -> None:
    pytest.importorskip("boto3")
    with pytest.raises(NOSError, match="s3://BUCKET"):
        check_artifact_location(location, "sqlite:///x.db")


@pytest.mark.parametrize(
    ("location", "storage", "warns"),
    [
        ("artifacts", "postgresql://u@db.example/nos", True),
        ("artifacts", "grpc://proxy:13000", True),
        ("artifacts", "sqlite:///nos.db", False),
        ("/shared/artifacts", "postgresql://u@db.example/nos", False),
        (None, "postgresql://u@db.example/nos", False),
    ],
)
def test_relative_path_with_remote_storage_warns(
    location: str | None, storage: str, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="optuna_nos.study.artifact_store")
    check_artifact_location(location, storage)
    assert any("is relative" in r.message for r in caplog.records) == warns


def test_directory_location_is_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    _, trial = _trial()
    assert (
        artifacts.upload_schedule_artifact(trial, GENOME, str(target), lr=0.1, total_steps=20)
        is not None
    )
    assert len(os.listdir(target)) == 1
