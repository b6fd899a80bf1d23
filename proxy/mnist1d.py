"""MNIST-1D (Greydanus & Steinbach 2024), generated locally by the ``mnist1d`` package.

Each example is a 40-sample 1-D signal: one of ten digit-like templates, padded, shifted,
scaled, sheared and corrupted with correlated and i.i.d. noise, then standardised over the
whole set (mean 0, std 1). Nothing is downloaded: ``mnist1d.data.make_dataset`` builds the
set from its seed (default 42) in a few seconds.

The signals are stored as ``[N, 1, 1, 40]`` float32 "images", so the proxy ConvNet reads them
with its 3x3 kernels reduced to 1x3 (the rows above and below are the "same" padding's zeros).
``max_value`` is 1, so the ``"scale"`` normalisation leaves the standardised signal as it is.

Splits of the ``num_samples`` generated examples, in generation order (already shuffled by
the generator): the first ``train_size`` train, the next ``val_size`` validate (the search
selects on these), the last ``test_size`` are the test split, which only the final report
reads (``split="test"`` puts them in the dataset's validation slot).
"""

from __future__ import annotations

import numpy as np
import torch

from optuna_nos.core.errors import NOSError
from optuna_nos.core.validation import check_int
from proxy.data import ImageDataset, ImageSplit
from proxy.fitness import Fidelity, FitnessConfig

__all__ = ["MNIST1D_FITNESS", "MNIST1D_SPLITS", "load_mnist1d"]

MNIST1D_SPLITS = ("val", "test")

#: The MNIST-1D protocol: the paper's screen and final run shrunk to seconds. Init: width 12,
#: 10 epochs x 30 steps at batch 64 (T = 300, W = 30); evolution: width 16, 10 x 40 (T = 400,
#: W = 40). Screens: 4 epochs x 15 steps. Short runs reward optimizers that learn fast, and
#: BatchNorm's running statistics use PyTorch's momentum 0.1 so that they keep up with the
#: weights in runs this short (with Keras' 0.99 the validation accuracy of fast optimizers
#: lags their training accuracy by tens of points). Augmentation is off (the generator
#: already varies the signals).
MNIST1D_FITNESS = FitnessConfig(
    init=Fidelity(
        "init",
        width=12,
        normalization="scale",
        augmentation=None,
        total_steps=300,
        warmup_steps=30,
        final_epochs=10,
        final_steps_per_epoch=30,
        screen_epochs=4,
        screen_steps_per_epoch=15,
    ),
    evolution=Fidelity(
        "evolution",
        width=16,
        normalization="scale",
        augmentation=None,
        total_steps=400,
        warmup_steps=40,
        final_epochs=10,
        final_steps_per_epoch=40,
        screen_epochs=4,
        screen_steps_per_epoch=15,
    ),
    batch_size=64,
    val_batch_size=500,
    bn_momentum=0.1,
)


def load_mnist1d(
    *,
    train_size: int = 4000,
    val_size: int = 2000,
    test_size: int = 2000,
    seed: int = 42,
    split: str = "val",
) -> ImageDataset:
    """Generate MNIST-1D and split it (see the module docstring).

    The generator seeds numpy's global RNG; its state is restored afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    if split not in MNIST1D_SPLITS:
        raise NOSError(f"mnist1d split must be one of {', '.join(MNIST1D_SPLITS)}, got {split!r}")
    for name, value in (
        ("train_size", train_size),
        ("val_size", val_size),
        ("test_size", test_size),
    ):
        check_int(f"mnist1d {name}", value, minimum=1)
    total = train_size + val_size + test_size
    args = get_dataset_args()
    args.num_samples = 10 * -(-total // 10)
    args.train_split = 1.0
    args.seed = seed
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    signals = torch.from_numpy(np.asarray(data["x"], dtype=np.float32))[:total, None, None, :]
    labels = torch.from_numpy(np.asarray(data["y"], dtype=np.int64))[:total]
    train = slice(0, train_size)
    held = (
        slice(train_size, train_size + val_size)
        if split == "val"
        else slice(train_size + val_size, total)
    )
    pool = signals[: train_size + val_size].to(torch.float64)
    return ImageDataset(
        name="mnist1d" if split == "val" else "mnist1d-test",
        train=ImageSplit(signals[train], labels[train]),
        val=ImageSplit(signals[held], labels[held]),
        num_classes=10,
        max_value=1.0,
        channel_mean=(float(pool.mean()),),
        channel_std=(float(pool.std(correction=0)),),
    )
