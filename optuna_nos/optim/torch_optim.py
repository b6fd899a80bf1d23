"""``GenomeOptimizer``: a :class:`torch.optim.Optimizer` that applies a genome.

Two evaluation paths compute the same step:

* the **reference** path (``foreach=False``) loops over the parameters and calls
  :meth:`CompiledGenome.step` and :func:`apply_update` on one tensor at a time;
* the **foreach** path (the default) runs every op of the genome once over the list of all
  parameter tensors with ``torch._foreach_*`` kernels, and falls back to the reference op,
  tensor by tensor, where no list kernel exists (``norm``, dropout, stateful ops, ...).

The foreach path issues exactly the reference's sequence of elementwise kernels for each
tensor, so on the CPU the two paths agree bit for bit (the tests check this in float64 for
every operand and op). On CUDA the fused list kernels may round differently in the last bit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT

from optuna_nos.core.errors import NOSError
from optuna_nos.core.schedules import check_schedule_steps, momentum_cycle
from optuna_nos.core.schedules import lr_schedule as _lr_schedule
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.space.arithmetic import Arithmetic
from optuna_nos.space.compute import CompiledGenome, apply_update
from optuna_nos.space.genome import Genome, Momentum, column_name
from optuna_nos.space.operands import EMA_BETAS, OPERANDS, OperandInputs
from optuna_nos.space.update_ops import BINARY_OPS, DROPOUT_OPS, EPS, UNARY_OPS, OpContext

__all__ = ["GenomeOptimizer", "foreach_update"]

Tensors = list[Tensor] | tuple[Tensor, ...]

_EMA_KEYS = ("v", "s", "lam")
_BUFFER_KEY = "momentum_buffer"
_STATE_DICT_KEY = "genome_optimizer"


def _node_state_key(column: int) -> str:
    """State key of a stateful node: ``node_n0``..``node_n4`` or ``node_root``."""
    return f"node_{column_name(column)}"


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise NOSError(f"{name} must be a real number, got {value!r}")
    as_float = float(value)
    if not math.isfinite(as_float):
        raise NOSError(f"{name} must be finite, got {value!r}")
    return as_float


def _check_lr(value: object) -> float:
    lr = _check_real("lr", value)
    if lr < 0.0:
        raise NOSError(f"lr must be >= 0, got {value!r}")
    return lr


@dataclass
class _Work:
    """One parameter tensor that takes part in this step."""

    param: Tensor
    grad: Tensor
    state: dict[str, Any]
    lr: float


class GenomeOptimizer(Optimizer):
    r"""Train with the update rule a genome describes.

    Every call to :meth:`step` is one step t (0-based, shared by all tensors). For each
    parameter tensor w with gradient g:

    .. code-block:: text

        v   <- 0.9 v + 0.1 g          s <- 0.99 s + 0.01 g^2       lam <- 0.999 lam + 0.001 g^3
        v_hat = v / (1 - 0.9^(t+1))   (likewise s_hat, lam_hat)
        sign(NaN) = 0 (torch), NaN in paper mode
        U   = root of the genome's graph over the operands, each edge value multiplied by
              its decay d(t) before the consumer's op
        sigma = +1 if genome.flip else -1
        none:      w <- w + sigma eta_t U
        momentum:  m <- mu_t m + sigma eta_t U ;  w <- w + m
        Nesterov:  m <- mu_t m + sigma eta_t U ;  w <- w + m + sigma eta_t U   (search form)

    with the schedules (``lr`` = eta of each param group; W, H, T = ``warmup_steps``,
    ``hold_steps``, ``total_steps``)

    .. code-block:: text

        eta_t = eta t / W                                      t < W
        eta_t = eta  (0 in paper mode)                         H > 0 and W <= t <= W + H
        eta_t = eta/2 (1 + cos(pi (t - W - H) / (T - W - H)))  otherwise
        mu_t  = linspace(0.95, 0.85, W) ++ [0.85] * H ++ linspace(0.85, 0.95, T - W - H)

    Args:
        params: tensors or param-group dicts, as for any torch optimizer; a group may set its
            own ``lr``. Parameters must be floating point (float16/bfloat16/float32/float64);
            everything is computed in the parameter's dtype, on its device. Decays and
            schedules are computed in float64 and applied as Python floats.
        genome: the update rule.
        lr: peak learning rate eta (>= 0, finite).
        total_steps: run length T. With ``None`` the learning rate is the constant ``lr``, and
            a genome with decays, ``warmup_steps``/``hold_steps`` > 0 or ``momentum="cycle"``
            with a momentum type that uses it raises :class:`NOSError` (no constant
            momentum coefficient is guessed: pass a float).
        warmup_steps, hold_steps: W and H of the schedule (need ``total_steps``).
        lr_schedule: ``False`` turns the built-in eta_t off: each step uses its group's
            ``lr`` as it is, for a torch LR scheduler of your own. Decays (and the momentum
            cycle) still follow ``total_steps``.
        momentum: ``"cycle"`` for the paper's mu_t above, or a constant coefficient in [0, 1].
            Ignored by genomes of momentum type none.
        settings: behaviour switches; paper mode holds at eta_t = 0, makes ``expMovAvg``
            divide by 1 - 0.95^0 = 0 and computes the EMAs with the released code's float32
            beta, 1 - beta and 1 - beta^(t+1).
        seed: seed of the dropout generators (one per device); ``None`` draws a fresh one.
        foreach: use the list path (default) or, with ``False``, the reference loop. A genome
            with two or more active dropout nodes always takes the reference loop, since the
            list path would draw its masks in a different order.

    Behaviour worth knowing:

    * Parameters whose ``grad`` is ``None`` are skipped: their EMA, node and momentum states
      do not move. t advances on every :meth:`step` call all the same, so such a tensor later
      sees the shared t (bias corrections, schedules and decays are not per tensor).
    * Stepping past ``total_steps``, sparse gradients and non-floating parameters raise
      :class:`NOSError`. NaN and inf in gradients are not checked: they propagate into the
      states and parameters, as in the paper.
    * State per parameter: ``v``, ``s``, ``lam`` (always kept, whether or not an operand
      reads them), ``node_<n>`` for each active stateful node (``expMovAvg``,
      ``deltaChange``, ``MaxValue``) and ``momentum_buffer`` for momentum types that use it.
      The step counter t and the dropout generators' states go into :meth:`state_dict`, so
      resuming from it continues bit for bit.
    * ``group["lr"]`` may be changed between steps (for example by a torch LR scheduler):
      eta_t is then computed from the new peak value, at O(1) cost per step. To let the
      scheduler alone decide the learning rate, pass ``lr_schedule=False``.
    """

    def __init__(
        self,
        params: ParamsT,
        genome: Genome,
        *,
        lr: float,
        total_steps: int | None = None,
        warmup_steps: int = 0,
        hold_steps: int = 0,
        momentum: str | float = "cycle",
        settings: Settings = DEFAULT_SETTINGS,
        seed: int | None = None,
        foreach: bool | None = None,
        lr_schedule: bool = True,
    ) -> None:
        if not isinstance(genome, Genome):
            raise NOSError(f"genome must be a Genome, got {type(genome).__name__}")
        if not isinstance(settings, Settings):
            raise NOSError(f"settings must be a Settings, got {type(settings).__name__}")
        lr = _check_lr(lr)
        if total_steps is None:
            if warmup_steps != 0 or hold_steps != 0:
                raise NOSError(
                    f"warmup_steps ({warmup_steps!r}) and hold_steps ({hold_steps!r}) need "
                    "total_steps; without it the learning rate is constant"
                )
        else:
            check_schedule_steps(total_steps, warmup_steps, hold_steps)
        self._momentum_coeff = self._check_momentum(momentum, genome, total_steps)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise NOSError(f"seed must be an int or None, got {seed!r}")
        if foreach is not None and not isinstance(foreach, bool):
            raise NOSError(f"foreach must be a bool or None, got {foreach!r}")

        self._genome = genome
        self._compiled = CompiledGenome(genome, total_steps)  # NOSError: decays without T
        self._settings = settings
        self._arithmetic = Arithmetic.of(settings)
        self._total_steps = total_steps
        self._warmup_steps = warmup_steps
        self._hold_steps = hold_steps
        self._mu_table: list[float] | None = (
            momentum_cycle(total_steps, warmup_steps, hold_steps).tolist()
            if momentum == "cycle" and total_steps is not None
            else None
        )
        # eta_t / eta after the warmup, computed once: a peak lr changed every step (a torch
        # LR scheduler) then costs O(1) per step, not a new table.
        self._lr_shape: list[float] | None = (
            _lr_schedule(
                1.0, total_steps, warmup_steps, hold_steps, hold_at_zero=settings.hold_at_zero
            ).tolist()
            if lr_schedule and total_steps is not None
            else None
        )
        self._t = 0
        self._seed = seed if seed is not None else int(torch.Generator().seed())
        self._generators: dict[str, torch.Generator] = {}
        self._pending_generator_states: dict[str, Tensor] = {}
        nodes = [genome.node(c) for c in self._compiled.order]
        dropout_nodes = sum(1 for n in nodes if not n.binary and n.unary_op in DROPOUT_OPS)
        self._uses_dropout = dropout_nodes > 0
        # The list path draws dropout masks node by node; the reference draws them tensor by
        # tensor. The orders agree only with at most one dropout node.
        self._foreach = (foreach is None or foreach) and dropout_nodes <= 1
        super().__init__(params, {"lr": lr})

    # -- configuration ----------------------------------------------------------------------------

    @staticmethod
    def _check_momentum(momentum: object, genome: Genome, total_steps: int | None) -> float | None:
        """The constant momentum coefficient, or None for the cycle schedule."""
        if momentum == "cycle":
            if total_steps is None and genome.momentum != Momentum.NONE:
                raise NOSError(
                    "momentum='cycle' needs total_steps; pass a float for a constant "
                    "momentum coefficient"
                )
            return None
        if isinstance(momentum, str):
            raise NOSError(f"momentum must be 'cycle' or a float in [0, 1], got {momentum!r}")
        mu = _check_real("momentum", momentum)
        if not 0.0 <= mu <= 1.0:
            raise NOSError(f"momentum must lie in [0, 1], got {momentum!r}")
        return mu

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; its ``lr`` (if given) and parameters are validated."""
        if "lr" in param_group:
            param_group["lr"] = _check_lr(param_group["lr"])
        super().add_param_group(param_group)
        for param in self.param_groups[-1]["params"]:
            if not param.is_floating_point():
                raise NOSError(
                    f"GenomeOptimizer needs floating-point parameters, got dtype {param.dtype}"
                )

    @property
    def genome(self) -> Genome:
        return self._genome

    @property
    def total_steps(self) -> int | None:
        return self._total_steps

    @property
    def step_count(self) -> int:
        """t: the number of steps taken so far (the 0-based index of the next step)."""
        return self._t

    def lr_at(self, step: int, group: int = 0) -> float:
        """eta_t of param group ``group`` at 0-based step ``step``."""
        lr = _check_lr(self.param_groups[group]["lr"])
        self._check_step(step)
        if self._lr_shape is None:
            return lr
        if step < self._warmup_steps:
            return lr * step / self._warmup_steps
        return lr * self._lr_shape[step]

    def momentum_at(self, step: int) -> float:
        """mu_t at 0-based step ``step`` (0.0 when the momentum type is none)."""
        if self._genome.momentum == Momentum.NONE:
            return 0.0
        if self._mu_table is None:
            assert self._momentum_coeff is not None
            return self._momentum_coeff
        self._check_step(step)
        return self._mu_table[step]

    def _check_step(self, step: int) -> None:
        if self._total_steps is not None and not 0 <= step < self._total_steps:
            raise NOSError(
                f"step {step} is past the schedule: total_steps = {self._total_steps} allows "
                f"steps 0..{self._total_steps - 1}"
            )

    # -- the step --------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Apply one update to every parameter that has a gradient; return the closure's loss."""
        t = self._t
        self._check_step(t)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = self._collect(t)
        if work:
            if self._foreach:
                self._step_foreach(work, t)
            else:
                self._step_reference(work, t)
        self._t = t + 1
        return loss

    def _collect(self, t: int) -> list[_Work]:
        """The tensors with gradients, their (lazily created) state and eta_t; checks grads."""
        work: list[_Work] = []
        for index, group in enumerate(self.param_groups):
            lr = self.lr_at(t, index)
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    raise NOSError(
                        f"GenomeOptimizer does not support sparse gradients (parameter of "
                        f"shape {tuple(param.shape)})"
                    )
                state = self.state[param]
                if not state:
                    self._init_state(param, state)
                work.append(_Work(param, grad, state, lr))
        return work

    def _state_keys(self) -> tuple[str, ...]:
        """The state kept per parameter tensor."""
        nodes = tuple(_node_state_key(column) for column in self._compiled.stateful_nodes)
        buffer = (_BUFFER_KEY,) if self._genome.momentum != Momentum.NONE else ()
        return (*_EMA_KEYS, *nodes, *buffer)

    def _init_state(self, param: Tensor, state: dict[str, Any]) -> None:
        for key in self._state_keys():
            state[key] = torch.zeros_like(param)

    def _context(self, device: torch.device, t: int) -> OpContext:
        bias_step = 0 if self._settings.expmovavg_zero_bias_step else t + 1
        generator = self._generator(device) if self._uses_dropout else None
        return OpContext(
            generator=generator, batch_dims=0, ema_bias_step=bias_step, arithmetic=self._arithmetic
        )

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        generator = self._generators.get(key)
        if generator is None:
            generator = torch.Generator(device=device)
            generator.manual_seed(self._seed)
            pending = self._pending_generator_states.pop(key, None)
            if pending is not None:
                generator.set_state(pending)
            self._generators[key] = generator
        return generator

    def _step_reference(self, work: list[_Work], t: int) -> None:
        """The readable path: one tensor at a time, the update rule as written."""
        mu = self.momentum_at(t)
        contexts: dict[torch.device, OpContext] = {}
        stateful = self._compiled.stateful_nodes
        for item in work:
            param, state = item.param, item.state
            ctx = contexts.get(param.device)
            if ctx is None:
                ctx = contexts[param.device] = self._context(param.device, t)
            emas = (state["v"], state["s"], state["lam"])
            node_state = {column: state[_node_state_key(column)] for column in stateful}
            update = self._compiled.step(item.grad, param, emas, node_state, t, ctx)
            for column in stateful:
                state[_node_state_key(column)] = node_state[column]
            apply_update(
                param,
                state.get(_BUFFER_KEY),
                update,
                item.lr,
                mu,
                self._genome.momentum,
                self._genome.flip,
            )

    def _step_foreach(self, work: list[_Work], t: int) -> None:
        """The list path: the reference's kernels, issued once per op for all tensors."""
        by_device: dict[torch.device, list[_Work]] = {}
        for item in work:
            by_device.setdefault(item.param.device, []).append(item)
        mu = self.momentum_at(t)
        for device, items in by_device.items():
            self._foreach_device(items, t, mu, self._context(device, t))

    def _foreach_device(self, items: list[_Work], t: int, mu: float, ctx: OpContext) -> None:
        compiled = self._compiled
        foreach_update(
            compiled,
            self._arithmetic,
            [item.param for item in items],
            [item.grad for item in items],
            [item.state for item in items],
            [item.lr for item in items],
            mu,
            ctx,
            lambda column, child: compiled.edge_factor(column, child, t),
            t,
        )

    # -- copying and the state dict --------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the hooks, for copy.deepcopy and pickle.

        torch.optim.Optimizer keeps only ``defaults``, ``state`` and ``param_groups``; the
        genome, t and the dropout generators are attributes of this class. Hooks stay behind,
        as torch's do.
        """
        return {key: value for key, value in vars(self).items() if not key.endswith("_hooks")}

    def state_dict(self) -> dict[str, Any]:
        """Torch's state dict plus t, the seed and the dropout generators' states."""
        state_dict = super().state_dict()
        state_dict[_STATE_DICT_KEY] = {
            "step": self._t,
            "seed": self._seed,
            "equation": self._genome.equation(),
            "flip": self._genome.flip,
            "generators": {
                **{k: v.clone() for k, v in self._pending_generator_states.items()},
                **{key: gen.get_state() for key, gen in self._generators.items()},
            },
        }
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a GenomeOptimizer with the same genome.

        The tensors are copied, so later steps leave ``state_dict`` untouched.
        """
        extra = state_dict.get(_STATE_DICT_KEY)
        if not isinstance(extra, dict):
            raise NOSError(
                f"state_dict has no {_STATE_DICT_KEY!r} entry: it was not saved by "
                "a GenomeOptimizer"
            )
        equation = self._genome.equation()
        if extra.get("equation") != equation or extra.get("flip") != self._genome.flip:
            raise NOSError(
                f"state_dict belongs to genome {extra.get('equation')!r} "
                f"(flip={extra.get('flip')!r}), not {equation!r} (flip={self._genome.flip})"
            )
        step = extra.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise NOSError(f"state_dict has an invalid step {step!r}")
        expected = sorted(self._state_keys())
        for index, param_state in state_dict["state"].items():
            if sorted(param_state) != expected:
                raise NOSError(
                    f"state_dict holds state {sorted(param_state)} for parameter "
                    f"{index}; this genome keeps {expected}"
                )
        copied = {key: value for key, value in state_dict.items() if key != _STATE_DICT_KEY}
        copied["state"] = {
            index: {
                key: value.clone() if isinstance(value, Tensor) else value
                for key, value in param_state.items()
            }
            for index, param_state in state_dict["state"].items()
        }
        super().load_state_dict(copied)
        self._t = step
        self._seed = int(extra.get("seed", self._seed))
        self._generators = {}
        self._pending_generator_states = {
            key: value.clone() for key, value in extra.get("generators", {}).items()
        }


