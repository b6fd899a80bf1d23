"""Genome -> the source of a standalone PyTorch optimizer (imports torch only).

The generated class computes, tensor by tensor, exactly what :class:`GenomeOptimizer`'s
reference path computes: the EMA states, the operands the genome reads,
its active nodes in topological order as straight-line torch code with the edge decays
precomputed over ``total_steps``, then the momentum update. The search settings in force at
export time (e.g. paper mode's ``expMovAvg`` and hold value) are baked in.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Mapping

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, Settings
from optuna_nos.space.arithmetic import Arithmetic
from optuna_nos.space.decays import (
    BASE_SOURCES,
    DECAY_BINARY_OPS,
    DECAY_HIDDEN,
    DECAY_UNARY_OPS,
    Decay,
    DecayNode,
)
from optuna_nos.space.genome import Genome, Momentum, column_name
from optuna_nos.space.notation import format_equation
from optuna_nos.space.operands import EMA_BETAS, N_OPERANDS, OPERANDS
from optuna_nos.space.update_ops import BINARY_OPS, DROPOUT_OPS, EPS, UNARY_OPS

__all__ = ["export_source"]

# Every expression comes from the op, operand and schedule tables of optuna_nos.space (their
# ``source`` text issues the float operations of their ``fn``); tests/test_export.py checks
# that the trajectories agree.


def _fill(template: str, **parts: str) -> str:
    """Substitute each {name}, bracketing any part that is not a plain name or subscript."""
    for name, text in parts.items():
        atomic = re.fullmatch(r"[A-Za-z_][\w.]*(\[[^\]]*\])*", text) is not None
        template = template.replace("({" + name + "})", f"({text})")
        template = template.replace("{" + name + "}", text if atomic else f"({text})")
    return template


def _var(column: int) -> str:
    return column_name(column) if column >= N_OPERANDS else f"x{column}"


def _decay_expression(decay: Decay) -> str:
    def node_code(node: DecayNode) -> str:
        args = [node_code(decay.hidden) if i == DECAY_HIDDEN else f"a[{i}]" for i in node.inputs]
        if node.binary:
            return _fill(DECAY_BINARY_OPS[node.binary_op].source, x=args[0], y=args[1])
        return _fill(DECAY_UNARY_OPS[node.unary_op].source, x=args[0])

    return node_code(decay.root)


def _node_lines(genome: Genome, settings: Settings) -> tuple[list[str], list[str]]:
    """Statements computing every active node, and the per-tensor state keys they use."""
    lines: list[str] = []
    state_keys: list[str] = []
    bias_step = "0" if settings.expmovavg_zero_bias_step else "(t + 1)"
    for column in genome.topological_order():
        node = genome.node(column)
        args = []
        for child in node.inputs:
            arg = _var(child)
            if node.decay_on(child) is not None:
                arg = f"{arg} * DECAYS[{column_name(column)!r}, {child}][t]"
            args.append(arg)
        target = _var(column)
        if node.binary:
            source = BINARY_OPS[node.binary_op].source
            lines.append(f"{target} = {_fill(source, x=args[0], y=args[1])}")
            continue
        op = UNARY_OPS[node.unary_op]
        if op.state_source is not None:
            key = f"node_{column_name(column)}"
            state = f"state[{key!r}]"
            state_keys.append(key)
            lines.append(f"{state} = {_fill(op.state_source, x=args[0], n=state)}")
            lines.append(f"{target} = {_fill(op.source, n=state, k=bias_step)}")
        else:
            lines.append(f"{target} = {_fill(op.source, x=args[0])}")
    return lines, state_keys


def _decay_table_lines(genome: Genome) -> list[str]:
    lines = []
    for consumer, child, decay in genome.active_edges():
        if decay is not None:
            key = f"{column_name(consumer)!r}, {child}"
            lines.append(f"        ({key}): ({_decay_expression(decay)}).tolist(),")
    return lines


_MOMENTUM_LINES = {
    Momentum.NONE: ["p.add_(step)"],
    Momentum.MOMENTUM: [
        "buffer = state['momentum_buffer']",
        "buffer.mul_(mu).add_(step)",
        "p.add_(buffer)",
    ],
    Momentum.NESTEROV: [
        "buffer = state['momentum_buffer']",
        "buffer.mul_(mu).add_(step)",
        "p.add_(buffer)",
        "p.add_(step)",
    ],
}
_MOMENTUM_TEXT = {
    Momentum.NONE: "w <- w + sigma lr_t U",
    Momentum.MOMENTUM: "m <- mu_t m + sigma lr_t U;  w <- w + m",
    Momentum.NESTEROV: "m <- mu_t m + sigma lr_t U;  w <- w + m + sigma lr_t U",
}

_ARITHMETIC_TEXT = {
    False: "float64 beta, 1 - beta and 1 - beta^k; torch's sign(NaN) = 0",
    True: "float32 beta, 1 - beta and 1 - beta^k, and sign(NaN) = NaN, as the released code",
}

_TEMPLATE = '''# Exported by optuna-nos{origin}.
"""{class_name}: an optimizer discovered by optuna-nos.

