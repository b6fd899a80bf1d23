"""Writing a whole text file at once: readers see the old file or the new one, never a part.

The text goes to a temporary file in the target's folder, is flushed to disk, and is then
linked (refusing an existing file) or renamed (``force``) onto the target. A failure at any
point leaves the target as it was and removes the temporary file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from optuna_nos.core.errors import NOSError

__all__ = ["write_text_file"]


def write_text_file(path: str | os.PathLike[str], text: str, *, force: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path``; an existing file is replaced only with ``force``."""
    target = Path(path)
    if not force and target.exists():
        raise NOSError(f"{str(target)!r} exists; pass --force to overwrite it")
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, kept on success
            "w",
            encoding="utf-8",
            dir=target.parent,
            prefix=f".{target.name}.",
            suffix=".tmp",
            delete=False,
        )
    except OSError as exc:
        raise NOSError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(handle.name, target)
        else:
            os.link(handle.name, target)  # fails if the target appeared meanwhile
    except FileExistsError:
        raise NOSError(f"{str(target)!r} exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise NOSError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    finally:
        if os.path.lexists(handle.name):
            os.unlink(handle.name)