# -- the list update, as a function -------------------------------------------------------------

#: A step-dependent number: a Python float, or a 0-d tensor (one graph then serves every step).
Scalar = float | Tensor


def foreach_update(
    compiled: CompiledGenome,
    arithmetic: Arithmetic,
    params: Tensors,
    grads: Tensors,
    states: list[dict[str, Any]],
    lrs: list[Scalar],
    mu: Scalar,
    ctx: OpContext,
    edge_factor: Callable[[int, int], Scalar | None],
    t: int = 0,
) -> None:
    """One list-path step of ``compiled.genome`` on the tensors of one device, in place.

    The step-dependent numbers come from outside: eta_t of each tensor (``lrs``), mu_t, the
    decay d(t) of each edge (``edge_factor(consumer, child)``, None when undecayed) and the
    bias corrections 1 - beta^k (``arithmetic.bias_correction``, read through ``ctx`` too);
    ``t`` only reaches ``arithmetic.bias_correction``.
    """
    genome = compiled.genome
    vs, ss, lams = ([state[key] for state in states] for key in _EMA_KEYS)
    grads_sq, grads_cube = _foreach_update_emas(grads, vs, ss, lams, arithmetic)
    operands = _ListOperands(grads, params, vs, ss, lams, t, grads_sq, grads_cube, arithmetic)
    values: dict[int, Tensors] = {c: operands.value(c) for c in compiled.operands}
    for column in compiled.order:
        node = genome.node(column)
        args: list[Tensors] = []
        for child in node.inputs:
            factor = edge_factor(column, child)
            args.append(
                values[child] if factor is None else torch._foreach_mul(values[child], factor)
            )
        if node.binary:
            values[column] = _binary_lists(node.binary_op, args[0], args[1])
        elif UNARY_OPS[node.unary_op].stateful:
            values[column] = _stateful_lists(node.unary_op, column, args[0], states, ctx)
        else:
            values[column] = _unary_lists(node.unary_op, args[0], ctx)
    updates = values[compiled.order[-1]]
    flip = genome.flip
    signed: Any = [lr if flip else -lr for lr in lrs]
    steps = torch._foreach_mul(updates, signed)
    momentum = genome.momentum
    if momentum == Momentum.NONE:
        torch._foreach_add_(params, steps)
        return
    buffers = [state[_BUFFER_KEY] for state in states]
    torch._foreach_mul_(buffers, mu)
    torch._foreach_add_(buffers, steps)
    torch._foreach_add_(params, buffers)
    if momentum == Momentum.NESTEROV:
        torch._foreach_add_(params, steps)


