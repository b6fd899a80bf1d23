"""The transfer data sets, read from disk in their own published layouts; nothing is downloaded.

Every loader takes one data root and looks for its data set where torchvision would:

==============  =====================================================================
task            layout under ``root``
==============  =====================================================================
cifar10         ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
cifar100        ``cifar-100-python/{train, test, meta}``
tinyimagenet    ``tiny-imagenet-200/`` (or ``root`` itself) holding ``train/<wnid>/images/
                *.JPEG`` or ``train/<wnid>/*.JPEG``, and either the official ``val/images/
                *.JPEG`` + ``val/val_annotations.txt`` (``name<TAB>wnid<TAB>...``) or
                ``val/<wnid>/[images/]*.JPEG``; classes are the sorted ``train`` folders
flowers102      ``flowers-102/{jpg/image_%05d.jpg, imagelabels.mat, setid.mat}``
stanfordcars    ``stanford_cars/{devkit/cars_meta.mat, devkit/cars_train_annos.mat,
                cars_train/, cars_test/, cars_test_annos_withlabels.mat}``
caltech101      ``caltech101/101_ObjectCategories/<class>/image_%04d.jpg``
==============  =====================================================================

Splits (the evaluation split is never used to choose a learning rate, see ``runner``):
CIFAR train / test batch; TinyImageNet train / val; Flowers102 train+val / test; StanfordCars
train / test; Caltech101 has no official split, so a fixed per-class split (seed 0, 20 %
evaluation) is drawn. CIFAR's pickles are read with an unpickler that admits only plain
containers and numpy arrays, so a CIFAR file cannot run code. The ``.mat`` files need scipy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset
from torchvision import transforms as tv
from torchvision.datasets import Caltech101, Flowers102, StanfordCars
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from optuna_nos.core.errors import NOSError
from proxy.cifar_files import load_cifar_arrays

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_TASKS",
    "ImageData",
    "ImageTaskInfo",
    "LocalFlowers102",
    "SizedDataset",
    "load_cifar_arrays",
    "load_image_data",
    "image_transforms",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageTaskInfo:
    """What the harness needs to know about an image task before reading it."""

    name: str
    title: str
    finetune: bool
    default_image_size: int


IMAGE_TASKS: dict[str, ImageTaskInfo] = {
    info.name: info
    for info in (
        ImageTaskInfo("cifar10", "CIFAR-10", finetune=False, default_image_size=64),
        ImageTaskInfo("cifar100", "CIFAR-100", finetune=False, default_image_size=64),
        ImageTaskInfo("tinyimagenet", "TinyImageNet", finetune=False, default_image_size=64),
        ImageTaskInfo("flowers102", "Flowers102", finetune=True, default_image_size=224),
        ImageTaskInfo("stanfordcars", "StanfordCars", finetune=True, default_image_size=224),
        ImageTaskInfo("caltech101", "Caltech101", finetune=True, default_image_size=224),
    )
}


class SizedDataset(Protocol):
    """A map-style data set with a length: ``dataset[i] -> (image tensor, label)``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


