"""K independent ConvNets trained as one network, for the batched learning-rate screen.

Every copy k keeps its own parameters, BN statistics and dropout generator; the forward
pass evaluates all copies at once on a shared input batch:

* layer 1 concatenates the copies' filters along the output channels (one convolution);
* layers 2 and 3 are grouped convolutions with ``groups = K`` (copy k's channels only see
  copy k's channels), or with ``grouped=False`` one convolution per copy on its channel
  slice (faster on CPUs, whose grouped-convolution kernels lag behind plain ones);
* BN over ``K * C`` channels is per-channel, hence per copy; the dense layer is a batched
  matrix product. Logits come out as ``[B, K, classes]``.

So copy k computes exactly what a lone :class:`~proxy.model.ConvNet` with its parameters
computes, and a NaN in one copy cannot reach another.

Parameters are leaf tensors per copy, so one :class:`~optuna_nos.GenomeOptimizer` with one
param group per copy (each with its own learning rate) trains them all. A genome whose
update has no per-tensor reduction sees each copy as one flat vector (``per_tensor=False``,
the fastest layout); a genome with ``norm`` needs ``per_tensor=True``, which keeps the
ConvNet's tensors, because ``norm`` reduces over one parameter tensor.

Copies can be dropped (:meth:`StackedConvNet.keep`) when their runs stop, so stopped runs
cost nothing afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from optuna_nos.core.errors import NOSError
from optuna_nos.space.genome import Genome
from optuna_nos.space.update_ops import UNARY_OPS
from proxy.model import BN_EPS, BN_MOMENTUM, STRIDES, ConvNet, conv_same

__all__ = ["StackedConvNet", "needs_per_tensor_layout"]


def needs_per_tensor_layout(genome: Genome) -> bool:
    """True when the genome's active graph reduces over a whole tensor (``norm``)."""
    for column in genome.topological_order():
        node = genome.node(column)
        if not node.binary and UNARY_OPS[node.unary_op].name == "clip_norm":
            return True
    return False


@dataclass(frozen=True)
class _Slot:
    """Where one ConvNet parameter lives in a copy's flat vector."""

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int


