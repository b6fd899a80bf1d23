"""Proxy data sets, normalisation, batched augmentation and the training batch stream.

Images are kept as raw integer values (``uint8``, ``[N, C, H, W]``)
on the training device; every batch is normalised and augmented there with tensor ops:

* normalisation ``x' = (x - mean_c) / std_c`` per channel c, with ``mean = 0, std = 255``
  (``x / 255``, the init fidelity) or the mean and *population* std of all training-pool
  images (train + validation split) on raw values (the evolution fidelity);
* augmentation: reflect-pad by ``pad`` -> random crop back to H x W -> random horizontal flip
  -> cutout, a ``cutout x cutout`` square of zeros (after normalisation) centred uniformly over
  the H x W positions and clipped at the borders.

The training stream reads passes over the training split: each pass in official order (paper
mode) or a fresh seeded permutation (project default), in batches of ``batch_size`` with the
partial last batch kept; an epoch is a fixed number of steps, so epochs straddle passes.

CIFAR-10 is read only through ``torchvision.datasets.CIFAR10(root, download=False)``; nothing
is downloaded. The CPU default is scikit-learn's bundled 8x8 digits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from optuna_nos.core.errors import NOSError

__all__ = [
    "NORMALIZATIONS",
    "Augmentation",
    "ImageDataset",
    "ImageSplit",
    "Normalization",
    "augment",
    "batch_indices",
    "batches_per_pass",
    "load_cifar10",
    "load_digits",
    "normalization",
    "normalize",
    "training_batches",
    "validation_batches",
]

CIFAR10_TRAIN_IMAGES = 50_000
CIFAR10_VAL_IMAGES = 5_000


@dataclass(frozen=True)
class ImageSplit:
    """Raw images ``[N, C, H, W]`` (uint8 values) and their int64 class labels ``[N]``."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dim() != 4:
            raise NOSError(f"images must be [N, C, H, W], got shape {tuple(self.images.shape)}")
        if self.labels.shape != self.images.shape[:1]:
            raise NOSError(
                f"labels must be [N] = [{self.images.shape[0]}], "
                f"got shape {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> ImageSplit:
        return ImageSplit(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class ImageDataset:
    """A proxy task's data: train and validation splits of one training pool.

    ``max_value`` is the largest raw pixel value (255 for CIFAR-10, 16 for digits);
    ``channel_mean`` / ``channel_std`` are the per-channel mean and population std of the whole
    training pool (both splits) on raw values.
    """

    name: str
    train: ImageSplit
    val: ImageSplit
    num_classes: int
    max_value: float
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width)."""
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)

    def to(self, device: torch.device | str) -> ImageDataset:
        return ImageDataset(
            self.name,
            self.train.to(device),
            self.val.to(device),
            self.num_classes,
            self.max_value,
            self.channel_mean,
            self.channel_std,
        )


def _pool_dataset(
    name: str,
    images: Tensor,
    labels: Tensor,
    val_index: Tensor,
    num_classes: int,
    max_value: float,
) -> ImageDataset:
    """Split a training pool by a boolean validation mask; stats over the whole pool."""
    pool = images.to(torch.float64)
    mean = pool.mean(dim=(0, 2, 3))
    std = pool.std(dim=(0, 2, 3), correction=0)
    return ImageDataset(
        name=name,
        train=ImageSplit(images[~val_index], labels[~val_index]),
        val=ImageSplit(images[val_index], labels[val_index]),
        num_classes=num_classes,
        max_value=max_value,
        channel_mean=tuple(float(m) for m in mean),
        channel_std=tuple(float(s) for s in std),
    )


def load_cifar10(
    root: str | Path,
    *,
    val_size: int = CIFAR10_VAL_IMAGES,
    verify_checksums: bool = True,
) -> ImageDataset:
    """The CIFAR-10 training set from ``root``, split in official order.

    ``root`` holds ``cifar-10-batches-py/`` as torchvision expects it. The first
    ``N - val_size`` images (45,000) are the training split and the last ``val_size`` (5,000)
    the validation split; the official test set is never read. The files are checked
    against torchvision's published MD5 sums (``verify_checksums=False`` skips that, which
    only hand-made files need) and read by :func:`proxy.cifar_files.load_cifar_arrays`, which
    never runs code from a file.
    """
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    from proxy.cifar_files import load_cifar_arrays

    path = Path(root).expanduser()
    if not path.is_dir():
        raise NOSError(
            f"CIFAR-10 data root {str(path)!r} is not a directory; put "
            "cifar-10-batches-py/ (the python version of CIFAR-10) there"
        )
    folder = path / CIFAR10.base_folder
    expected = [*CIFAR10.train_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    for name, md5 in expected:
        if not check_integrity(str(folder / name), md5 if verify_checksums else None):
            raise NOSError(
                f"CIFAR-10 file {str(folder / name)!r} is missing or corrupted; "
                "expected cifar-10-batches-py/data_batch_1..5 and batches.meta"
            )
    array_images, array_labels, _ = load_cifar_arrays("cifar10", path, "train")
    images = torch.from_numpy(array_images).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(array_labels)
    n = len(labels)
    if not 0 < val_size < n:
        raise NOSError(f"val_size must lie in 1..{n - 1} for {n} training images, got {val_size}")
    val_index = torch.arange(n) >= n - val_size
    return _pool_dataset("cifar10", images, labels, val_index, num_classes=10, max_value=255.0)


def load_digits(*, val_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16) as 1x8x8 images.

    The validation split is a stratified ``val_fraction`` of the images, drawn with ``seed``;
    both splits keep the bundled order.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise NOSError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images).to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    _, val_positions = train_test_split(
        range(len(labels)), test_size=val_fraction, stratify=bunch.target, random_state=seed
    )
    val_index = torch.zeros(len(labels), dtype=torch.bool)
    val_index[torch.as_tensor(sorted(val_positions))] = True
    return _pool_dataset("digits", images, labels, val_index, num_classes=10, max_value=16.0)


# -- normalisation and augmentation ----------------------------------------------------------


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std`` on raw pixel values."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise NOSError(
                f"mean and std need one value per channel, got {len(self.mean)} "
                f"and {len(self.std)}"
            )
        for value in self.std:
            if not value > 0.0:
                raise NOSError(f"normalisation std must be > 0, got {value!r}")

    def tensors(self, device: torch.device | str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(mean, std) as ``[1, C, 1, 1]`` tensors, made once per stream."""
        shape = (1, -1, 1, 1)
        return (
            torch.tensor(self.mean, dtype=dtype, device=device).view(shape),
            torch.tensor(self.std, dtype=dtype, device=device).view(shape),
        )