Update rule (paper notation):
    {equation}
Readable:
    {readable}

Per parameter tensor, with gradient g and value w, at 0-based step t of T:

    v <- 0.9 v + 0.1 g;   s <- 0.99 s + 0.01 g^2;   lam <- 0.999 lam + 0.001 g^3
    v_hat = v / (1 - 0.9^(t+1)), and likewise s_hat (0.99) and lam_hat (0.999)
    ({arithmetic_text})
    U = the equation above, edge decays d(t) multiplying the values they carry
    {momentum_text}          (sigma = {sigma})

lr_t warms up linearly over warmup_steps, holds at lr for hold_steps, then follows a
cosine to 0 at total_steps (constant lr when total_steps is None); mu_t cycles
0.95 -> 0.85 (warmup) -> 0.85 (hold) -> 0.95, or is the constant ``momentum``.
{recipe_text}"""

from __future__ import annotations

import math

import torch

#: The learning rate and schedule the search trained this optimizer with (None: unknown).
RECIPE = {recipe!r}
EPS = {eps!r}
FLIP = {flip}
FLOAT32_EMA = {float32_ema}
NAN_SIGN = {nan_sign}
#: beta and 1 - beta of v, s, lam and expMovAvg.
KEEP_V, NEW_V = {ema_v}
KEEP_S, NEW_S = {ema_s}
KEEP_LAM, NEW_LAM = {ema_lam}
KEEP_95, NEW_95 = {ema_95}
HOLD_AT_ZERO = {hold_at_zero}
NEEDS_TOTAL_STEPS = {needs_total_steps}
USES_MOMENTUM = {uses_momentum}
#: The state kept per parameter tensor.
STATE_KEYS = {state_keys!r}


_BIASES = {{}}


def _bias(beta, k):
    """1 - beta^k, in float32 (as the released code) when FLOAT32_EMA."""
    if not FLOAT32_EMA:
        return 1.0 - beta ** k
    if (beta, k) not in _BIASES:
        one = torch.tensor(1.0, dtype=torch.float32)
        power = torch.pow(torch.tensor(beta, dtype=torch.float32),
                          torch.tensor(float(k), dtype=torch.float32))
        _BIASES[beta, k] = float(one - power)
    return _BIASES[beta, k]


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_lr(lr):
    if not (_is_real(lr) and 0.0 <= lr < math.inf):
        raise ValueError(f"lr must be a finite number >= 0, got {{lr!r}}")


def _check_schedule(total_steps, warmup_steps, hold_steps, momentum):
    for name, value in (("warmup_steps", warmup_steps), ("hold_steps", hold_steps)):
        if not (_is_int(value) and value >= 0):
            raise ValueError(f"{{name}} must be an int >= 0, got {{value!r}}")
    if total_steps is None:
        if warmup_steps or hold_steps:
            raise ValueError(f"warmup_steps={{warmup_steps!r}} and hold_steps={{hold_steps!r}} "
                             "need total_steps")
        if NEEDS_TOTAL_STEPS:
            raise ValueError("this optimizer's edge decays need total_steps")
        if momentum == "cycle" and USES_MOMENTUM:
            raise ValueError("momentum='cycle' needs total_steps; pass a number in [0, 1] "
                             "for a constant coefficient")
    elif not (_is_int(total_steps) and total_steps >= 1):
        raise ValueError(f"total_steps must be an int >= 1 or None, got {{total_steps!r}}")
    elif warmup_steps + hold_steps >= total_steps:
        raise ValueError(f"warmup_steps + hold_steps = {{warmup_steps}} + {{hold_steps}} must be "
                         f"less than total_steps = {{total_steps}}")


def _sign(x):
    out = torch.sign(x)
    return torch.where(torch.isnan(x), x, out) if NAN_SIGN else out


def _a13(t, n):
    beta = 0.95 * (1.0 - (t + 1.0) / n)
    return beta / ((1.0 - 0.95) + beta)


def _decay_tables(n):
    """Each decayed edge's multiplier d(t) for t = 0..n-1."""
    t = torch.arange(n, dtype=torch.float64)
    a = {{}}
{base_lines}
    return {{
{decay_tables}
    }}


