"""The integrity check: a cheap filter for degenerate candidates.

A candidate passes when its active graph is acyclic, every active edge decay stays in [0, 1]
on the T = 100 grid, and its optimizer brings the 5-d shifted sphere

    f(x) = sum_i (x_i - b_i)^2,   x0 = [1.1, 0.9, 1.1, 0.9, 1.0],  b = [0.5, 1.5, -0.3, -1.2, 0.75]

below 3.5 within 34 updates for one of the peak learning rates [1, 1e-1, ..., 1e-5], tried in
that order, first unflipped and then with the update's sign flipped. Each run is a fresh
optimizer with T = 35, W = 6, H = 0 (warmup-cosine eta_t, momentum cycling, decays at T = 35)
in float32; the tested value is the loss at the start of the 35th iteration.

:func:`integrity_check` runs all twelve (flip, eta) runs at once, as the rows of one (12, 5)
tensor. :func:`integrity_check_sequential` is the plain reference: one run at a time through
:class:`~optuna_nos.space.compute.CompiledGenome`, stopping at the first pass. The two agree
bit for bit, dropout included: the batched pass draws every run's dropout masks up front, in
the order the sequential runs draw them.

:func:`behaviour_key` hashes what the update computes on fixed probe gradients, so genomes that
print differently but behave the same share a key.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from optuna_nos.core.errors import NOSError
from optuna_nos.core.schedules import lr_schedule, momentum_cycle
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.space.arithmetic import Arithmetic
from optuna_nos.space.compute import CompiledGenome, apply_update
from optuna_nos.space.decays import Decay, decay_phenotype, decay_values, is_valid_decay
from optuna_nos.space.genome import Genome, Momentum, column_name
from optuna_nos.space.notation import format_decay
from optuna_nos.space.operands import (
    AGGMO_BETAS,
    AGGMO_OPERANDS,
    EMA_BETAS,
    N_OPERANDS,
    OPERANDS,
)
from optuna_nos.space.update_ops import BINARY_OPS, EPS, IDENTITY, UNARY_OPS, OpContext

__all__ = [
    "DEFAULT_SEED",
    "HOLD_STEPS",
    "LEARNING_RATES",
    "PASS_BELOW",
    "SPHERE_TARGET",
    "SPHERE_X0",
    "TOTAL_STEPS",
    "WARMUP_STEPS",
    "IntegrityResult",
    "behaviour_key",
    "integrity_check",
    "integrity_check_sequential",
    "sphere_losses",
    "sphere_run",
]

SPHERE_X0: tuple[float, ...] = (1.1, 0.9, 1.1, 0.9, 1.0)
SPHERE_TARGET: tuple[float, ...] = (0.5, 1.5, -0.3, -1.2, 0.75)
#: Peak learning rates, in the order they are tried.
LEARNING_RATES: tuple[float, ...] = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
TOTAL_STEPS = 35
WARMUP_STEPS = 6
HOLD_STEPS = 0
#: A run passes when its tested loss is finite and below this value.
PASS_BELOW = 3.5
#: Seed of the dropout generator when the caller gives none.
DEFAULT_SEED = 0

_DIM = len(SPHERE_X0)
_DTYPE = torch.float32
_X0 = torch.tensor(SPHERE_X0, dtype=_DTYPE)
_TARGET = torch.tensor(SPHERE_TARGET, dtype=_DTYPE)
_NEG_TWO_TARGET = -2.0 * _TARGET
#: Rows of the batched pass: row = flip * 6 + index of eta, the sequential order.
_ROWS = 2 * len(LEARNING_RATES)
#: Only the first 34 updates reach the tested loss; the 35th is applied but never measured.
_MEASURED_UPDATES = TOTAL_STEPS - 1
#: Dropout rate of each dropout op.
_DROPOUT_RATES: dict[int, float] = {
    code: op.dropout_rate for code, op in UNARY_OPS.items() if op.dropout_rate is not None
}


@dataclass(frozen=True)
class IntegrityResult:
    """Outcome of the integrity check.

    ``flip`` is True when the candidate passed only with the update's sign flipped; ``lr`` is
    the first passing peak learning rate and ``loss`` its tested loss (both None on failure).
    ``reason`` says how the candidate passed, or why it failed.
    """

    passed: bool
    flip: bool
    lr: float | None
    loss: float | None
    reason: str


def _passed(flip: bool, lr: float, loss: float) -> IntegrityResult:
    how = "flipped " if flip else ""
    return IntegrityResult(
        True,
        flip,
        lr,
        loss,
        f"passed {how}at lr {lr:g}: 5-d sphere loss {loss:.4f} after 34 updates",
    )


def _no_pass() -> IntegrityResult:
    rates = ", ".join(f"{lr:g}" for lr in LEARNING_RATES)
    return IntegrityResult(
        False,
        False,
        None,
        None,
        f"no learning rate in [{rates}] brings the 5-d sphere loss below "
        f"{PASS_BELOW} in 34 updates, with or without flip",
    )


def _failure(reason: str) -> IntegrityResult:
    return IntegrityResult(False, False, None, None, reason)


# -- pieces shared by every path -------------------------------------------------------------


def _sphere_loss(x: Tensor) -> Tensor:
    diff = x - _TARGET
    return (diff * diff).sum(-1)


def _sphere_gradient(x: Tensor) -> Tensor:
    """grad f = 2 (x - b), computed as -2b + 2x: one rounding, so exactly 2 * fl(x - b)."""
    return torch.add(_NEG_TWO_TARGET, x, alpha=2.0)


def _ema_bias_step(settings: Settings, t: int) -> int:
    """Exponent k of expMovAvg's bias correction 1 - 0.95^k (k = 0 in paper mode, as released)."""
    return 0 if settings.expmovavg_zero_bias_step else t + 1


