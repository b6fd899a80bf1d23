"""Tasks: a model factory, an endless seeded training stream and a fixed evaluation set.

A task's model maps inputs to logits ``(N, C)`` (or ``(N, L, C)`` for a sequence task); the
loss is the mean cross-entropy over all targets and the evaluation reports accuracy and
cross-entropy (plus bits per character for sequence tasks) on the evaluation set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from optuna_nos.core.errors import NOSError
from optuna_nos.core.validation import check_int
from transfer.datasets import IMAGE_TASKS, SizedDataset, load_image_data
from transfer.models import DigitsConvNet, efficientnet, resolve_weights_path

__all__ = ["Task", "digits_task", "image_task", "loader_stream"]

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class Task:
    """What a training run needs from a task.

    ``build_model()`` is called after the run's seed is set; ``train_batches(seed)`` yields
    batches forever in a seed-determined order; ``eval_batches()`` yields the fixed evaluation
    set once; ``steps_per_epoch`` converts steps into passes over the training set.
    """

    name: str
    build_model: Callable[[], nn.Module]
    train_batches: Callable[[int], Iterator[Batch]]
    eval_batches: Callable[[], Iterable[Batch]]
    steps_per_epoch: float
    sequence: bool = False


def loader_stream(
    dataset: SizedDataset, batch_size: int, seed: int, num_workers: int = 0
) -> Iterator[Batch]:
    """Endless shuffled batches of ``dataset`` (full batches only), epoch order from ``seed``."""
    if len(dataset) < batch_size:
        raise NOSError(
            f"the training set has {len(dataset)} samples, fewer than one batch of {batch_size}"
        )
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        cast(Dataset[Any], dataset),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=generator,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
    while True:
        yield from loader


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        check_int(name, value, minimum=1)


def image_task(
    name: str,
    root: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    batch_size: int = 64,
    eval_batch_size: int = 256,
    augment: bool = True,
    weights: str | os.PathLike[str] | None = None,
    num_workers: int = 0,
    max_eval_samples: int | None = None,
) -> Task:
    """EfficientNetV2-S on an image data set: from scratch or fine-tuned (see ``IMAGE_TASKS``).

    Fine-tuning tasks check for the ImageNet weights before any training starts.
    ``max_eval_samples`` evaluates on a fixed prefix of the evaluation set (for quick runs).
    """
    _check_positive(batch_size=batch_size, eval_batch_size=eval_batch_size)
    check_int("num_workers", num_workers, minimum=0)
    data = load_image_data(name, root, image_size=image_size, augment=augment)
    info = IMAGE_TASKS[name]
    if info.finetune:
        resolve_weights_path(weights)
    evaluation = cast(Dataset[Any], data.evaluation)
    if max_eval_samples is not None:
        _check_positive(max_eval_samples=max_eval_samples)
        evaluation = Subset(evaluation, range(min(max_eval_samples, len(data.evaluation))))
    train_size = len(data.train)

    def build_model() -> nn.Module:
        return efficientnet(data.num_classes, pretrained=info.finetune, weights=weights)

    def eval_batches() -> Iterable[Batch]:
        return DataLoader(
            evaluation, batch_size=eval_batch_size, shuffle=False, num_workers=num_workers
        )

    return Task(
        name=name,
        build_model=build_model,
        train_batches=lambda seed: loader_stream(data.train, batch_size, seed, num_workers),
        eval_batches=eval_batches,
        steps_per_epoch=train_size / batch_size,
    )


#: The digits split: a fixed permutation (this seed) puts this many images in evaluation.
DIGITS_SPLIT_SEED = 0
DIGITS_EVAL_SIZE = 360


def _tensor_stream(inputs: Tensor, targets: Tensor, batch_size: int, seed: int) -> Iterator[Batch]:
    generator = torch.Generator().manual_seed(seed)
    full_batches = len(targets) // batch_size
    while True:
        order = torch.randperm(len(targets), generator=generator)
        for start in range(0, full_batches * batch_size, batch_size):
            index = order[start : start + batch_size]
            yield inputs[index], targets[index]


def digits_task(*, batch_size: int = 64, width: int = 16) -> Task:
    """scikit-learn's 1,797 8x8 digits: 1,437 train / 360 evaluation, a small ConvNet.

    Pixels (0..16) are scaled to x/8 - 1, in [-1, 1].
    """
    from sklearn.datasets import load_digits

    _check_positive(batch_size=batch_size, width=width)
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.from_numpy(np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels)))
    eval_idx, train_idx = order[:DIGITS_EVAL_SIZE], order[DIGITS_EVAL_SIZE:]
    train_x, train_y = images[train_idx], labels[train_idx]
    eval_x, eval_y = images[eval_idx], labels[eval_idx]
    if batch_size > len(train_y):
        raise NOSError(f"batch_size {batch_size} exceeds the {len(train_y)} training digits")

    return Task(
        name="digits",
        build_model=lambda: DigitsConvNet(width=width),
        train_batches=lambda seed: _tensor_stream(train_x, train_y, batch_size, seed),
        eval_batches=lambda: [(eval_x, eval_y)],
        steps_per_epoch=len(train_y) / batch_size,
    )