def _lr_table(lr, total, warmup, hold):
    t = torch.arange(total, dtype=torch.float64)
    decay_len = total - warmup - hold
    out = 0.5 * lr * (1.0 + torch.cos(math.pi * (t - warmup - hold) / decay_len))
    if hold > 0:
        in_hold = (t >= warmup) & (t <= warmup + hold)
        out = torch.where(in_hold, torch.full_like(t, 0.0 if HOLD_AT_ZERO else lr), out)
    if warmup > 0:
        out = torch.where(t < warmup, lr * t / warmup, out)
    return out.tolist()


def _momentum_table(total, warmup, hold):
    return torch.cat([
        torch.linspace(0.95, 0.85, warmup, dtype=torch.float64),
        torch.full((hold,), 0.85, dtype=torch.float64),
        torch.linspace(0.85, 0.95, total - warmup - hold, dtype=torch.float64),
    ]).tolist()


def _dropout(x, rate, generator):
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= rate
    return torch.where(keep, x / (1.0 - rate), torch.zeros_like(x))


def _clip_by_norm(x):
    dims = tuple(range(x.dim()))
    norm = torch.linalg.vector_norm(x, dim=dims, keepdim=True) if dims else x.abs()
    return x * torch.clamp(1.0 / norm, max=1.0)