def _check_arguments(genome: object, settings: object) -> None:
    if not isinstance(genome, Genome):
        raise NOSError(f"the integrity check needs a Genome, got {type(genome).__name__}")
    if not isinstance(settings, Settings):
        raise NOSError(f"settings must be a Settings, got {type(settings).__name__}")


@lru_cache(maxsize=4096)
def _decay_problem(decay: Decay, nan_valid: bool) -> str | None:
    """What is wrong with a decay on the T = 100 grid, or None if it is valid."""
    if is_valid_decay(decay, nan_valid=nan_valid):
        return None
    finite = bool(torch.isfinite(decay_phenotype(decay)).all())
    return "leaves [0, 1]" if finite else "is not finite"


def _structural_failure(genome: Genome, settings: Settings) -> str | None:
    """Why the genome fails before any sphere run (a cycle, a bad decay), or None."""
    try:
        order = genome.topological_order()
    except NOSError as exc:
        return str(exc)
    if settings.ignore_decay_mutation_checks:
        # Paper mode keeps out-of-range mutated decays as released; validity is only checked
        # when a decay is drawn.
        return None
    for consumer in order:
        node = genome.node(consumer)
        for child in node.inputs:
            decay = node.decay_on(child)
            problem = None if decay is None else _decay_problem(decay, settings.nan_decays_valid)
            if problem is not None:
                assert decay is not None
                source = OPERANDS[child].name if child < N_OPERANDS else column_name(child)
                return (
                    f"decay [{format_decay(decay)}] on the edge {source} -> "
                    f"{column_name(consumer)} {problem} on the T = 100 grid"
                )
    return None


