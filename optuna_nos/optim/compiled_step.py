"""``CompiledGenomeOptimizer``: the list step of ``GenomeOptimizer`` through ``torch.compile``.

One graph serves every step: all step-dependent numbers (eta_t of each tensor, mu_t, the bias
corrections 1 - beta^(t+1) of v, s, lam, the ``expMovAvg`` correction 1 - 0.95^k and the decay
d(t) of each decayed edge) are computed in Python exactly as the eager path computes them and
enter the graph as one float64 tensor (the same tensor each step, its values rewritten), so
nothing step-dependent is baked in as a constant and the graph never recompiles as t moves.
The per-tensor states enter as flat lists of tensors, one list per state key.

The graph issues the eager path's arithmetic on the same values; the compiler may fuse the
kernels, so results agree with the eager path to rounding (the tests check float64 parameters
and states against the eager path to a relative 1e-12 over many steps).
Genomes with a dropout node take the eager path (their random masks need the generators).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from optuna_nos.optim.torch_optim import GenomeOptimizer, _node_state_key, _Work, foreach_update
from optuna_nos.space.arithmetic import Arithmetic
from optuna_nos.space.operands import AGGMO_BETAS, EMA_BETAS
from optuna_nos.space.update_ops import OpContext

__all__ = ["CompiledGenomeOptimizer", "with_own_code"]

#: The betas whose bias correction the step reads: v, s, lam, then ``expMovAvg``'s 0.95.
_CORRECTED_BETAS: tuple[float, ...] = (*EMA_BETAS, 0.95)
#: Every beta the step blends with: EMAs, QHM blends, AggMo means, ``expMovAvg``.
_BLEND_BETAS: tuple[float, ...] = (
    *EMA_BETAS,
    0.95,
    0.7,
    *(beta for pair in AGGMO_BETAS for beta in pair),
)


class _StepArithmetic(Arithmetic):
    """An :class:`Arithmetic` whose bias corrections are this step's tensors."""

    corrections: dict[float, Tensor]
    coefficient_table: dict[float, tuple[float, float]]

    def __init__(
        self,
        base: Arithmetic,
        corrections: dict[float, Tensor],
        coefficients: dict[float, tuple[float, float]],
    ) -> None:
        super().__init__(float32_ema=base.float32_ema, nan_sign=base.nan_sign)
        object.__setattr__(self, "corrections", corrections)
        object.__setattr__(self, "coefficient_table", coefficients)

    def coefficients(self, beta: float) -> tuple[float, float]:
        """(beta, 1 - beta) of the base arithmetic, looked up without the cache wrapper."""
        found = self.coefficient_table.get(beta)
        return found if found is not None else super().coefficients(beta)

    def bias_correction(self, beta: float, step: int) -> Any:  # a 0-d tensor
        return self.corrections[beta]


def with_own_code(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` over a copy of its code object (a bound method stays bound).

    ``torch.compile`` caches graphs per code object, up to a fixed number of them; past that it
    runs the function uncompiled. A caller that needs many graphs of one function (one per
    optimizer, one per shape) compiles a copy for each, and any number of them stay compiled.
    """
    if isinstance(function, types.MethodType):
        return types.MethodType(with_own_code(function.__func__), function.__self__)
    assert isinstance(function, types.FunctionType)
    return types.FunctionType(
        function.__code__.replace(),
        function.__globals__,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )


class CompiledGenomeOptimizer(GenomeOptimizer):
    """A :class:`GenomeOptimizer` whose list step runs as one compiled graph.

    Takes the arguments of :class:`GenomeOptimizer` (``foreach`` must stay on) plus
    ``backend`` and ``mode`` for ``torch.compile``. The step is the same update; see the module
    docstring for how closely it matches the eager one.
    """

    def __init__(
        self, *args: Any, backend: str = "inductor", mode: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._edges = tuple(self._compiled.decay_tables)
        self._keys = self._state_keys()
        self._scalar_buffers: dict[tuple[torch.device, int], tuple[Tensor, Tensor]] = {}
        self._node_keys = tuple(_node_state_key(c) for c in self._compiled.stateful_nodes)
        # Computed here, outside the graph (paper mode computes them with torch ops).
        self._coefficients = {beta: self._arithmetic.coefficients(beta) for beta in _BLEND_BETAS}
        self._graph: Callable[..., list[list[Tensor]]] = torch.compile(
            with_own_code(self._update), backend=backend, mode=mode, dynamic=False
        )

    def _step_foreach(self, work: list[_Work], t: int) -> None:
        if self._uses_dropout:
            super()._step_foreach(work, t)
            return
        by_device: dict[torch.device, list[_Work]] = {}
        for item in work:
            by_device.setdefault(item.param.device, []).append(item)
        for device, items in by_device.items():
            scalars = self._scalar_tensor(device, self._scalars(items, t))
            states = [item.state for item in items]
            columns = [[state[key] for state in states] for key in self._keys]
            node_columns = self._graph(
                [item.param for item in items], [item.grad for item in items], columns, scalars
            )
            for key, column in zip(self._node_keys, node_columns, strict=True):
                for state, tensor in zip(states, column, strict=True):
                    state[key] = tensor

    def _scalar_tensor(self, device: torch.device, values: list[float]) -> Tensor:
        """``values`` as a float64 tensor on ``device``: the same tensor every step, rewritten.

        Handing the graph a new tensor each step costs more than writing into an old one.
        """
        key = (device, len(values))
        buffers = self._scalar_buffers.get(key)
        if buffers is None:
            host = torch.empty(len(values), dtype=torch.float64)
            on_device = host if device.type == "cpu" else torch.empty_like(host, device=device)
            buffers = self._scalar_buffers[key] = (host, on_device)
        host, on_device = buffers
        host.numpy()[:] = values
        if on_device is not host:
            on_device.copy_(host)
        return on_device

    def _scalars(self, items: list[_Work], t: int) -> list[float]:
        """[eta_t per tensor, mu_t, 1 - beta^k per corrected beta, d(t) per decayed edge]."""
        ema_step = self._context(torch.device("cpu"), t).ema_bias_step
        steps = (t + 1, t + 1, t + 1, ema_step)
        corrections = [
            self._arithmetic.bias_correction(beta, k)
            for beta, k in zip(_CORRECTED_BETAS, steps, strict=True)
        ]
        decays = [self._compiled.decay_tables[edge][t] for edge in self._edges]
        return [*(item.lr for item in items), self.momentum_at(t), *corrections, *decays]

    def _update(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        columns: list[list[Tensor]],
        scalars: Tensor,
    ) -> list[list[Tensor]]:
        """The step on flat lists: ``columns[i][j]`` is state ``self._keys[i]`` of tensor j.

        Returns the new state of each stateful node, one list per node (the ops replace it).
        """
        n = len(params)
        corrections = {beta: scalars[n + 1 + i] for i, beta in enumerate(_CORRECTED_BETAS)}
        first_decay = n + 1 + len(_CORRECTED_BETAS)
        decays = {edge: scalars[first_decay + i] for i, edge in enumerate(self._edges)}
        arithmetic = _StepArithmetic(self._arithmetic, corrections, self._coefficients)
        ctx = OpContext(arithmetic=arithmetic)
        states = [
            {key: column[j] for key, column in zip(self._keys, columns, strict=True)}
            for j in range(n)
        ]
        foreach_update(
            self._compiled,
            arithmetic,
            params,
            grads,
            states,
            [scalars[i] for i in range(n)],
            scalars[n],
            ctx,
            lambda column, child: decays.get((column, child)),
        )
        return [[state[key] for state in states] for key in self._node_keys]
