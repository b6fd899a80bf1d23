"""The paper's proxy ConvNet with Keras conventions.

    Conv3x3(base, stride 1, same) -> BN -> SiLU
    Conv3x3(2 base, stride 2, same) -> BN -> SiLU
    Conv3x3(4 base, stride 2, same) -> BN -> SiLU
    GlobalAvgPool -> Dropout(0.2) -> Dense(classes)      (softmax lives in the loss)

Keras conventions: Glorot-uniform conv and dense weights, U(-a, a) with
a = sqrt(6 / (fan_in + fan_out)); zero biases; BN with PyTorch momentum 0.01 (Keras 0.99) and
eps 1e-3; "same" padding as TensorFlow computes it, which for a stride-2 3x3 conv on an even
side pads 0 before and 1 after. Trainable parameters for 3 input channels and 10 classes:
94,986 at base 32 and 211,594 at base 48.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optuna_nos.core.errors import NOSError

__all__ = [
    "BN_EPS",
    "BN_MOMENTUM",
    "ConvNet",
    "GeneratorDropout",
    "conv_same",
    "same_padding",
]

BN_MOMENTUM = 0.01
BN_EPS = 1e-3
KERNEL = 3
STRIDES = (1, 2, 2)
WIDTH_FACTORS = (1, 2, 4)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) of one spatial side.

    out = ceil(size / stride); total = max((out - 1) * stride + kernel - size, 0);
    before = total // 2, after = total - before.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    return before, total - before


class GeneratorDropout(nn.Module):
    """Inverted dropout whose mask is drawn from ``generator`` (the global RNG when None).

    Training: ``x * (u >= p) / (1 - p)`` with ``u ~ U[0, 1)`` of x's shape; eval: ``x``.
    """

    def __init__(self, p: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise NOSError(f"dropout rate must lie in [0, 1), got {p!r}")
        self.p = p
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ConvNet(nn.Module):
    """The proxy ConvNet; ``base_width`` 32 (init fidelity) or 48 (evolution fidelity).

    ``generator`` seeds the Glorot-uniform initialisation (the global RNG when None);
    ``dropout_generator`` drives the dropout masks.
    """

    def __init__(
        self,
        base_width: int = 32,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        dropout: float = 0.2,
        generator: torch.Generator | None = None,
        dropout_generator: torch.Generator | None = None,
        bn_momentum: float = BN_MOMENTUM,
    ) -> None:
        super().__init__()
        if not 0.0 < bn_momentum <= 1.0:
            raise NOSError(f"ConvNet bn_momentum must lie in (0, 1], got {bn_momentum!r}")
        for name, value in (
            ("base_width", base_width),
            ("in_channels", in_channels),
            ("num_classes", num_classes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NOSError(f"ConvNet {name} must be an int >= 1, got {value!r}")
        self.base_width = base_width
        widths = [base_width * f for f in WIDTH_FACTORS]
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.convs.append(nn.Conv2d(previous, width, KERNEL, padding=0))
            self.norms.append(nn.BatchNorm2d(width, eps=BN_EPS, momentum=bn_momentum))
            previous = width
        self.dropout = GeneratorDropout(dropout, dropout_generator)
        self.fc = nn.Linear(previous, num_classes)
        self.reset_parameters(generator)

    @property
    def conv_layers(self) -> list[nn.Conv2d]:
        return [cast(nn.Conv2d, conv) for conv in self.convs]

    @property
    def norm_layers(self) -> list[nn.BatchNorm2d]:
        return [cast(nn.BatchNorm2d, norm) for norm in self.norms]

    def running_stats(self, layer: int) -> tuple[Tensor, Tensor]:
        """(running mean, running var) of BN layer ``layer``."""
        norm = self.norm_layers[layer]
        assert norm.running_mean is not None and norm.running_var is not None
        return norm.running_mean, norm.running_var

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Glorot-uniform weights, zero biases, BN gamma = 1 and beta = 0, fresh BN stats."""
        layers: list[nn.Conv2d | nn.Linear] = [*self.conv_layers, self.fc]
        with torch.no_grad():
            for layer in layers:
                nn.init.xavier_uniform_(layer.weight, generator=generator)
                assert layer.bias is not None
                nn.init.zeros_(layer.bias)
            for norm in self.norm_layers:
                norm.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, classes]`` of images ``[B, C, H, W]``."""
        for conv, norm, stride in zip(self.conv_layers, self.norms, STRIDES, strict=True):
            x = F.silu(norm(conv_same(x, conv.weight, conv.bias, stride)))
        return self.fc(self.dropout(x.mean(dim=(2, 3))))


def conv_same(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: int, groups: int = 1
) -> Tensor:
    """``conv2d`` with TensorFlow "same" padding for the weight's kernel and ``stride``."""
    kernel_h, kernel_w = weight.shape[-2:]
    top, bottom = same_padding(x.shape[-2], kernel_h, stride)
    left, right = same_padding(x.shape[-1], kernel_w, stride)
    if top == bottom and left == right:
        return F.conv2d(x, weight, bias, stride=stride, padding=(top, left), groups=groups)
    return F.conv2d(
        F.pad(x, (left, right, top, bottom)), weight, bias, stride=stride, groups=groups
    )
