"""The proxy's training step through ``torch.compile``: forward, loss and (optionally) update.

:func:`stack_losses` is the reference forward pass and loss of one training batch;
:class:`StackGraphs` runs it, and the evaluation forward pass, as compiled graphs. The
``compile`` option of a run chooses how much is compiled:

* ``"none"``: everything eager (the default);
* ``"model"``: the stacked ConvNet's forward pass and loss (their backward comes compiled
  with them);
* ``"all"``: the model, and every genome optimizer's step as well
  (:class:`~optuna_nos.optim.compiled_step.CompiledGenomeOptimizer`), at the price of one
  compilation per optimizer (a candidate's screen stages and final run each build one).

Graphs are shared by every stack of the same shape in a process, one per (copies, width,
dropout, parameter dtype, layout, batch shape and dtype, device, autocast, training or
evaluation), each under its own code object so that any number of shapes stay compiled;
inductor's on-disk cache also spares later processes most of the compilation. The dropout
masks are drawn eagerly from each copy's generator
(:meth:`~proxy.stack.StackedConvNet.dropout_keep`) and enter the graph as an input, so a
compiled run draws exactly the eager run's masks.

``compile_mode`` is handed to ``torch.compile``; ``"reduce-overhead"`` adds CUDA graphs on a
GPU, for which the BN running statistics are marked as static inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from optuna_nos.core.errors import NOSError
from optuna_nos.optim.compiled_step import with_own_code
from proxy.stack import StackedConvNet

__all__ = [
    "COMPILE_CHOICES",
    "COMPILE_MODES",
    "StackGraphs",
    "check_compile",
    "shared_graphs",
    "stack_logits",
    "stack_losses",
]

#: What a run may compile (see the module docstring).
COMPILE_CHOICES = ("none", "model", "all")
#: ``torch.compile`` modes a run accepts (None: torch's default).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile(compile: str, mode: str | None) -> None:
    """Raise a one-line :class:`NOSError` unless ``compile`` and ``mode`` are allowed values."""
    if compile not in COMPILE_CHOICES:
        raise NOSError(f"compile must be one of {', '.join(COMPILE_CHOICES)}, got {compile!r}")
    if mode is not None and mode not in COMPILE_MODES:
        raise NOSError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode is not None and compile == "none":
        raise NOSError(f"compile_mode={mode!r} needs compile='model' or 'all', got 'none'")


def stack_losses(
    stack: StackedConvNet, images: Tensor, labels: Tensor, keep: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Logits ``[B, K, classes]`` and each copy's mean cross-entropy ``[K]`` of one batch.

    loss_k = (1 / B) sum_b -log softmax(logits[b, k])[labels[b]], in training mode with the
    dropout masks ``keep``.
    """
    logits = stack.forward(images, training=True, keep=keep)
    targets = labels[:, None].expand(-1, stack.size)
    losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(dim=0)
    return logits, losses


def stack_logits(stack: StackedConvNet, images: Tensor) -> Tensor:
    """Evaluation-mode logits ``[B, K, classes]`` (BN running statistics, no dropout)."""
    return stack.forward(images, training=False)


class StackGraphs:
    """Compiled :func:`stack_losses` and :func:`stack_logits`, one graph per shape."""

    def __init__(self, mode: str | None = None) -> None:
        check_compile("model", mode)
        self.mode = mode
        self._graphs: dict[tuple[Any, ...], Callable[..., Any]] = {}

    def losses(
        self, stack: StackedConvNet, images: Tensor, labels: Tensor, keep: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """:func:`stack_losses`, compiled."""
        graph = self._graph(stack_losses, stack, images, keep is not None)
        result: tuple[Tensor, Tensor] = graph(stack, images, labels, keep)
        return result

    def logits(self, stack: StackedConvNet, images: Tensor) -> Tensor:
        """:func:`stack_logits`, compiled."""
        graph = self._graph(stack_logits, stack, images, False)
        result: Tensor = graph(stack, images)
        return result

    def _graph(
        self, function: Callable[..., Any], stack: StackedConvNet, images: Tensor, masked: bool
    ) -> Callable[..., Any]:
        """The compiled ``function`` for this call's shape, ready to be called once."""
        key = (
            function.__name__,
            stack.size,
            stack.base_width,
            stack.dropout,
            stack.leaves[0][0].dtype,
            stack.per_tensor,
            stack.grouped,
            masked,
            tuple(images.shape),
            images.stride(),
            images.dtype,
            images.device,
            torch.is_autocast_enabled(images.device.type),
        )
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = torch.compile(
                with_own_code(function), mode=self.mode, dynamic=False
            )
        if self.mode == "reduce-overhead":
            for stats in (*stack.running_mean, *stack.running_var):
                torch._dynamo.mark_static_address(stats)
            torch.compiler.cudagraph_mark_step_begin()
        return graph


#: The graphs of each compile mode, shared by every run in the process.
_SHARED: dict[str | None, StackGraphs] = {}


def shared_graphs(mode: str | None) -> StackGraphs:
    """The process's :class:`StackGraphs` for ``mode`` (created on first use); "default" and
    None compile alike, so they share one."""
    key = None if mode == "default" else mode
    graphs = _SHARED.get(key)
    if graphs is None:
        graphs = _SHARED[key] = StackGraphs(key)
    return graphs