# -- the EMA states -----------------------------------------------------------------------------


def _foreach_update_emas(
    gs: Tensors, vs: Tensors, ss: Tensors, lams: Tensors, arithmetic: Arithmetic
) -> tuple[Tensors, Tensors]:
    """:func:`~optuna_nos.space.compute.update_emas` over lists; returns g^2 and g^3 lists."""
    grads_sq = torch._foreach_mul(gs, gs)
    grads_cube = torch._foreach_mul(grads_sq, gs)
    for states, xs, beta in zip(
        (vs, ss, lams), (gs, grads_sq, grads_cube), EMA_BETAS, strict=True
    ):
        arithmetic.foreach_ema_(list(states), list(xs), beta)
    return grads_sq, grads_cube


# -- list versions of the operands and ops ------------------------------------------------------
#
# Each list function issues the same kernels, on the same operands and in the same order, as the
# reference function in operands.py / update_ops.py; ``1.0 / x`` is ``x.reciprocal() * 1.0`` in
# torch, and the multiplication by 1.0 is exact. Anything not listed runs the reference function
# tensor by tensor.


class _ListOperands:
    """The operands of the search space for a list of tensors, each computed at most once."""

    def __init__(
        self,
        gs: Tensors,
        ws: Tensors,
        vs: Tensors,
        ss: Tensors,
        lams: Tensors,
        t: int,
        grads_sq: Tensors,
        grads_cube: Tensors,
        arithmetic: Arithmetic,
    ) -> None:
        self.gs, self.ws, self.vs, self.ss, self.lams, self.t = gs, ws, vs, ss, lams, t
        self.arithmetic = arithmetic
        self._cache: dict[str, Tensors] = {"g^2": grads_sq, "g^3": grads_cube}

    def _cached(self, name: str, make: Callable[[], Tensors]) -> Tensors:
        if name not in self._cache:
            self._cache[name] = make()
        return self._cache[name]

    def _hat(self, index: int) -> Tensors:
        states = (self.vs, self.ss, self.lams)[index]
        return self._cached(
            _EMA_KEYS[index] + "_hat",
            lambda: torch._foreach_div(
                states, self.arithmetic.bias_correction(EMA_BETAS[index], self.t + 1)
            ),
        )

    def qhm(self, xs: Tensors, index: int, beta: float) -> Tensors:
        """(1 - beta) x + beta hat, as Arithmetic.qhm."""
        keep, new = self.arithmetic.coefficients(beta)
        return _blend(new, xs, keep, self._hat(index))

    def sign(self, xs: Tensors) -> Tensors:
        if self.arithmetic.nan_sign:
            return [self.arithmetic.sign(x) for x in xs]
        return torch._foreach_sign(xs)

    def value(self, index: int) -> Tensors:
        make = _LIST_OPERANDS.get(index)
        if make is not None:
            return make(self)
        inputs = [
            OperandInputs(g=g, w=w, v=v, s=s, lam=lam, t=self.t, arithmetic=self.arithmetic)
            for g, w, v, s, lam in zip(self.gs, self.ws, self.vs, self.ss, self.lams, strict=True)
        ]
        return [OPERANDS[index].fn(i) for i in inputs]