NORMALIZATIONS = ("scale", "standardize")


def normalization(dataset: ImageDataset, kind: str) -> Normalization:
    """``"scale"``: x / max_value; ``"standardize"``: the pool's per-channel mean and std."""
    channels = dataset.image_shape[0]
    if kind == "scale":
        return Normalization((0.0,) * channels, (dataset.max_value,) * channels)
    if kind == "standardize":
        return Normalization(dataset.channel_mean, dataset.channel_std)
    raise NOSError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {kind!r}")


def normalize(
    images: Tensor, norm: Normalization | tuple[Tensor, Tensor], dtype: torch.dtype = torch.float32
) -> Tensor:
    """Raw ``[B, C, H, W]`` images -> float ``(x - mean_c) / std_c``."""
    mean, std = norm.tensors(images.device, dtype) if isinstance(norm, Normalization) else norm
    return (images.to(dtype) - mean) / std


@dataclass(frozen=True)
class Augmentation:
    """Reflect-pad ``pad`` -> random crop -> random h-flip (if ``flip``) -> ``cutout`` square.

    ``pad = 0`` skips the crop and ``cutout = 0`` skips the cutout.
    """

    pad: int = 4
    flip: bool = True
    cutout: int = 8

    def __post_init__(self) -> None:
        for name in ("pad", "cutout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise NOSError(f"augmentation {name} must be an int >= 0, got {value!r}")
        if not isinstance(self.flip, bool):
            raise NOSError(f"augmentation flip must be true or false, got {self.flip!r}")


def augment(images: Tensor, aug: Augmentation, generator: torch.Generator) -> Tensor:
    """Augment a normalised float batch ``[B, C, H, W]``; one independent draw per image.

    Draws, in this order: crop offsets (y, x) uniform in ``0..2*pad``, flip bits with
    probability 1/2, cutout centres (y, x) uniform over ``0..H-1`` x ``0..W-1``. The cutout
    square covers rows ``[cy - cutout//2, cy - cutout//2 + cutout)`` (likewise columns),
    clipped to the image.
    """
    batch, _, height, width = images.shape
    device = images.device
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    out = images
    if aug.pad > 0:
        if aug.pad >= min(height, width):
            raise NOSError(
                f"augmentation pad {aug.pad} must be smaller than the image side "
                f"{min(height, width)} (reflect padding)"
            )
        padded = torch.nn.functional.pad(images, (aug.pad,) * 4, mode="reflect")
        offset_y = torch.randint(0, 2 * aug.pad + 1, (batch,), generator=generator, device=device)
        offset_x = torch.randint(0, 2 * aug.pad + 1, (batch,), generator=generator, device=device)
        row_index = (offset_y[:, None] + rows[None, :])[:, None, :, None]
        col_index = (offset_x[:, None] + cols[None, :])[:, None, None, :]
        channel_rows = padded.gather(2, row_index.expand(-1, padded.shape[1], -1, padded.shape[3]))
        out = channel_rows.gather(3, col_index.expand(-1, padded.shape[1], height, -1))
    if aug.flip:
        flip = torch.rand(batch, generator=generator, device=device) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(3), out)
    if aug.cutout > 0:
        centre_y = torch.randint(0, height, (batch,), generator=generator, device=device)
        centre_x = torch.randint(0, width, (batch,), generator=generator, device=device)
        top = centre_y - aug.cutout // 2
        left = centre_x - aug.cutout // 2
        in_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] < top[:, None] + aug.cutout)
        in_cols = (cols[None, :] >= left[:, None]) & (cols[None, :] < left[:, None] + aug.cutout)
        square = in_rows[:, None, :, None] & in_cols[:, None, None, :]
        out = out.masked_fill(square, 0.0)
    return out


