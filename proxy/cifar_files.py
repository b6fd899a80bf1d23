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

from optuna_nos.core.errors import NOSError

__all__ = ["load_cifar_arrays"]


#: The largest CIFAR file read (CIFAR-100's training file is 158 MB).
MAX_FILE_BYTES = 256 * 2**20
#: The largest array a file may ask for (a CIFAR-100 training file holds 150 MiB of pixels).
MAX_ARRAY_BYTES = 256 * 2**20
#: The most images in one file and the most class names.
MAX_ROWS = 60_000
MAX_CLASSES = 1_000


def _check_array(shape: Any, dtype: Any) -> None:
    """Refuse an array of objects, a malformed shape, or one over :data:`MAX_ARRAY_BYTES`,
    before numpy allocates it."""
    if not isinstance(dtype, np.dtype):
        dtype = np.dtype(dtype)  # a type code such as b"b"; np.dtype allocates nothing
    if dtype.hasobject:
        raise NOSError("refusing an array of Python objects")
    if not isinstance(shape, tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise NOSError(f"refusing an array of malformed shape {shape!r}"[:200])
    size = dtype.itemsize
    for n in shape:
        size *= n
    if size > MAX_ARRAY_BYTES:
        raise NOSError(f"refusing an array of {size} bytes (at most {MAX_ARRAY_BYTES})")


class _BoundedArray(np.ndarray):
    """An ndarray whose unpickled state is checked before numpy allocates it."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise NOSError("refusing a malformed array")
        shape, dtype, _, data = state[-4:]
        _check_array(shape, dtype)
        if not isinstance(data, bytes):
            raise NOSError("refusing an array whose data is not bytes")
        super().__setstate__(state)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    _check_array(shape, dtype)
    return np.ndarray.__new__(_BoundedArray, shape, dtype)


def _dtype(*args: Any) -> np.dtype:
    if len(args) != 3 or not isinstance(args[0], str) or len(args[0]) > 16:
        raise NOSError(f"refusing a malformed dtype {args!r}"[:200])
    return np.dtype(*args)


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _BoundedArray,
    ("numpy", "dtype"): _dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and bounded numpy arrays of plain numbers;
    refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        if (module, name) not in _SAFE_GLOBALS:
            raise NOSError(
                f"refusing to unpickle {module}.{name}: a CIFAR batch holds only "
                "arrays, lists and strings"
            )
        return _SAFE_GLOBALS[module, name]


def _read_batch(path: Path) -> dict[str, Any]:
    """The dict a CIFAR file holds; any fault is one NOSError naming the file."""
    if not path.is_file():
        raise NOSError(f"missing {path} (nothing is downloaded here: put the data set there)")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise NOSError(f"{path} has {size} bytes; a CIFAR file has at most {MAX_FILE_BYTES}")
    try:
        with path.open("rb") as handle:
            loaded = _ArrayUnpickler(io.BytesIO(handle.read()), encoding="latin1").load()
    except NOSError as exc:
        raise NOSError(f"{path}: {exc}") from None
    except Exception as exc:  # truncated, empty or malformed: EOFError, UnpicklingError, ...
        raise NOSError(
            f"{path} is not a CIFAR batch ({type(exc).__name__}: {str(exc)[:100]})".replace(
                "\n", " "
            )
        ) from None
    if not isinstance(loaded, dict):
        raise NOSError(f"{path} does not hold a CIFAR batch dict")
    return {
        key.decode("latin1") if isinstance(key, bytes) else key: value
        for key, value in loaded.items()
    }


def _images(path: Path, batch: dict[str, Any]) -> np.ndarray:
    data = batch.get("data")
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
        or data.shape[0] > MAX_ROWS
    ):
        shown = (
            f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        )
        raise NOSError(
            f"{path}: 'data' must be a uint8 array of N <= {MAX_ROWS} x 3072, got {shown}"
        )
    return np.asarray(data)


def _labels(path: Path, batch: dict[str, Any], key: str, n: int) -> np.ndarray:
    labels = batch.get(key)
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and labels.shape == (n,):
        return labels.astype(np.int64)
    if (
        not isinstance(labels, list)
        or len(labels) != n
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**62 for v in labels
        )
    ):
        raise NOSError(f"{path}: {key!r} must hold one integer label per image")
    return np.asarray(labels, dtype=np.int64)


def _class_count(path: Path, names: Any) -> int:
    if not isinstance(names, list) or not 0 < len(names) <= MAX_CLASSES:
        raise NOSError(f"{path}: the class names must be a list of 1..{MAX_CLASSES} names")
    return len(names)


_CIFAR_FILES = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": ("cifar-100-python", ["train"], "test", "meta", "fine_labels", "fine_label_names"),
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
        data = _images(base / file_name, batch)
        batch_labels = _labels(base / file_name, batch, label_key, data.shape[0])
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    num_classes = _class_count(base / meta_file, _read_batch(base / meta_file).get(names_key))
    all_labels = np.concatenate(labels)
    if all_labels.size and (all_labels.min() < 0 or all_labels.max() >= num_classes):
        raise NOSError(f"{base}: labels must lie in 0..{num_classes - 1}")
    return np.ascontiguousarray(np.concatenate(images)), all_labels, num_classes