class {class_name}(torch.optim.Optimizer):
    """See the module docstring for the update rule.

    Args:
        params: tensors or param-group dicts (a group may set its own ``lr``).
        lr: peak learning rate.
        total_steps: run length T (needed for decays, warmup, hold and the momentum cycle).
        warmup_steps, hold_steps: the schedule's W and H.
        momentum: "cycle" or a constant coefficient in [0, 1].
        seed: seed of the dropout generator.
        lr_schedule: False turns the built-in lr_t off (each step uses its group's lr as it
            is, for a torch LR scheduler of your own); decays still follow total_steps.

    RECIPE holds the learning rate and schedule the search trained this optimizer with.
    A bad argument raises ValueError naming its value, as torch.optim's optimizers do;
    load_state_dict refuses a state dict that this class did not save.
    """

    def __init__(self, params, lr, *, total_steps=None, warmup_steps=0, hold_steps=0,
                 momentum="cycle", seed=None, lr_schedule=True):
        _check_lr(lr)
        if not (momentum == "cycle" or _is_real(momentum) and 0.0 <= momentum <= 1.0):
            raise ValueError(f"momentum must be 'cycle' or a number in [0, 1], "
                             f"got {{momentum!r}}")
        _check_schedule(total_steps, warmup_steps, hold_steps, momentum)
        if seed is not None and not _is_int(seed):
            raise ValueError(f"seed must be an int or None, got {{seed!r}}")
        if not isinstance(lr_schedule, bool):
            raise ValueError(f"lr_schedule must be True or False, got {{lr_schedule!r}}")
        super().__init__(params, {{"lr": lr}})
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.hold_steps = hold_steps
        self.momentum = momentum
        self.seed = seed if seed is not None else int(torch.Generator().seed())
        self.t = 0
        self._generators = {{}}
        # lr_t / lr after the warmup, computed once: a peak lr changed every step (a torch
        # LR scheduler) costs O(1) per step
        self._lr_shape = (_lr_table(1.0, total_steps, warmup_steps, hold_steps)
                          if lr_schedule and total_steps is not None else None)
        self._decays = _decay_tables(total_steps) if total_steps is not None else {{}}
        self._mu = (_momentum_table(total_steps, warmup_steps, hold_steps)
                    if momentum == "cycle" and total_steps is not None else None)

    def add_param_group(self, param_group):
        if "lr" in param_group:
            _check_lr(param_group["lr"])
        super().add_param_group(param_group)
        for p in self.param_groups[-1]["params"]:
            if not p.is_floating_point():
                raise ValueError(f"{{type(self).__name__}} needs floating-point params, "
                                 f"got {{p.dtype}}")

    def __getstate__(self):
        # torch.optim.Optimizer keeps only defaults, state and param_groups; t, the schedule
        # and the dropout generators are attributes here. Hooks stay behind, as torch's do.
        return {{key: value for key, value in vars(self).items()
                if not key.endswith("_hooks")}}

    def _lr_at(self, lr, t):
        if self._lr_shape is None:
            return lr
        if t < self.warmup_steps:
            return lr * t / self.warmup_steps
        return lr * self._lr_shape[t]

    def _generator(self, device):
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device)
            self._generators[key].manual_seed(self.seed)
        return self._generators[key]

    def state_dict(self):
        state = super().state_dict()
        state["evolved"] = {{"t": self.t, "seed": self.seed, "generators": {{
            key: gen.get_state() for key, gen in self._generators.items()}}}}
        return state

    def load_state_dict(self, state_dict):
        name = type(self).__name__
        extra = state_dict.get("evolved")
        if not isinstance(extra, dict):
            raise ValueError(f"state dict has no 'evolved' entry: it was not saved by {{name}}")
        t = extra.get("t")
        if not (_is_int(t) and t >= 0):
            raise ValueError(f"state dict step t must be an int >= 0, got {{t!r}}")
        for index, param_state in state_dict["state"].items():
            if sorted(param_state) != sorted(STATE_KEYS):
                raise ValueError(f"state dict holds state {{sorted(param_state)}} for parameter "
                                 f"{{index}}; {{name}} keeps {{sorted(STATE_KEYS)}}")
        super().load_state_dict({{key: value for key, value in state_dict.items()
                                 if key != "evolved"}})
        self.t = t
        self.seed = int(extra.get("seed", self.seed))
        self._generators = {{}}
        for key, value in extra.get("generators", {{}}).items():
            self._generator(torch.device(key)).set_state(value)

    @torch.no_grad()
    def step(self, closure=None):
        t = self.t
        if self.total_steps is not None and t >= self.total_steps:
            raise RuntimeError(f"step {{t}} is past total_steps = {{self.total_steps}}")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        DECAYS = self._decays
        mu = self._mu[t] if self._mu is not None else self.momentum
        for group in self.param_groups:
            lr = group["lr"]
            lr_t = self._lr_at(lr, t)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("sparse gradients are not supported")
                g, w = p.grad, p
                state = self.state[p]
                if not state:
                    for key in STATE_KEYS:
                        state[key] = torch.zeros_like(p)
                v, s, lam = state["v"], state["s"], state["lam"]
                g_sq = g * g
                v.mul_(KEEP_V).add_(g * NEW_V)
                s.mul_(KEEP_S).add_(g_sq * NEW_S)
                lam.mul_(KEEP_LAM).add_(g_sq * g * NEW_LAM)
                v_hat = v / _bias({b_v!r}, t + 1)
                s_hat = s / _bias({b_s!r}, t + 1)
                lam_hat = lam / _bias({b_lam!r}, t + 1)
                generator = {generator}
{body}
                step = U * (lr_t if FLIP else -lr_t)
{momentum_lines}
        self.t = t + 1
        return loss
