"""Evaluate a genome's update U on tensors: the readable reference path.

:class:`CompiledGenome` fixes the evaluation order, the operands read and the per-edge decay
tables of one genome for one run length. :meth:`CompiledGenome.update` then computes U for
one parameter tensor (or a batch of independent problems along leading dimensions), and
:meth:`CompiledGenome.step` is one whole reference step before the parameter update: the EMA
states, the operand inputs, then U. Every reference evaluation (the optimizer's readable
path, the sequential integrity check, the behaviour key) goes through it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optuna_nos.core.errors import NOSError
from optuna_nos.space.arithmetic import Arithmetic
from optuna_nos.space.decays import decay_values
from optuna_nos.space.genome import Genome, Momentum
from optuna_nos.space.operands import EMA_BETAS, N_OPERANDS, OPERANDS, OperandInputs
from optuna_nos.space.update_ops import BINARY_OPS, UNARY_OPS, OpContext

__all__ = ["CompiledGenome", "apply_update", "update_emas"]


def update_emas(g: Tensor, v: Tensor, s: Tensor, lam: Tensor, arithmetic: Arithmetic) -> None:
    """v <- 0.9 v + 0.1 g ; s <- 0.99 s + 0.01 g^2 ; lam <- 0.999 lam + 0.001 g^3, in place.

    Each in the paper's form beta * state + (1 - beta) * x (a lerp would turn inf into NaN),
    with the constants of ``arithmetic``.
    """
    g_sq = g * g
    for state, x, beta in zip((v, s, lam), (g, g_sq, g_sq * g), EMA_BETAS, strict=True):
        arithmetic.ema_(state, x, beta)


class CompiledGenome:
    """A genome prepared for repeated evaluation over a run of ``total_steps`` steps.

    ``total_steps`` may be None only when no active edge carries a decay.
    """

    def __init__(self, genome: Genome, total_steps: int | None) -> None:
        self.genome = genome
        self.total_steps = total_steps
        self.order: tuple[int, ...] = genome.topological_order()
        self.operands: tuple[int, ...] = tuple(
            sorted({c for col in self.order for c in genome.node(col).inputs if c < N_OPERANDS})
        )
        self.stateful_nodes: tuple[int, ...] = tuple(
            col
            for col in self.order
            if not genome.node(col).binary and UNARY_OPS[genome.node(col).unary_op].stateful
        )
        self.decay_tables: dict[tuple[int, int], list[float]] = {}
        for consumer, child, decay in genome.active_edges():
            if decay is None:
                continue
            if total_steps is None:
                raise NOSError(
                    "this genome carries decays, which need total_steps (the run length)"
                )
            self.decay_tables[(consumer, child)] = decay_values(decay, total_steps).tolist()

    def edge_factor(self, consumer: int, child: int, t: int) -> float | None:
        """The decay multiplier on an edge at step t, or None for an undecayed edge."""
        table = self.decay_tables.get((consumer, child))
        if table is None:
            return None
        if t >= len(table):
            raise NOSError(f"step {t} is past total_steps = {len(table)}")
        return table[t]

    def update(
        self,
        inputs: OperandInputs,
        node_state: dict[int, Tensor],
        ctx: OpContext,
    ) -> Tensor:
        """U for one parameter tensor at step ``inputs.t``.

        ``node_state`` holds the state of each stateful node (zeros when missing) and is
        updated in place. Decays multiply the edge value before the consumer's op, and a
        stateful op feeds the decayed value into its state.
        """
        t = inputs.t
        values: dict[int, Tensor] = {c: OPERANDS[c].fn(inputs) for c in self.operands}
        for column in self.order:
            node = self.genome.node(column)
            args = []
            for child in node.inputs:
                value = values[child]
                factor = self.edge_factor(column, child, t)
                args.append(value if factor is None else value * factor)
            if node.binary:
                values[column] = BINARY_OPS[node.binary_op].fn(args[0], args[1])
                continue
            op = UNARY_OPS[node.unary_op]
            if op.step is not None:
                state = node_state.get(column)
                if state is None:
                    state = args[0].new_zeros(args[0].shape)
                values[column], node_state[column] = op.step(args[0], state, ctx)
            else:
                assert op.fn is not None
                values[column] = op.fn(args[0], ctx)
        return values[self.order[-1]]

    def step(
        self,
        g: Tensor,
        w: Tensor,
        emas: tuple[Tensor, Tensor, Tensor],
        node_state: dict[int, Tensor],
        t: int,
        ctx: OpContext,
    ) -> Tensor:
        """One reference step for one tensor with gradient ``g`` and value ``w``: U at step t.

        The EMA states ``emas`` = (v, s, lam) take g first (in place, :func:`update_emas`, with
        ``ctx.arithmetic``); the operands then read them, and U is :meth:`update`.
        """
        v, s, lam = emas
        update_emas(g, v, s, lam, ctx.arithmetic)
        inputs = OperandInputs(g=g, w=w, v=v, s=s, lam=lam, t=t, arithmetic=ctx.arithmetic)
        return self.update(inputs, node_state, ctx)


def apply_update(
    param: Tensor,
    buffer: Tensor | None,
    update: Tensor,
    lr: float | Tensor,
    mu: float | Tensor,
    momentum: Momentum,
    flip: bool | Tensor,
) -> None:
    """Apply U to ``param`` in place with the genome's momentum type.

    With sigma = +1 when flipped and -1 otherwise:

    * none:      w <- w + sigma*lr*U
    * momentum:  m <- mu*m + sigma*lr*U ;  w <- w + m
    * Nesterov (search form): m <- mu*m + sigma*lr*U ;  w <- w + m + sigma*lr*U

    ``lr``, ``mu`` and ``flip`` may be tensors broadcasting against ``param`` (the batched
    integrity check runs many learning rates and both signs at once). ``buffer`` (the momentum
    buffer m) is updated in place and must be given unless the type is none.
    """
    if isinstance(flip, bool):
        step = update * (lr if flip else -lr)
    else:
        step = update * torch.where(flip, 1.0, -1.0).to(update.dtype) * lr
    if momentum == Momentum.NONE:
        param.add_(step)
        return
    assert buffer is not None, "momentum types need a buffer"
    buffer.mul_(mu).add_(step)
    param.add_(buffer)
    if momentum == Momentum.NESTEROV:
        param.add_(step)