def _blend(a: float, xs: Tensors, b: float, ys: Tensors) -> Tensors:
    """a*x + b*y, as the reference writes it."""
    out = torch._foreach_mul(xs, a)
    torch._foreach_add_(out, torch._foreach_mul(ys, b))
    return out


_LIST_OPERANDS: dict[int, Callable[[_ListOperands], Tensors]] = {
    0: lambda o: o.gs,
    1: lambda o: o._cache["g^2"],
    2: lambda o: o._cache["g^3"],
    3: lambda o: o._hat(0),
    4: lambda o: o._hat(1),
    5: lambda o: o._hat(2),
    8: lambda o: torch._foreach_mul(o.ws, 1e-6),
    9: lambda o: torch._foreach_mul(o.ws, 1e-5),
    10: lambda o: torch._foreach_mul(o.ws, 1e-4),
    11: lambda o: torch._foreach_mul(o.ws, 1e-3),
    12: lambda o: o.sign(o.gs),
    13: lambda o: o.sign(o._hat(0)),
    14: lambda o: o.qhm(o.gs, 0, 0.7),
    15: lambda o: o.qhm(o._cache["g^2"], 1, 0.95),
    16: lambda o: o.qhm(o._cache["g^3"], 2, 0.99),
}


def _abs_then(xs: Tensors, *steps: Callable[[Tensors], None]) -> Tensors:
    out = torch._foreach_abs(xs)
    for step in steps:
        step(out)
    return out


