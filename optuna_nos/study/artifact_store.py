"""Where trial artifacts go: a directory every worker shares, or an S3-compatible bucket.

The ``[artifacts] dir`` of a study config (``--artifact-dir``) is either a filesystem path
(an NFS or Lustre mount that every worker sees under the same path) or ``s3://BUCKET``,
stored with Optuna's ``Boto3ArtifactStore`` (needs ``pip install optuna-nos[s3]``). boto3
finds the endpoint and credentials the usual way: ``AWS_ENDPOINT_URL`` (for MinIO, Ceph and
other S3-compatible servers), ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` or a profile.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from optuna_nos.core.errors import NOSError

__all__ = ["STORE_ERRORS", "check_artifact_location", "local_folder", "open_artifact_store"]

_BUCKET = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/?")
_logger = logging.getLogger(__name__)
_clients: dict[str, Any] = {}


def _store_errors() -> tuple[type[BaseException], ...]:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return (OSError,)
    return (OSError, BotoCoreError, ClientError)


#: What writing an artifact may raise when its directory or bucket refuses it.
STORE_ERRORS = _store_errors()


def is_s3(location: str) -> bool:
    return location.strip().lower().startswith("s3://")


def local_folder(location: str) -> str:
    """A directory location with ``~`` and environment variables (``$HOME``) expanded."""
    return os.path.expandvars(os.path.expanduser(location))


def open_artifact_store(location: str) -> Any:
    """The Optuna artifact store at ``location``: ``s3://BUCKET`` or a directory (created)."""
    from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore

    if not is_s3(location):
        folder = local_folder(location)
        if os.path.islink(folder) and not os.path.exists(folder):
            raise FileNotFoundError(f"a symbolic link to the missing {os.readlink(folder)!r}")
        os.makedirs(folder, exist_ok=True)
        return FileSystemArtifactStore(folder)
    match = _BUCKET.fullmatch(location.strip())
    if match is None:
        raise NOSError(f"an S3 artifact location is s3://BUCKET (no key prefix), got {location!r}")
    try:
        import boto3
    except ImportError:
        raise NOSError(
            f"artifact location {location} needs boto3: pip install 'optuna-nos[s3]'"
        ) from None
    bucket = match["bucket"]
    if bucket not in _clients:
        _clients[bucket] = boto3.client("s3")
    return Boto3ArtifactStore(bucket, _clients[bucket])


def check_artifact_location(location: str | None, storage_url: str) -> None:
    """Check an artifact location before a worker starts: ``s3://BUCKET`` must parse and
    boto3 import (:class:`NOSError` otherwise); a relative path with a storage that is not
    a local SQLite file logs a warning, since workers on other hosts would each write to
    their own folder."""
    if location is None:
        return
    if is_s3(location):
        open_artifact_store(location)
        return
    if os.path.isabs(local_folder(location)):
        return
    if storage_url.strip().lower().startswith("sqlite:"):
        return
    _logger.warning(
        "artifact dir %r is relative: each worker writes it under its own working "
        "directory; give a shared absolute path or s3://BUCKET",
        location,
    )