'''


_RECIPE_KEYS = ("lr", "total_steps", "warmup_steps", "hold_steps")


def _recipe(recipe: Mapping[str, float | int] | None) -> dict[str, float | int] | None:
    """The recipe's known keys with finite numbers; NOSError on anything else."""
    if recipe is None:
        return None
    clean: dict[str, float | int] = {}
    for key, value in recipe.items():
        if (
            key not in _RECIPE_KEYS
            or isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise NOSError(
                f"recipe entry {key!r}: {value!r} is not one of {_RECIPE_KEYS} "
                "with a finite number"
            )
        clean[key] = value
    return clean


def _recipe_text(recipe: Mapping[str, float | int] | None, class_name: str) -> str:
    clean = _recipe(recipe)
    if not clean:
        return ""
    shown = ", ".join(f"{k}={v!r}" for k, v in clean.items())
    return f"\nThe search trained it with {shown}:\n\n    opt = {class_name}(params, **RECIPE)\n"


def export_source(
    genome: Genome,
    class_name: str = "EvolvedOptimizer",
    *,
    origin: str | None = None,
    settings: Settings = DEFAULT_SETTINGS,
    recipe: Mapping[str, float | int] | None = None,
) -> str:
    """Python source of a standalone module defining ``class_name(torch.optim.Optimizer)``.

    ``origin`` (e.g. the study, trial and fitness the genome came from) goes into the first
    comment line. ``recipe`` (``lr``, ``total_steps``, ``warmup_steps``, ``hold_steps``: how
    the search trained the genome) goes into the docstring and the module constant
    ``RECIPE``. The module imports only torch and math.
    """
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise NOSError(f"class_name must be a Python identifier, got {class_name!r}")
    if origin is not None and ("\n" in origin or "\r" in origin):
        raise NOSError("origin must be a single line")
    node_lines, node_keys = _node_lines(genome, settings)
    arithmetic = Arithmetic.of(settings)
    root_var = _var(genome.topological_order()[-1])
    operand_lines = []
    read = {c for col in genome.topological_order() for c in genome.node(col).inputs}
    for index in sorted(c for c in read if c < N_OPERANDS):
        operand_lines.append(f"x{index} = {OPERANDS[index].code(arithmetic)}")
    body_lines = [*operand_lines, *node_lines, f"U = {root_var}"]
    state_keys = ["v", "s", "lam", *node_keys]
    if genome.momentum != Momentum.NONE:
        state_keys.append("momentum_buffer")
    uses_dropout = any(
        not genome.node(c).binary and genome.node(c).unary_op in DROPOUT_OPS
        for c in genome.topological_order()
    )
    indent = " " * 16
    used_bases = sorted(
        {
            i
            for d in genome.active_decays()
            for node in (d.root, d.hidden)
            if node is d.root or d.uses_hidden
            for i in node.inputs
            if i != DECAY_HIDDEN
        }
    )
    base_lines = "\n".join(f"    a[{i}] = {BASE_SOURCES[i]}  # a{i + 1}" for i in used_bases)
    decay_tables = _decay_table_lines(genome)
    return _TEMPLATE.format(
        recipe=_recipe(recipe),
        eps=EPS,
        recipe_text=_recipe_text(recipe, class_name),
        origin=f" from {origin}" if origin else "",
        class_name=class_name,
        equation=format_equation(genome, "paper"),
        readable=format_equation(genome, "readable"),
        momentum_text=_MOMENTUM_TEXT[genome.momentum],
        sigma="+1 (flipped)" if genome.flip else "-1",
        flip=genome.flip,
        hold_at_zero=settings.hold_at_zero,
        base_lines=base_lines,
        decay_tables="\n".join(decay_tables),
        state_keys=tuple(state_keys),
        arithmetic_text=_ARITHMETIC_TEXT[arithmetic.float32_ema],
        float32_ema=arithmetic.float32_ema,
        nan_sign=arithmetic.nan_sign,
        ema_v=arithmetic.coefficients(EMA_BETAS[0]),
        ema_s=arithmetic.coefficients(EMA_BETAS[1]),
        ema_lam=arithmetic.coefficients(EMA_BETAS[2]),
        ema_95=arithmetic.coefficients(0.95),
        b_v=EMA_BETAS[0],
        b_s=EMA_BETAS[1],
        b_lam=EMA_BETAS[2],
        generator="self._generator(p.device)" if uses_dropout else "None",
        body="\n".join(indent + line for line in body_lines),
        momentum_lines="\n".join(indent + line for line in _MOMENTUM_LINES[genome.momentum]),
        needs_total_steps=bool(decay_tables),
        uses_momentum=genome.momentum != Momentum.NONE,
    )