def _add_scalar(value: float) -> Callable[[Tensors], None]:
    return lambda xs: torch._foreach_add_(xs, value)


def _softplus(xs: Tensors) -> Tensors:
    """ln(|1 + exp(x)| + eps)."""
    out = torch._foreach_exp(xs)
    torch._foreach_add_(out, 1.0)
    torch._foreach_abs_(out)
    torch._foreach_add_(out, EPS)
    torch._foreach_log_(out)
    return out


def _reciprocal_eps(xs: Tensors) -> Tensors:
    """1 / (x + eps)."""
    out = torch._foreach_add(xs, EPS)
    torch._foreach_reciprocal_(out)
    return out


def _softsign(xs: Tensors) -> Tensors:
    return torch._foreach_div(xs, _abs_then(xs, _add_scalar(1.0)))


_LIST_UNARY: dict[int, Callable[[Tensors], Tensors]] = {
    -1: lambda xs: xs,
    0: torch._foreach_neg,
    1: lambda xs: _abs_then(xs, _add_scalar(EPS), torch._foreach_log_),
    2: lambda xs: _abs_then(xs, torch._foreach_sqrt_),
    3: torch._foreach_exp,
    4: torch._foreach_abs,
    5: torch._foreach_sigmoid,
    6: lambda xs: _abs_then(xs, _add_scalar(1.0), torch._foreach_reciprocal_),
    7: _softplus,
    8: torch._foreach_erf,
    9: torch._foreach_erfc,
    11: torch._foreach_tanh,
    12: torch._foreach_atan,
    13: _reciprocal_eps,
    15: lambda xs: torch._foreach_clamp_min(xs, 0.0),
    16: lambda xs: torch._foreach_clamp_max(xs, 0.0),
    21: _softsign,
}