def _generator_or_default(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(DEFAULT_SEED)


# -- the sequential reference ----------------------------------------------------------------


def sphere_run(
    genome: Genome,
    lr: float,
    *,
    flip: bool,
    settings: Settings = DEFAULT_SETTINGS,
    generator: torch.Generator | None = None,
) -> float:
    """One sphere run of the integrity test with peak learning rate ``lr``: the tested loss.

    A fresh optimizer and x = x0; 35 iterations, each computing the loss at the current x and
    then applying one update (all three EMA states updated every step, read or not); the
    35th loss, i.e. after 34 updates, is returned, NaN and inf included. Dropout draws from
    ``generator`` (the global generator when None).
    """
    compiled = CompiledGenome(genome, TOTAL_STEPS)
    lrs = lr_schedule(
        lr, TOTAL_STEPS, WARMUP_STEPS, HOLD_STEPS, hold_at_zero=settings.hold_at_zero
    ).tolist()
    mus = momentum_cycle(TOTAL_STEPS, WARMUP_STEPS, HOLD_STEPS).tolist()
    x = _X0.clone()
    emas = (
        torch.zeros(_DIM, dtype=_DTYPE),
        torch.zeros(_DIM, dtype=_DTYPE),
        torch.zeros(_DIM, dtype=_DTYPE),
    )
    buffer = None if genome.momentum == Momentum.NONE else torch.zeros(_DIM, dtype=_DTYPE)
    node_state: dict[int, Tensor] = {}
    ctx = OpContext(generator=generator, arithmetic=Arithmetic.of(settings))
    loss = _sphere_loss(x)
    for t in range(TOTAL_STEPS):
        loss = _sphere_loss(x)
        ctx.ema_bias_step = _ema_bias_step(settings, t)
        update = compiled.step(_sphere_gradient(x), x, emas, node_state, t, ctx)
        apply_update(x, buffer, update, lrs[t], mus[t], genome.momentum, flip)
    return float(loss)


def integrity_check_sequential(
    genome: Genome,
    settings: Settings = DEFAULT_SETTINGS,
    *,
    generator: torch.Generator | None = None,
) -> IntegrityResult:
    """The reference integrity check: one sphere run at a time, stopping at the first pass.

    Returns what :func:`integrity_check` returns, much more slowly.
    """
    _check_arguments(genome, settings)
    try:
        reason = _structural_failure(genome, settings)
        if reason is not None:
            return _failure(reason)
        generator = _generator_or_default(generator)
        for flip in (False, True):
            for lr in LEARNING_RATES:
                loss = sphere_run(genome, lr, flip=flip, settings=settings, generator=generator)
                if math.isfinite(loss) and loss < PASS_BELOW:
                    return _passed(flip, lr, loss)
        return _no_pass()
    except Exception as exc:  # noqa: BLE001 - any exception rejects the candidate
        return _failure(f"exception: {type(exc).__name__}: {exc}")


# -- the batched pass ------------------------------------------------------------------------
#
# The batched pass is a flat list of instructions, one closure per operand, node and update,
# each writing one slot of a shared list (slots 0..19 hold the operands, 20..25 the nodes).
# Every instruction computes what the reference path computes, with the same torch ops in the
# same order, so each row matches its sequential run bit for bit. Constants are 0-dim float32
# tensors: multiplying by one rounds exactly like multiplying by the Python float, at half the
# cost. Only the measured 34 updates run.


@lru_cache(maxsize=64)
def _scalar(value: float) -> Tensor:
    with torch.inference_mode(False):  # cached: keep it an ordinary tensor
        return torch.tensor(value, dtype=_DTYPE)


def _scalars(values: list[float]) -> tuple[Tensor, ...]:
    with torch.inference_mode(False):  # cached by the callers: keep them ordinary tensors
        return torch.tensor(values, dtype=_DTYPE).unbind(0)


_ONE, _EPS = _scalar(1.0), _scalar(EPS)
#: Operands 6 and 7 (read-only).
_ONES = torch.ones(_ROWS, _DIM, dtype=_DTYPE)
_TWOS = torch.full((_ROWS, _DIM), 2.0, dtype=_DTYPE)


@lru_cache(maxsize=2)
def _schedule_tables(hold_at_zero: bool) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Per step t: sigma * eta_t of every row, as a (12, 5) tensor, and mu_t (0-dim).

    The rates are spelled out along the 5 columns: a same-shape product is cheaper than a
    broadcast one and rounds identically.
    """
    with torch.inference_mode(False):  # cached: keep them ordinary tensors
        rows = [
            sign
            * lr_schedule(lr, TOTAL_STEPS, WARMUP_STEPS, HOLD_STEPS, hold_at_zero=hold_at_zero)
            for sign in (-1.0, 1.0)
            for lr in LEARNING_RATES
        ]
        signed_lrs = torch.stack(rows, dim=1).to(_DTYPE)  # (T, 12)
        signed_lrs = signed_lrs.unsqueeze(-1).expand(-1, -1, _DIM).contiguous()
    mus = momentum_cycle(TOTAL_STEPS, WARMUP_STEPS, HOLD_STEPS).tolist()
    return signed_lrs.unbind(0), _scalars(mus)


@lru_cache(maxsize=16)
def _bias_table(
    arithmetic: Arithmetic, beta: float, zero_step: bool = False
) -> tuple[Tensor, ...]:
    """1 - beta^(t+1) for t = 0..T-1, or 1 - beta^0 = 0 throughout with ``zero_step``."""
    return _scalars(
        [arithmetic.bias_correction(beta, 0 if zero_step else t + 1) for t in range(TOTAL_STEPS)]
    )


@lru_cache(maxsize=32)
def _ema_scalars(arithmetic: Arithmetic, beta: float) -> tuple[Tensor, Tensor]:
    """beta and 1 - beta as 0-dim constants."""
    keep, new = arithmetic.coefficients(beta)
    return _scalar(keep), _scalar(new)


@lru_cache(maxsize=4096)
def _decay_factors(decay: Decay) -> tuple[Tensor, ...]:
    """The decay's multiplier at t = 0..T-1 (T = 35), as CompiledGenome tabulates it."""
    return _scalars(decay_values(decay, TOTAL_STEPS).tolist())


class _RowStrided:
    """Copies a (12, 5) value into a buffer whose rows are not contiguous with each other.

    torch's CPU kernels for sigmoid and pow compute whole SIMD blocks with a vectorised formula
    and the tail with a scalar one, and the two differ in the last bit. On this layout every
    row goes through the scalar loop, as the 5-element sequential run does.
    """

    def __init__(self) -> None:
        self.view = torch.empty(_ROWS, _DIM + 3, dtype=_DTYPE)[:, :_DIM]

    def __call__(self, x: Tensor) -> Tensor:
        return self.view.copy_(x)


_UnaryFn = Callable[[Tensor], Tensor]
_BinaryFn = Callable[[Tensor, Tensor], Tensor]
_Edge = Callable[[int], Tensor]
_Instruction = Callable[[int], None]


def _clip_by_norm(x: Tensor) -> Tensor:
    """update_ops' norm for batch_dims = 1, with 1.0 / n written as reciprocal(n)."""
    norm = torch.linalg.vector_norm(x, dim=(1,), keepdim=True)
    return x * norm.reciprocal_().clamp_(max=1.0)


def _unary_fn(code: int) -> _UnaryFn:
    """A stateless, non-dropout unary op on the (12, 5) batch, equal to update_ops' formula.

    Where the formula holds Python constants or intermediates, this runs the same kernels in
    the same order with 0-dim constants, updating its own fresh intermediates in place; torch
    computes ``1.0 / y`` as ``reciprocal(y) * 1.0``, written here as ``reciprocal(y)``.
    """
    if code == 1:
        return lambda x: torch.abs(x).add_(_EPS).log_()
    if code == 2:
        return lambda x: torch.abs(x).sqrt_()
    if code == 5:
        strided = _RowStrided()
        return lambda x: torch.sigmoid(strided(x))
    if code == 6:
        return lambda x: torch.abs(x).add_(_ONE).reciprocal_()
    if code == 7:
        return lambda x: torch.exp(x).add_(_ONE).abs_().add_(_EPS).log_()
    if code == 13:
        return lambda x: torch.add(x, _EPS).reciprocal_()
    if code == 20:
        return _clip_by_norm
    if code == 21:
        return lambda x: x / torch.abs(x).add_(_ONE)
    op, ctx = UNARY_OPS[code].fn, OpContext(batch_dims=1)
    assert op is not None
    return lambda x: op(x, ctx)


def _clip(x: Tensor, y: Tensor) -> Tensor:
    """clip(x, -|y|, |y|), computing |y| once."""
    bound = torch.abs(y)
    return torch.clamp(x, -bound, bound)


def _binary_fn(code: int) -> _BinaryFn:
    """A binary op on the (12, 5) batch, equal to update_ops' formula (see _unary_fn)."""
    if code == 5:
        return lambda x, y: x / (y + _EPS)
    if code == 6:
        return lambda x, y: x / (y * y).add_(_ONE).sqrt_()
    if code == 8:
        keep, new = _scalar(0.95), _scalar(0.05)
        return lambda x, y: (keep * x).add_(new * y)
    if code == 7:
        return _clip
    if code == 9:
        power, strided_x, strided_y = BINARY_OPS[9].fn, _RowStrided(), _RowStrided()
        return lambda x, y: power(strided_x(x), strided_y(y))
    return BINARY_OPS[code].fn


class _BatchedRun:
    """The twelve sphere runs of one genome as one (12, 5) problem, compiled to instructions."""

    def __init__(
        self, genome: Genome, settings: Settings, generator: torch.Generator | None
    ) -> None:
        self.genome = genome
        self.settings = settings
        self.arithmetic = Arithmetic.of(settings)
        self.order = genome.topological_order()
        self.x = _X0.expand(_ROWS, _DIM).clone()
        self.slots: list[Tensor] = [_ONES] * (N_OPERANDS + len(genome.hidden) + 1)
        self.slots[7] = _TWOS
        self.program: list[_Instruction] = []
        #: Slot to read for a column: an undecayed identity node reads its input's slot.
        self.source: dict[int, int] = {}
        used = {c for column in self.order for c in genome.node(column).inputs if c < N_OPERANDS}
        self._emit_operands(used)
        masks = self._dropout_masks(generator)
        for column in self.order:
            self._emit_node(column, masks.get(column))
        self._emit_update(genome.momentum)

    def losses(self) -> Tensor:
        """The tested loss of every row: the loss after 34 updates, shape (12,)."""
        program = self.program
        for t in range(_MEASURED_UPDATES):
            for instruction in program:
                instruction(t)
        return _sphere_loss(self.x)

    # -- operands (slot k = operand k, as operands.py computes it) ---------------------------

    def _emit_operands(self, used: set[int]) -> None:
        """One instruction for g, its powers, the EMA states and their bias corrections."""
        slots, x, arithmetic = self.slots, self.x, self.arithmetic
        # Which bias-corrected EMAs (operands 3..5) and raw EMA states the operands read.
        hats = (bool(used & {3, 13, 14}), bool(used & {4, 15}), bool(used & {5, 16}))
        raw = tuple(hat or aggmo in used for hat, aggmo in zip(hats, AGGMO_OPERANDS, strict=True))
        need_g3 = raw[2] or bool(used & {2, 16, 19})
        need_g2 = raw[1] or need_g3 or bool(used & {1, 15, 18})
        states = {k: torch.zeros(_ROWS, _DIM, dtype=_DTYPE) for k in range(3) if raw[k]}
        # (state, slot of g^(k+1), beta, 1 - beta, bias table or None) per EMA in use
        emas = [
            (
                states[k],
                k,
                *_ema_scalars(arithmetic, EMA_BETAS[k]),
                _bias_table(arithmetic, EMA_BETAS[k]) if hats[k] else None,
            )
            for k in states
        ]

        def gradient_and_moments(t: int) -> None:
            g = slots[0] = _sphere_gradient(x)
            if need_g2:
                g2 = slots[1] = g * g
                if need_g3:
                    slots[2] = g2 * g
            for state, power, keep, new, bias in emas:
                state.mul_(keep).add_(slots[power] * new)  # as Arithmetic.ema_
                if bias is not None:
                    slots[3 + power] = state / bias[t]

        self.program.append(gradient_and_moments)
        for index in sorted(used - set(range(8))):
            self.program.append(self._operand(index, states))

    def _operand(self, index: int, states: dict[int, Tensor]) -> _Instruction:
        """Operands 8..19: weight terms, signs, QHM blends and AggMo means."""
        slots, x = self.slots, self.x
        if 8 <= index <= 11:
            scale = _scalar((1e-6, 1e-5, 1e-4, 1e-3)[index - 8])
            return lambda t: slots.__setitem__(index, scale * x)
        if index in (12, 13):
            source, sign = (0 if index == 12 else 3), self.arithmetic.sign
            return lambda t: slots.__setitem__(index, sign(slots[source]))
        if 14 <= index <= 16:  # QHM: (1 - beta) g^(k+1) + beta hat_k, as Arithmetic.qhm
            k = index - 14
            b, a = _ema_scalars(self.arithmetic, (0.7, 0.95, 0.99)[k])
            return lambda t: slots.__setitem__(index, (a * slots[k]).add_(b * slots[3 + k]))
        # AggMo: (-x + (b1 state - x) + (b2 state - x)) / 3, as Arithmetic.aggmo.
        k = AGGMO_OPERANDS.index(index)
        state = states[k]
        (b1, _), (b2, _) = (_ema_scalars(self.arithmetic, beta) for beta in AGGMO_BETAS[k])
        three = _scalar(3.0)

        def aggmo(t: int) -> None:
            x = slots[k]
            slots[index] = (
                torch.neg(x).add_((b1 * state).sub_(x)).add_((b2 * state).sub_(x)).div_(three)
            )

        return aggmo

    # -- nodes -------------------------------------------------------------------------------

    def _dropout_masks(self, generator: torch.Generator | None) -> dict[int, tuple[Tensor, ...]]:
        """Keep masks per dropout node and step, drawn in the sequential runs' order.

        Sequential run r draws, for t = 0..34 and each dropout node in topological order, one
        uniform 5-vector; one draw of shape (12, 35, nodes, 5) is that same stream.
        """
        genome = self.genome
        columns = [
            c
            for c in self.order
            if not genome.node(c).binary and genome.node(c).unary_op in _DROPOUT_RATES
        ]
        if not columns:
            return {}
        uniform = torch.rand(
            (_ROWS, TOTAL_STEPS, len(columns), _DIM), generator=_generator_or_default(generator)
        )
        return {
            column: (uniform[:, :, k, :] >= _DROPOUT_RATES[genome.node(column).unary_op]).unbind(1)
            for k, column in enumerate(columns)
        }

    def _edge(self, column: int, child: int) -> tuple[int, tuple[Tensor, ...] | None]:
        """Where the value flowing into ``column`` from ``child`` sits, and its decay table."""
        decay = self.genome.node(column).decay_on(child)
        return self.source.get(child, child), None if decay is None else _decay_factors(decay)

    def _reader(self, column: int, child: int) -> _Edge:
        """The value flowing into ``column`` from ``child`` at step t, its decay applied."""
        slots = self.slots
        index, factors = self._edge(column, child)
        if factors is None:
            return lambda t: slots[index]
        return lambda t: slots[index] * factors[t]

    def _emit_node(self, column: int, keep: tuple[Tensor, ...] | None) -> None:
        node = self.genome.node(column)
        slots, emit = self.slots, self.program.append
        edges = [self._edge(column, child) for child in node.inputs]
        undecayed = all(factors is None for _, factors in edges)
        if not node.binary and node.unary_op == IDENTITY and undecayed:
            self.source[column] = edges[0][0]  # consumers read the input's slot directly
            return
        first = self._reader(column, node.inputs[0])
        if node.binary:
            binary = _binary_fn(node.binary_op)
            if undecayed:
                a, b = edges[0][0], edges[1][0]
                emit(lambda t: slots.__setitem__(column, binary(slots[a], slots[b])))
            else:
                second = self._reader(column, node.inputs[1])
                emit(lambda t: slots.__setitem__(column, binary(first(t), second(t))))
        elif keep is not None:  # dropout, as update_ops._dropout with a pre-drawn mask
            scale, zero = _scalar(1.0 - _DROPOUT_RATES[node.unary_op]), _scalar(0.0)
            emit(lambda t: slots.__setitem__(column, torch.where(keep[t], first(t) / scale, zero)))
        elif UNARY_OPS[node.unary_op].stateful:
            emit(self._stateful(node.unary_op, column, first))
        else:
            unary = _unary_fn(node.unary_op)
            if undecayed:
                a = edges[0][0]
                emit(lambda t: slots.__setitem__(column, unary(slots[a])))
            else:
                emit(lambda t: slots.__setitem__(column, unary(first(t))))

    def _stateful(self, code: int, column: int, arg: _Edge) -> _Instruction:
        """expMovAvg, deltaChange or MaxValue, with a zero state per row at the start."""
        slots = self.slots
        state = [torch.zeros(_ROWS, _DIM, dtype=_DTYPE)]
        if code == 22:  # n <- 0.95 n + 0.05 x ; out = n / (1 - 0.95^k), as update_ops
            keep, new = _ema_scalars(self.arithmetic, 0.95)
            bias = _bias_table(self.arithmetic, 0.95, self.settings.expmovavg_zero_bias_step)

            def exp_mov_avg(t: int) -> None:
                state[0] = keep * state[0] + new * arg(t)
                slots[column] = state[0] / bias[t]

            return exp_mov_avg
        step, ctx = UNARY_OPS[code].step, OpContext(batch_dims=1)
        assert step is not None

        def run(t: int) -> None:
            slots[column], state[0] = step(arg(t), state[0], ctx)

        return run

    # -- parameter update --------------------------------------------------------------------

    def _emit_update(self, momentum: Momentum) -> None:
        """apply_update with sigma * eta_t per row."""
        slots, x = self.slots, self.x
        root = self.source.get(self.order[-1], self.order[-1])
        signed_lrs, mus = _schedule_tables(self.settings.hold_at_zero)

        def plain(t: int) -> None:
            x.add_(slots[root] * signed_lrs[t])

        if momentum == Momentum.NONE:
            self.program.append(plain)
            return
        buffer = torch.zeros(_ROWS, _DIM, dtype=_DTYPE)
        nesterov = momentum == Momentum.NESTEROV

        def with_momentum(t: int) -> None:
            step = slots[root] * signed_lrs[t]
            buffer.mul_(mus[t]).add_(step)
            x.add_(buffer)
            if nesterov:
                x.add_(step)

        self.program.append(with_momentum)


def sphere_losses(
    genome: Genome,
    settings: Settings = DEFAULT_SETTINGS,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The tested loss of all twelve sphere runs in one pass, shape (2, 6): [flip, eta].

    Equal, bit for bit, to :func:`sphere_run` for every (flip, eta) called in sequential order
    with one generator seeded alike. Raises :class:`NOSError` on a cycle in the active graph.
    """
    _check_arguments(genome, settings)
    with torch.inference_mode():
        losses = _BatchedRun(genome, settings, generator).losses()
    return losses.view(2, len(LEARNING_RATES)).clone()


def integrity_check(
    genome: Genome,
    settings: Settings = DEFAULT_SETTINGS,
    *,
    generator: torch.Generator | None = None,
) -> IntegrityResult:
    """The integrity check: an acyclic active graph, decays in [0, 1], then the sphere test.

    All twelve (flip, eta) runs go through one (12, 5) tensor pass; the first passing row in
    the sequential order (unflipped eta = 1, 1e-1, ..., 1e-5, then flipped) sets ``flip`` and
    ``lr``, exactly as :func:`integrity_check_sequential` does. Dropout draws from
    ``generator``, or from a fresh generator seeded with :data:`DEFAULT_SEED` when None. Any
    exception while checking rejects the candidate with the exception as the reason.
    """
    _check_arguments(genome, settings)
    try:
        reason = _structural_failure(genome, settings)
        if reason is not None:
            return _failure(reason)
        with torch.inference_mode():
            losses = _BatchedRun(genome, settings, generator).losses().tolist()
        for row, loss in enumerate(losses):
            if math.isfinite(loss) and loss < PASS_BELOW:
                flip, lr = divmod(row, len(LEARNING_RATES))
                return _passed(bool(flip), LEARNING_RATES[lr], loss)
        return _no_pass()
    except Exception as exc:  # noqa: BLE001 - any exception rejects the candidate
        return _failure(f"exception: {type(exc).__name__}: {exc}")


# -- behaviour key ---------------------------------------------------------------------------

_PROBE_STEPS = 12
_PROBE_SHAPE = (3, 4)
_PROBE_SEED = 20240409
_PROBE_DIGITS = 9


@lru_cache(maxsize=1)
def _probe() -> tuple[Tensor, tuple[Tensor, ...]]:
    """Fixed float64 parameters and gradients of magnitudes 1e-4..1e2, with exact zeros."""
    gen = torch.Generator().manual_seed(_PROBE_SEED)
    w = 2.0 * torch.randn(_PROBE_SHAPE, generator=gen, dtype=torch.float64)
    grads = []
    for _ in range(_PROBE_STEPS):
        direction = torch.randn(_PROBE_SHAPE, generator=gen, dtype=torch.float64)
        exponent = torch.rand(_PROBE_SHAPE, generator=gen, dtype=torch.float64) * 6.0 - 4.0
        g = direction * torch.pow(10.0, exponent)
        g[torch.rand(_PROBE_SHAPE, generator=gen, dtype=torch.float64) < 0.1] = 0.0
        grads.append(g)
    return w, tuple(grads)


def _token(value: float) -> str:
    """``value`` to 9 significant digits; NaN and infinities as words; -0 as 0."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value + 0.0:.{_PROBE_DIGITS}g}"


def behaviour_key(genome: Genome, settings: Settings = DEFAULT_SETTINGS) -> str:
    """A hash of what the genome's update computes, for behavioural deduplication.

    U is evaluated in float64 for one fixed parameter tensor on a fixed, seeded sequence of 12
    probe gradients with T = 12, so EMA states, stateful ops and decays all count; dropout
    draws from a generator with a fixed seed. Every value, rounded to 9 significant digits
    (NaN and infinities as words), is hashed with the momentum type. Genomes that print
    differently but compute the same update, such as ``id(id(g))`` and ``-(-(g))``, share a
    key. Flip is not part of it: it is an outcome of the integrity check, not a gene.
    Raises :class:`NOSError` on a cycle in the active graph.
    """
    _check_arguments(genome, settings)
    w, grads = _probe()
    compiled = CompiledGenome(genome, _PROBE_STEPS)
    emas = (
        torch.zeros(_PROBE_SHAPE, dtype=torch.float64),
        torch.zeros(_PROBE_SHAPE, dtype=torch.float64),
        torch.zeros(_PROBE_SHAPE, dtype=torch.float64),
    )
    ctx = OpContext(
        generator=torch.Generator().manual_seed(_PROBE_SEED), arithmetic=Arithmetic.of(settings)
    )
    node_state: dict[int, Tensor] = {}
    tokens = [genome.momentum.name]
    for t, g in enumerate(grads):
        ctx.ema_bias_step = _ema_bias_step(settings, t)
        update = compiled.step(g, w, emas, node_state, t, ctx)
        tokens.extend(_token(u) for u in update.flatten().tolist())
    return hashlib.sha256(",".join(tokens).encode()).hexdigest()[:24]