@dataclass(frozen=True)
class ImageData:
    """A task's training set, evaluation set and number of classes (the model's head size)."""

    train: SizedDataset
    evaluation: SizedDataset
    num_classes: int


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def image_transforms(
    image_size: int, *, finetune: bool, augment: bool
) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any], torch.Tensor]]:
    """(train, evaluation) transforms from a PIL image to a normalised CHW float tensor.

    From scratch: resize to ``image_size``; with ``augment``, reflect-pad by size/8, random
    crop back and random horizontal flip. Fine-tuning: train with RandomResizedCrop(size,
    scale 0.35..1) and flip (or a plain resize+centre crop without ``augment``); evaluate
    with resize to 1.14*size and centre crop. Both normalise with the ImageNet statistics.
    """
    if image_size < 8:
        raise NOSError(f"image_size must be >= 8, got {image_size}")
    finish = [tv.ToTensor(), tv.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if finetune:
        resize = [tv.Resize(round(image_size * 1.14)), tv.CenterCrop(image_size)]
        train_steps = (
            [tv.RandomResizedCrop(image_size, scale=(0.35, 1.0)), tv.RandomHorizontalFlip()]
            if augment
            else resize
        )
        return (
            tv.Compose([_to_rgb, *train_steps, *finish]),
            tv.Compose([_to_rgb, *resize, *finish]),
        )
    exact = [tv.Resize((image_size, image_size))]
    train_steps = exact + (
        [
            tv.RandomCrop(image_size, padding=max(1, image_size // 8), padding_mode="reflect"),
            tv.RandomHorizontalFlip(),
        ]
        if augment
        else []
    )
    return tv.Compose([_to_rgb, *train_steps, *finish]), tv.Compose([_to_rgb, *exact, *finish])


# -- CIFAR ----------------------------------------------------------------------------------


class ArrayImages(Dataset[tuple[torch.Tensor, int]]):
    """Images held as a uint8 N x H x W x 3 array, transformed through PIL on access."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, transform: Callable[[Any], torch.Tensor]
    ) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


# -- TinyImageNet ---------------------------------------------------------------------------


class FileImages(Dataset[tuple[torch.Tensor, int]]):
    """(path, label) samples, loaded with PIL and transformed on access."""

    def __init__(
        self, samples: Sequence[tuple[str, int]], transform: Callable[[Any], torch.Tensor]
    ) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), label


def _tinyimagenet_base(root: Path) -> Path:
    for base in (root / "tiny-imagenet-200", root):
        if (base / "train").is_dir() and (base / "val").is_dir():
            return base
    raise NOSError(
        f"TinyImageNet not found under {root}: expected tiny-imagenet-200/train and "
        "tiny-imagenet-200/val (nothing is downloaded here)"
    )


def _tinyimagenet_val(base: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    annotations = base / "val" / "val_annotations.txt"
    if not annotations.is_file():
        present = {
            name: index for name, index in class_to_idx.items() if (base / "val" / name).is_dir()
        }
        return list(make_dataset(str(base / "val"), present, IMG_EXTENSIONS))
    samples = []
    for line_number, line in enumerate(annotations.read_text().splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in class_to_idx:
            raise NOSError(
                f"{annotations}:{line_number}: expected 'file<TAB>wnid' with a wnid "
                f"from train/, got {line!r}"
            )
        samples.append((str(base / "val" / "images" / fields[0]), class_to_idx[fields[1]]))
    return samples


def _tinyimagenet(
    root: Path, train_tf: Callable[[Any], torch.Tensor], eval_tf: Callable[[Any], torch.Tensor]
) -> ImageData:
    base = _tinyimagenet_base(root)
    try:
        classes, class_to_idx = find_classes(str(base / "train"))
        train = make_dataset(str(base / "train"), class_to_idx, IMG_EXTENSIONS)
    except FileNotFoundError as exc:
        raise NOSError(f"TinyImageNet train/ under {base}: {exc}") from None
    evaluation = _tinyimagenet_val(base, class_to_idx)
    if not evaluation:
        raise NOSError(f"TinyImageNet val/ under {base} holds no images")
    return ImageData(FileImages(train, train_tf), FileImages(evaluation, eval_tf), len(classes))


# -- torchvision's fine-tuning sets -----------------------------------------------------------


class LocalFlowers102(Flowers102):
    """torchvision's Flowers102 reader, asking only that the files exist.

    torchvision also checks the md5 of the two ``.mat`` files, which is a download check; the
    reader itself is unchanged.
    """

    def _check_integrity(self) -> bool:
        base = Path(self.root) / "flowers-102"
        return (
            (base / "jpg").is_dir()
            and (base / "imagelabels.mat").is_file()
            and (base / "setid.mat").is_file()
        )


def _flowers102(
    root: Path, train_tf: Callable[[Any], torch.Tensor], eval_tf: Callable[[Any], torch.Tensor]
) -> ImageData:
    def split(name: str, transform: Callable[[Any], torch.Tensor]) -> LocalFlowers102:
        return LocalFlowers102(str(root), split=name, transform=transform, download=False)

    train: ConcatDataset[Any] = ConcatDataset([split("train", train_tf), split("val", train_tf)])
    return ImageData(train, split("test", eval_tf), 102)


def _stanfordcars(
    root: Path, train_tf: Callable[[Any], torch.Tensor], eval_tf: Callable[[Any], torch.Tensor]
) -> ImageData:
    train = StanfordCars(str(root), split="train", transform=train_tf, download=False)
    evaluation = StanfordCars(str(root), split="test", transform=eval_tf, download=False)
    return ImageData(train, evaluation, len(train.classes))


#: Fraction of each Caltech101 class held out for evaluation, and the seed of that split.
CALTECH_EVAL_FRACTION = 0.2
CALTECH_SPLIT_SEED = 0


def _caltech101(
    root: Path, train_tf: Callable[[Any], torch.Tensor], eval_tf: Callable[[Any], torch.Tensor]
) -> ImageData:
    if not (root / "caltech101" / "101_ObjectCategories").is_dir():
        raise RuntimeError("Dataset not found")
    train_view = Caltech101(str(root), transform=train_tf, download=False)
    eval_view = Caltech101(str(root), transform=eval_tf, download=False)
    generator = np.random.default_rng(CALTECH_SPLIT_SEED)
    labels = np.asarray(train_view.y)
    train_idx, eval_idx = [], []
    for label in np.unique(labels):
        members = generator.permutation(np.flatnonzero(labels == label))
        held_out = max(1, round(CALTECH_EVAL_FRACTION * len(members))) if len(members) > 1 else 0
        eval_idx.extend(members[:held_out].tolist())
        train_idx.extend(members[held_out:].tolist())
    return ImageData(
        Subset(train_view, sorted(train_idx)),
        Subset(eval_view, sorted(eval_idx)),
        len(train_view.categories),
    )


def _cifar(name: str) -> Callable[..., ImageData]:
    def load(
        root: Path, train_tf: Callable[[Any], torch.Tensor], eval_tf: Callable[[Any], torch.Tensor]
    ) -> ImageData:
        images, labels, num_classes = load_cifar_arrays(name, root, "train")
        test_images, test_labels, _ = load_cifar_arrays(name, root, "test")
        return ImageData(
            ArrayImages(images, labels, train_tf),
            ArrayImages(test_images, test_labels, eval_tf),
            num_classes,
        )

    return load


_LOADERS: dict[str, Callable[..., ImageData]] = {
    "cifar10": _cifar("cifar10"),
    "cifar100": _cifar("cifar100"),
    "tinyimagenet": _tinyimagenet,
    "flowers102": _flowers102,
    "stanfordcars": _stanfordcars,
    "caltech101": _caltech101,
}


def load_image_data(
    task: str,
    root: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    augment: bool = True,
) -> ImageData:
    """Read ``task``'s training and evaluation sets from ``root`` (layouts: module docstring).

    Raises :class:`NOSError` when the task is unknown or its files are missing.
    """
    info = IMAGE_TASKS.get(task)
    if info is None:
        raise NOSError(f"unknown image task {task!r}; expected one of {sorted(IMAGE_TASKS)}")
    size = info.default_image_size if image_size is None else image_size
    train_tf, eval_tf = image_transforms(size, finetune=info.finetune, augment=augment)
    root_path = Path(root)
    if not root_path.is_dir():
        raise NOSError(f"data root {str(root_path)!r} is not a directory")
    try:
        return _LOADERS[task](root_path, train_tf, eval_tf)
    except (RuntimeError, FileNotFoundError) as exc:
        reason = str(exc).split(". You can use download=True")[0].rstrip(".")
        raise NOSError(
            f"{info.title} not found or incomplete under {root_path} ({reason}); "
            "see transfer.datasets for the layout (nothing is downloaded here)"
        ) from None