def _unary_lists(code: int, xs: Tensors, ctx: OpContext) -> Tensors:
    fast = _LIST_UNARY.get(code)
    if fast is not None:
        return fast(xs)
    fn = UNARY_OPS[code].fn
    assert fn is not None
    return [fn(x, ctx) for x in xs]


def _stateful_lists(
    code: int, column: int, xs: Tensors, states: Iterable[dict[str, Any]], ctx: OpContext
) -> Tensors:
    step = UNARY_OPS[code].step
    assert step is not None
    key = _node_state_key(column)
    outs = []
    for x, state in zip(xs, states, strict=True):
        out, state[key] = step(x, state[key], ctx)
        outs.append(out)
    return outs


def _div_eps(xs: Tensors, ys: Tensors) -> Tensors:
    """x / (y + eps)."""
    return torch._foreach_div(xs, torch._foreach_add(ys, EPS))


def _div_sqrt(xs: Tensors, ys: Tensors) -> Tensors:
    """x / sqrt(1 + y^2)."""
    denominators = torch._foreach_mul(ys, ys)
    torch._foreach_add_(denominators, 1.0)
    torch._foreach_sqrt_(denominators)
    return torch._foreach_div(xs, denominators)


_LIST_BINARY: dict[int, Callable[[Tensors, Tensors], Tensors]] = {
    0: lambda xs, ys: torch._foreach_add(xs, ys),
    1: lambda xs, ys: torch._foreach_sub(xs, ys),
    2: lambda xs, ys: torch._foreach_mul(xs, ys),
    3: lambda xs, ys: torch._foreach_maximum(xs, ys),
    4: lambda xs, ys: torch._foreach_minimum(xs, ys),
    5: _div_eps,
    6: _div_sqrt,
    8: lambda xs, ys: _blend(0.95, xs, 0.05, ys),
}


def _binary_lists(code: int, xs: Tensors, ys: Tensors) -> Tensors:
    fast = _LIST_BINARY.get(code)
    if fast is not None:
        return fast(xs, ys)
    fn = BINARY_OPS[code].fn
    return [fn(x, y) for x, y in zip(xs, ys, strict=True)]
