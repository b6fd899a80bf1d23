"""Training runs written plainly, as independent references for the batched trainer."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from proxy.data import training_batches
from proxy.model import ConvNet
from proxy.screen import RunSeeds, RunSpec


def reference_run(
    spec: RunSpec,
    seeds: RunSeeds,
    make_optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer],
    rate: Callable[[int], float] | None = None,
) -> tuple[ConvNet, list[float]]:
    """One run of ``spec``: a float64 ConvNet seeded by ``seeds``, ``make_optimizer(params)``
    and the seeded batch stream; before optimizer step t every group's lr is set to
    ``rate(t)`` (when given). The model and each epoch's training accuracy
    (correct / seen over its ``steps_per_epoch`` batches)."""
    model = ConvNet(
        spec.width,
        in_channels=1,
        dropout=spec.dropout,
        generator=torch.Generator().manual_seed(seeds.model),
        dropout_generator=torch.Generator().manual_seed(seeds.dropout),
        bn_momentum=spec.bn_momentum,
    ).double()
    optimizer = make_optimizer(model.parameters())
    stream = training_batches(
        spec.train,
        spec.norm,
        spec.augmentation,
        batch_size=spec.batch_size,
        shuffle=spec.shuffle,
        seed=seeds.data,
        dtype=torch.float64,
    )
    accuracies, step = [], 0
    model.train()
    for _ in range(spec.epochs):
        correct = seen = 0
        for _ in range(spec.steps_per_epoch):
            images, labels = next(stream)
            logits = model(images)
            optimizer.zero_grad()
            F.cross_entropy(logits, labels).backward()
            if rate is not None:
                for group in optimizer.param_groups:
                    group["lr"] = rate(step)
            optimizer.step()
            step += 1
            correct += int((logits.argmax(dim=1) == labels).sum())
            seen += len(labels)
        accuracies.append(correct / seen)
    return model, accuracies
