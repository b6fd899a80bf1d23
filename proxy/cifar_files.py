"""CIFAR-10/100 batches read from their on-disk python format without running any code.

The official "python version" files are pickles. A plain ``pickle.load`` (what torchvision's
readers do) would run whatever a tampered file asks for, so this reader admits only the
globals a genuine batch needs (numpy array reconstruction) and refuses everything else.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from optuna_nos.errors import NOSError

__all__ = ["load_cifar_arrays"]


_SAFE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
})


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise NOSError(f"refusing to unpickle {module}.{name}: a CIFAR batch holds only "
                           "arrays, lists and strings")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NOSError(f"missing {path} (nothing is downloaded here: put the data set there)")
    with path.open("rb") as handle:
        loaded = _ArrayUnpickler(io.BytesIO(handle.read()), encoding="latin1").load()
    if not isinstance(loaded, dict):
        raise NOSError(f"{path} does not hold a CIFAR batch dict")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value
            for key, value in loaded.items()}


_CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], "test", "meta", "fine_labels",
                 "fine_label_names"),
}


def load_cifar_arrays(
    name: str, root: str | os.PathLike[str], split: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """(images uint8 N x 32 x 32 x 3, labels int64 N, number of classes) of a CIFAR split."""
    if name not in _CIFAR_FILES:
        raise NOSError(f"unknown CIFAR data set {name!r}; expected cifar10 or cifar100")
    if split not in ("train", "test"):
        raise NOSError(f"CIFAR split must be 'train' or 'test', got {split!r}")
    folder, train_files, test_file, meta_file, label_key, names_key = _CIFAR_FILES[name]
    base = Path(root) / folder
    images, labels = [], []
    for file_name in train_files if split == "train" else [test_file]:
        batch = _read_batch(base / file_name)
        data = np.asarray(batch.get("data"))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise NOSError(f"{base / file_name}: 'data' must be uint8 N x 3072, got "
                           f"{data.dtype} {data.shape}")
        batch_labels = np.asarray(batch.get(label_key), dtype=np.int64)
        if batch_labels.shape != (data.shape[0],):
            raise NOSError(f"{base / file_name}: {label_key!r} must hold one label per image")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    num_classes = len(_read_batch(base / meta_file)[names_key])
    all_labels = np.concatenate(labels)
    if all_labels.size and (all_labels.min() < 0 or all_labels.max() >= num_classes):
        raise NOSError(f"{base}: labels must lie in 0..{num_classes - 1}")
    return np.ascontiguousarray(np.concatenate(images)), all_labels, num_classes
