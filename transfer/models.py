"""Transfer models: EfficientNetV2-S (from scratch or ImageNet-initialised), a digits ConvNet.

ImageNet weights are never downloaded: they come from ``--weights FILE`` (a state dict saved
with ``torch.save(model.state_dict(), FILE)``) or from torchvision's cache,
``torch.hub.get_dir()/checkpoints/efficientnet_v2_s-dd5fe13b.pth``, the file torchvision's
own ``EfficientNet_V2_S_Weights.IMAGENET1K_V1`` would have stored there. Both are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision.models import EfficientNet_V2_S_Weights, efficientnet_v2_s

from optuna_nos.core.errors import NOSError
from optuna_nos.core.validation import check_int

__all__ = [
    "DigitsConvNet",
    "cached_weights_path",
    "efficientnet",
    "load_imagenet_state_dict",
    "resolve_weights_path",
]


def cached_weights_path() -> Path:
    """Where torchvision caches the ImageNet EfficientNetV2-S weights (the file may not exist)."""
    file_name = EfficientNet_V2_S_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def resolve_weights_path(weights: str | os.PathLike[str] | None) -> Path:
    """``weights`` if given, else torchvision's cache file; :class:`NOSError` if it is absent."""
    path = Path(weights) if weights is not None else cached_weights_path()
    if not path.is_file():
        origin = "--weights" if weights is not None else "torchvision's cache"
        raise NOSError(
            f"ImageNet weights for EfficientNetV2-S not found at {path} ({origin}); nothing is "
            f"downloaded here: copy the file {cached_weights_path().name} there or pass "
            "--weights FILE (a state dict)"
        )
    return path


def load_imagenet_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """The tensors of a state-dict file, read without unpickling arbitrary objects."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise NOSError(
            f"cannot read weights {path}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise NOSError(f"weights {path} must hold a state dict (names -> tensors)")
    return state


def _reset_head(linear: nn.Linear) -> None:
    # torchvision's EfficientNet head init: U(-1/sqrt(out), 1/sqrt(out)), zero bias.
    bound = 1.0 / math.sqrt(linear.out_features)
    nn.init.uniform_(linear.weight, -bound, bound)
    nn.init.zeros_(linear.bias)


def efficientnet(
    num_classes: int,
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
) -> nn.Module:
    """EfficientNetV2-S with a ``num_classes`` head.

    ``pretrained=False``: every weight freshly initialised (from scratch). ``pretrained=True``:
    the 1000-class ImageNet network loaded strictly from :func:`resolve_weights_path`, then its
    final Linear replaced by a freshly initialised ``num_classes`` one.
    """
    check_int("num_classes", num_classes, minimum=1)
    if not pretrained:
        return efficientnet_v2_s(num_classes=num_classes)
    path = resolve_weights_path(weights)
    model = efficientnet_v2_s()
    try:
        model.load_state_dict(load_imagenet_state_dict(path))
    except RuntimeError as exc:
        raise NOSError(
            f"weights {path} do not fit EfficientNetV2-S: {str(exc).splitlines()[0]}"
        ) from None
    old_head = model.classifier[1]
    assert isinstance(old_head, nn.Linear)
    head = nn.Linear(old_head.in_features, num_classes)
    _reset_head(head)
    model.classifier[1] = head
    return model


class DigitsConvNet(nn.Module):
    """A small ConvNet for 8x8 grey digits.

    Conv3x3(1->c) -> BN -> SiLU -> Conv3x3(c->2c, stride 2) -> BN -> SiLU ->
    GlobalAvgPool -> Linear(2c -> 10).
    """

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))
