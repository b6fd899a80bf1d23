"""Hostile CIFAR files (read with checksums off, as hand-made data is): one NOSError naming the
file, and no allocation beyond the file's bounds before validation.

The files are built the way a tampered pickle would be: empty, truncated, an array
reconstructed with a 1 TiB shape, an object array, and a 0.5 MB file whose repeated
references would expand to 128 MB of integers.
"""

from __future__ import annotations

import pickle
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optuna_nos.core.errors import NOSError
from proxy.cifar_files import load_cifar_arrays

_reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own reconstructor


class _Reduce:
    """Pickles as ``function(*args)`` followed by BUILD with ``state`` (if any)."""

    def __init__(self, *reduced: Any) -> None:
        self.reduced = reduced

    def __reduce__(self) -> tuple[Any, ...]:
        return self.reduced


def _cifar10(root: Path, batch_1: bytes) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    good = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}
    for i in range(2, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(good))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a"] * 10}))
    (folder / "data_batch_1").write_bytes(batch_1)
    return folder / "data_batch_1"


GOOD = pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, protocol=2)
TERABYTE = 2**40
HOSTILE = {
    "empty": b"",
    "truncated": GOOD[: len(GOOD) // 2],
    "not a pickle": b"\x00\x01 not a pickle at all",
    "1 TiB shape at reconstruction": pickle.dumps(
        {"data": _Reduce(_reconstruct, (np.ndarray, (TERABYTE,), b"B"))}, protocol=2
    ),
    "1 TiB object array at BUILD": pickle.dumps(
        {
            "data": _Reduce(
                _reconstruct,
                (np.ndarray, (0,), b"b"),
                (1, (TERABYTE // 8,), np.dtype("O"), False, []),
            )
        },
        protocol=2,
    ),
    "data as nested lists": pickle.dumps({"data": [[0] * 3072] * 2, "labels": [0, 1]}),
    "labels of lists": pickle.dumps(
        {"data": np.zeros((2, 3072), np.uint8), "labels": [[0] * 1000] * 2}
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_file_is_one_nos_error_naming_it(case: str, tmp_path: Path) -> None:
    payload = HOSTILE[case]
    assert len(payload) < 20_000
    path = _cifar10(tmp_path, payload)
    with pytest.raises(NOSError) as caught:
        load_cifar_arrays("cifar10", tmp_path, "train")
    message = str(caught.value)
    assert str(path) in message and "\n" not in message


def test_repeated_references_are_refused_before_they_expand(tmp_path: Path) -> None:
    row = [0] * 250_000
    payload = pickle.dumps({"data": [row] * 64, "labels": [0] * 64})  # 0.5 MB -> 128 MB
    assert len(payload) < 600_000
    path = _cifar10(tmp_path, payload)
    tracemalloc.start()
    try:
        with pytest.raises(NOSError, match="'data' must be") as caught:
            load_cifar_arrays("cifar10", tmp_path, "train")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(caught.value)
    assert peak < 16 * 2**20


def test_a_genuine_layout_still_reads(tmp_path: Path) -> None:
    _cifar10(tmp_path, GOOD)
    images, labels, classes = load_cifar_arrays("cifar10", tmp_path, "train")
    assert images.shape == (10, 32, 32, 3) and labels.tolist() == [0, 1] * 5 and classes == 10
    assert type(images) is np.ndarray