# -- batch streams ---------------------------------------------------------------------------


def batch_indices(
    n: int,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    group: int = 1,
) -> Iterator[Tensor]:
    """Endless index batches: passes over ``0..n-1``, each a fresh permutation if ``shuffle``.

    Every pass yields ``ceil(n / batch_size)`` batches; the last one is partial when
    ``batch_size`` does not divide ``n``. With ``group > 1`` each yielded tensor joins up to
    ``group`` consecutive batches of one pass (split it every ``batch_size`` indices).
    """
    if n < 1:
        raise NOSError(f"a batch stream needs at least one example, got n = {n}")
    if batch_size < 1 or group < 1:
        raise NOSError(f"batch_size and group must be >= 1, got {batch_size} and {group}")
    if shuffle and generator is None:
        raise NOSError("a shuffled batch stream needs a seeded generator")
    ordered = torch.arange(n, device=device)
    step = batch_size * group
    while True:
        order = torch.randperm(n, generator=generator, device=device) if shuffle else ordered
        for start in range(0, n, step):
            yield order[start : start + step]


def training_batches(
    split: ImageSplit,
    norm: Normalization,
    aug: Augmentation | None,
    *,
    batch_size: int = 128,
    shuffle: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    prepare: int = 16,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless (images, labels) training batches on the split's device.

    One generator seeded with ``seed`` drives both the shuffling and the augmentation, so
    two streams with the same seed are identical. ``prepare`` batches are normalised and
    augmented at once (fewer, larger tensor ops), then handed out one by one.
    """
    device = split.images.device
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    stats = norm.tensors(device, dtype)
    for index in batch_indices(
        len(split), batch_size, shuffle=shuffle, generator=generator, device=device, group=prepare
    ):
        images = normalize(split.images[index], stats, dtype)
        if aug is not None:
            images = augment(images, aug, generator)
        labels = split.labels[index]
        for start in range(0, len(index), batch_size):
            yield images[start : start + batch_size], labels[start : start + batch_size]


def validation_batches(
    split: ImageSplit,
    norm: Normalization,
    *,
    batch_size: int = 128,
    dtype: torch.dtype = torch.float32,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One ordered pass over ``split`` in normalised, un-augmented batches."""
    stats = norm.tensors(split.images.device, dtype)
    for start in range(0, len(split), batch_size):
        stop = min(start + batch_size, len(split))
        yield normalize(split.images[start:stop], stats, dtype), split.labels[start:stop]


def batches_per_pass(n: int, batch_size: int) -> int:
    """``ceil(n / batch_size)``: 352 for CIFAR-10's 45,000 training images at 128."""
    return math.ceil(n / batch_size)