class StackedConvNet:
    """Copies of one ConvNet architecture, evaluated together (see the module docstring)."""

    def __init__(
        self, models: Sequence[ConvNet], *, per_tensor: bool = False, grouped: bool = True
    ) -> None:
        if not models:
            raise NOSError("a stacked ConvNet needs at least one model")
        first = models[0]
        for model in models[1:]:
            if (
                [p.shape for p in model.parameters()] != [p.shape for p in first.parameters()]
                or model.dropout.p != first.dropout.p
                or model.norm_layers[0].momentum != first.norm_layers[0].momentum
            ):
                raise NOSError("stacked ConvNets must share one architecture")
        self.per_tensor = per_tensor
        self.grouped = grouped
        self.dropout = first.dropout.p
        momentum = first.norm_layers[0].momentum
        self.bn_momentum = BN_MOMENTUM if momentum is None else float(momentum)
        self.base_width = first.base_width
        self.in_channels = first.conv_layers[0].in_channels
        self.num_classes = first.fc.out_features
        self.features = first.fc.in_features
        slots, offset = [], 0
        for name, param in first.named_parameters():
            slots.append(_Slot(name, tuple(param.shape), offset, param.numel()))
            offset += param.numel()
        self.slots: tuple[_Slot, ...] = tuple(slots)
        self.leaves: list[list[Tensor]] = []
        for model in models:
            params = [p.detach() for p in model.parameters()]
            if per_tensor:
                self.leaves.append([p.clone().requires_grad_(True) for p in params])
            else:
                flat = torch.cat([p.reshape(-1) for p in params])
                self.leaves.append([flat.requires_grad_(True)])
        layers = range(len(first.norms))
        self.running_mean = [torch.stack([m.running_stats(i)[0] for m in models]) for i in layers]
        self.running_var = [torch.stack([m.running_stats(i)[1] for m in models]) for i in layers]
        self.dropout_generators = [m.dropout.generator for m in models]
        self.active: list[int] = list(range(len(models)))

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of copies still being trained."""
        return len(self.active)

    def parameter_groups(self) -> list[list[Tensor]]:
        """The leaf tensors of every copy (active or not), one list per copy."""
        return self.leaves

    def zero_grad(self) -> None:
        for leaves in self.leaves:
            for leaf in leaves:
                leaf.grad = None

    def keep(self, positions: Sequence[int]) -> None:
        """Keep only the active copies at ``positions`` (indices into :attr:`active`)."""
        positions = list(positions)
        index = torch.as_tensor(positions, dtype=torch.long, device=self.running_mean[0].device)
        self.running_mean = [stats.index_select(0, index) for stats in self.running_mean]
        self.running_var = [stats.index_select(0, index) for stats in self.running_var]
        self.active = [self.active[p] for p in positions]
        self.zero_grad()

    def stacked_parameters(self) -> dict[str, Tensor]:
        """Every ConvNet parameter of the active copies, stacked: name -> ``[K, *shape]``.

        The flat layout stacks each copy's vector once and splits it with one op, whose
        backward is a single concatenation.
        """
        if self.per_tensor:
            return {
                slot.name: _stack([self.leaves[k][i] for k in self.active])
                for i, slot in enumerate(self.slots)
            }
        flat = _stack([self.leaves[k][0] for k in self.active])
        pieces = flat.split([slot.numel for slot in self.slots], dim=1)
        return {
            slot.name: piece.view(-1, *slot.shape)
            for slot, piece in zip(self.slots, pieces, strict=True)
        }

    # -- the forward pass ----------------------------------------------------------------------

    def dropout_keep(self, batch: int, device: torch.device) -> Tensor | None:
        """The dropout masks of one training batch, ``[B, K, C]`` booleans (True: kept).

        Copy k's mask is drawn from its own generator; None when the ConvNet has no dropout.
        Drawing them before the forward pass keeps the generators out of a compiled graph.
        """
        if self.dropout == 0.0:
            return None
        return torch.stack(
            [
                torch.rand(
                    (batch, self.features), generator=self.dropout_generators[c], device=device
                )
                >= self.dropout
                for c in self.active
            ],
            dim=1,
        )

    def forward(self, x: Tensor, *, training: bool, keep: Tensor | None = None) -> Tensor:
        """Logits ``[B, K, classes]`` of every active copy for one shared input batch.

        In training, ``keep`` holds the dropout masks (:meth:`dropout_keep`); None draws them.
        """
        k = self.size
        if k == 0:
            raise NOSError("every copy of the stacked ConvNet has been dropped")
        params = self.stacked_parameters()

        def param(name: str) -> Tensor:
            return params[name]

        for layer, stride in enumerate(STRIDES):
            weight = param(f"convs.{layer}.weight")
            bias = param(f"convs.{layer}.bias")
            if layer == 0 or k == 1 or self.grouped:
                x = conv_same(
                    x,
                    weight.reshape(-1, *weight.shape[2:]),
                    bias.reshape(-1),
                    stride,
                    groups=1 if layer == 0 else k,
                )
            else:
                x = torch.cat(
                    [
                        conv_same(part, weight[j], bias[j], stride)
                        for j, part in enumerate(x.chunk(k, dim=1))
                    ],
                    dim=1,
                )
            x = F.batch_norm(
                x,
                self.running_mean[layer].view(-1),
                self.running_var[layer].view(-1),
                param(f"norms.{layer}.weight").reshape(-1),
                param(f"norms.{layer}.bias").reshape(-1),
                training=training,
                momentum=self.bn_momentum,
                eps=BN_EPS,
            )
            x = F.silu(x)
        features = x.mean(dim=(2, 3)).view(x.shape[0], k, -1)
        if training and self.dropout > 0.0:
            if keep is None:
                keep = self.dropout_keep(features.shape[0], features.device)
            assert keep is not None
            features = features * keep.to(features.dtype) / (1.0 - self.dropout)
        logits = torch.einsum("bkc,koc->bko", features, param("fc.weight"))
        return logits + param("fc.bias").unsqueeze(0)

    __call__ = forward

    # -- export --------------------------------------------------------------------------------

    def model(self, position: int) -> ConvNet:
        """Active copy ``position`` as a standalone :class:`ConvNet` holding copies of its state.

        The copy shares its dropout generator with the stack.
        """
        copy_index = self.active[position]
        like = self.leaves[copy_index][0]
        model = ConvNet(
            self.base_width,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            dropout=self.dropout,
            bn_momentum=self.bn_momentum,
        )
        model = model.to(device=like.device, dtype=like.dtype)
        with torch.no_grad():
            if self.per_tensor:
                values = [leaf.detach() for leaf in self.leaves[copy_index]]
            else:
                flat = self.leaves[copy_index][0].detach()
                values = [flat[s.offset : s.offset + s.numel].view(s.shape) for s in self.slots]
            for param, value in zip(model.parameters(), values, strict=True):
                param.copy_(value)
            for layer in range(len(model.norms)):
                mean, var = model.running_stats(layer)
                mean.copy_(self.running_mean[layer][position])
                var.copy_(self.running_var[layer][position])
        model.dropout.generator = self.dropout_generators[copy_index]
        return model


def _stack(tensors: list[Tensor]) -> Tensor:
    """``torch.stack`` without the copy for a single tensor."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)
