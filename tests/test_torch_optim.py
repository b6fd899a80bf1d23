"""GenomeOptimizer against torch.optim, closed forms and hand-written recurrences.

Genomes are built by hand from Node/Genome so these tests do not depend on the parser.
Float64 throughout unless a test is about dtypes.
"""

from __future__ import annotations

import copy
import io
import math
import runpy
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, PAPER_SETTINGS
from optuna_nos.optim.torch_optim import GenomeOptimizer
from optuna_nos.space import Decay, DecayNode, Genome, Momentum, Node

# Operand columns and hidden-node columns.
G, G2, G3, V_HAT, S_HAT, LAM_HAT, ONE, TWO = 0, 1, 2, 3, 4, 5, 6, 7
W6, W5, W4, W3, SIGN_G, SIGN_V, QHM_V, QHM_S, QHM_L, AGG_V, AGG_S, AGG_L = range(8, 20)
N0, N1, N2, N3, N4 = 20, 21, 22, 23, 24
# Unary / binary op codes used by name below.
ID, SQRT, EXP_MOV_AVG, DELTA_CHANGE, MAX_VALUE = -1, 2, 22, 23, 24
ADD, DIV = 0, 5
DROP_50, DROP_30 = 17, 18

_FILLER = Node(inputs=(G,))


def genome(
    root: Node, *hidden: Node, momentum: Momentum = Momentum.NONE, flip: bool = False
) -> Genome:
    """A genome whose hidden nodes n0.. are ``hidden``; unused slots are inactive."""
    nodes = (*hidden, *[_FILLER] * (5 - len(hidden)))
    return Genome(hidden=nodes, root=root, momentum=momentum, flip=flip)


def identity_of(operand: int, **kwargs: Any) -> Genome:
    """``id(id(operand))``: U = operand."""
    return genome(Node(inputs=(N0,)), Node(inputs=(operand,)), **kwargs)


ADAM = genome(Node(inputs=(V_HAT, N0), binary_op=DIV), Node(inputs=(S_HAT,), unary_op=SQRT))
LINEAR_DECAY = Decay(root=DecayNode(inputs=(0,), unary_op=12))  # id(a1) = 1 - t/T


def make_model(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(dtype)


def batch(step: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


def backward(model: nn.Module, step: int) -> Tensor:
    dtype = next(model.parameters()).dtype
    x, y = batch(step, dtype)
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    return loss


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: range) -> None:
    for step in steps:
        opt.zero_grad()
        backward(model, step)
        opt.step()


def close(actual: Tensor, expected: Tensor, tol: float = 1e-12) -> None:
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


def same(actual: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)


# -- equivalence with torch.optim -------------------------------------------------------------


def test_identity_genome_equals_sgd_and_keeps_emas() -> None:
    """U = g, no momentum: w <- w - lr g, torch's SGD. v, s, lam follow their EMAs of g."""
    ours, theirs = make_model(), make_model()
    opt = GenomeOptimizer(ours.parameters(), identity_of(G), lr=0.05)
    sgd = torch.optim.SGD(theirs.parameters(), lr=0.05)
    emas = {id(p): [torch.zeros_like(p) for _ in range(3)] for p in ours.parameters()}
    for step in range(120):
        for model, optimizer in ((ours, opt), (theirs, sgd)):
            optimizer.zero_grad()
            backward(model, step)
        for p in ours.parameters():
            v, s, lam = emas[id(p)]
            g = p.grad
            assert g is not None
            emas[id(p)] = [0.9 * v + 0.1 * g, 0.99 * s + 0.01 * g**2, 0.999 * lam + 0.001 * g**3]
        opt.step()
        sgd.step()
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        close(p, q)
        v, s, lam = emas[id(p)]
        close(opt.state[p]["v"], v)
        close(opt.state[p]["s"], s)
        close(opt.state[p]["lam"], lam)
    assert opt.step_count == 120


def test_adam_genome_equals_adam() -> None:
    """(v hat) / (sqrt(|s hat|)) = m_hat / (sqrt(v_hat) + eps) with betas (0.9, 0.99), eps 1e-7."""
    ours, theirs = make_model(), make_model()
    opt = GenomeOptimizer(ours.parameters(), ADAM, lr=0.01)
    adam = torch.optim.Adam(theirs.parameters(), lr=0.01, betas=(0.9, 0.99), eps=1e-7)
    train(ours, opt, range(150))
    train(theirs, adam, range(150))
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        close(p, q, 1e-10)
        close(opt.state[p]["v"], adam.state[q]["exp_avg"])
        close(opt.state[p]["s"], adam.state[q]["exp_avg_sq"])


def test_momentum_genome_equals_sgd_momentum() -> None:
    """SGD: b <- 0.9 b + g ; w <- w - lr b.  Genome: m <- 0.9 m - lr g ; w <- w + m.

    With m = -lr b the two recurrences coincide (constant lr, dampening 0), so the genome's
    buffer is -lr times torch's.
    """
    lr = 0.05
    ours, theirs = make_model(), make_model()
    opt = GenomeOptimizer(
        ours.parameters(), identity_of(G, momentum=Momentum.MOMENTUM), lr=lr, momentum=0.9
    )
    sgd = torch.optim.SGD(theirs.parameters(), lr=lr, momentum=0.9)
    train(ours, opt, range(120))
    train(theirs, sgd, range(120))
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        close(p, q, 1e-10)
        close(opt.state[p]["momentum_buffer"], -lr * sgd.state[q]["momentum_buffer"])


def test_param_groups_each_use_their_lr() -> None:
    ours, theirs = make_model(), make_model()
    groups = lambda m: [  # noqa: E731
        {"params": m[0].parameters()},
        {"params": m[2].parameters(), "lr": 0.01},
    ]
    opt = GenomeOptimizer(groups(ours), identity_of(G), lr=0.1)
    sgd = torch.optim.SGD(groups(theirs), lr=0.1)
    train(ours, opt, range(100))
    train(theirs, sgd, range(100))
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        close(p, q)


# -- hand-written recurrences on a quadratic ----------------------------------------------------
#
# f(w) = 0.5 * sum(a * (w - b)^2), so g = a * (w - b); the tests set p.grad themselves.

A = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.25], dtype=torch.float64)
B = torch.tensor([1.0, -1.0, 0.5, 2.0, -0.3], dtype=torch.float64)
W0 = torch.tensor([0.3, 0.9, -1.1, 0.2, 1.5], dtype=torch.float64)


def quadratic_optimizer(opt_genome: Genome, **kwargs: Any) -> GenomeOptimizer:
    """An optimizer over one parameter that starts at W0."""
    return GenomeOptimizer([nn.Parameter(W0.clone())], opt_genome, **kwargs)


def quadratic_steps(opt: GenomeOptimizer, steps: int) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield (t, w before the step, g) and take the step after each yield."""
    p = opt.param_groups[0]["params"][0]
    for t in range(steps):
        p.grad = A * (p.detach() - B)
        yield t, p.detach().clone(), p.grad.clone()
        opt.step()


def param_of(opt: GenomeOptimizer) -> Tensor:
    return opt.param_groups[0]["params"][0].detach()


def test_nesterov_search_form() -> None:
    """m <- mu m - lr U ; w <- w + m - lr U , U = g."""
    lr, mu = 0.05, 0.9
    w, m = W0.clone(), torch.zeros(5, dtype=torch.float64)
    opt = quadratic_optimizer(identity_of(G, momentum=Momentum.NESTEROV), lr=lr, momentum=mu)
    for _, w_before, g in quadratic_steps(opt, 100):
        close(w_before, w)
        m = mu * m - lr * g
        w = w + m - lr * g
    close(param_of(opt), w)
    close(opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"], m)


def _eta(t: int, lr: float, total: int, warmup: int, hold: int, hold_value: float) -> float:
    if t < warmup:
        return lr * t / warmup
    if hold > 0 and warmup <= t <= warmup + hold:
        return hold_value
    return 0.5 * lr * (1 + math.cos(math.pi * (t - warmup - hold) / (total - warmup - hold)))


def _mu(t: int, total: int, warmup: int, hold: int) -> float:
    if t < warmup:
        return 0.95 - 0.1 * t / (warmup - 1) if warmup > 1 else 0.95
    if t < warmup + hold:
        return 0.85
    n = total - warmup - hold
    return 0.85 + 0.1 * (t - warmup - hold) / (n - 1) if n > 1 else 0.85


@pytest.mark.parametrize("paper_mode", [False, True])
def test_lr_schedule_warmup_hold_cosine(paper_mode: bool) -> None:
    """U = 1 and no momentum, so each step moves w by exactly -eta_t."""
    total, warmup, hold, lr = 40, 8, 6, 0.5
    settings = PAPER_SETTINGS if paper_mode else DEFAULT_SETTINGS
    p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = GenomeOptimizer(
        [p],
        identity_of(ONE),
        lr=lr,
        total_steps=total,
        warmup_steps=warmup,
        hold_steps=hold,
        settings=settings,
    )
    hold_value = 0.0 if paper_mode else lr
    for t in range(total):
        expected = _eta(t, lr, total, warmup, hold, hold_value)
        assert opt.lr_at(t) == pytest.approx(expected, abs=1e-15)
        before = p.item()
        p.grad = torch.zeros_like(p)
        opt.step()
        assert before - p.item() == pytest.approx(expected, abs=1e-14)
    assert opt.lr_at(0) == 0.0


def test_momentum_cycle() -> None:
    """U = 1, momentum type: m_t = mu_t m_{t-1} - eta_t and w moves by m_t."""
    total, warmup, hold, lr = 50, 10, 5, 0.1
    p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = GenomeOptimizer(
        [p],
        identity_of(ONE, momentum=Momentum.MOMENTUM),
        lr=lr,
        total_steps=total,
        warmup_steps=warmup,
        hold_steps=hold,
    )
    m = 0.0
    for t in range(total):
        mu = _mu(t, total, warmup, hold)
        assert opt.momentum_at(t) == pytest.approx(mu, abs=1e-15)
        m = mu * m - _eta(t, lr, total, warmup, hold, lr)
        before = p.item()
        p.grad = torch.zeros_like(p)
        opt.step()
        assert p.item() - before == pytest.approx(m, abs=1e-14)
    assert _mu(0, total, warmup, hold) == 0.95 and _mu(warmup - 1, total, warmup, hold) == 0.85
    assert _mu(total - 1, total, warmup, hold) == pytest.approx(0.95)


def test_decayed_edge() -> None:
    """``[id(a1)][g]``: U = (1 - t/T) g, under the cosine schedule (W = H = 0)."""
    total, lr = 25, 0.1
    decayed = genome(Node(inputs=(N0,)), Node(inputs=(G,), decays={G: LINEAR_DECAY}))
    w = W0.clone()
    opt = quadratic_optimizer(decayed, lr=lr, total_steps=total)
    for t, w_before, g in quadratic_steps(opt, total):
        close(w_before, w)
        eta = 0.5 * lr * (1 + math.cos(math.pi * t / total))
        w = w - eta * (1 - t / total) * g
    close(param_of(opt), w)


def _ema_step(n: Tensor, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
    n = 0.95 * n + 0.05 * x
    return n / (1 - 0.95 ** (t + 1)), n


def _delta_step(n: Tensor, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
    return x - n, x - n


def _max_step(n: Tensor, x: Tensor, t: int) -> tuple[Tensor, Tensor]:
    n = torch.maximum(x, n)
    return n, n


@pytest.mark.parametrize(
    ("op", "recurrence"),
    [
        (EXP_MOV_AVG, _ema_step),
        (DELTA_CHANGE, _delta_step),
        (MAX_VALUE, _max_step),
    ],
)
@pytest.mark.parametrize("decayed", [False, True])
@pytest.mark.parametrize("foreach", [True, False])
def test_stateful_ops(
    op: int,
    recurrence: Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]],
    decayed: bool,
    foreach: bool,
) -> None:
    """U = op(d(t) g) with the op's state fed the decayed value."""
    total, lr = 30, 0.05
    decays = {N0: LINEAR_DECAY} if decayed else {}
    stateful = genome(Node(inputs=(N0,), unary_op=op, decays=decays), Node(inputs=(G,)))
    w, n = W0.clone(), torch.zeros(5, dtype=torch.float64)
    opt = quadratic_optimizer(stateful, lr=lr, momentum=0.0, total_steps=total, foreach=foreach)
    for t, w_before, g in quadratic_steps(opt, total):
        close(w_before, w)
        x = (1 - t / total) * g if decayed else g
        update, n = recurrence(n, x, t)
        w = w - 0.5 * lr * (1 + math.cos(math.pi * t / total)) * update
    close(param_of(opt), w)
    close(opt.state[opt.param_groups[0]["params"][0]]["node_root"], n)


def test_paper_mode_exp_mov_avg_divides_by_zero() -> None:
    """Paper mode: expMovAvg divides by 1 - 0.95^0 = 0, so the first step is non-finite."""
    stateful = genome(Node(inputs=(N0,), unary_op=EXP_MOV_AVG), Node(inputs=(G,)))
    p = nn.Parameter(W0.clone())
    opt = GenomeOptimizer([p], stateful, lr=0.1, settings=PAPER_SETTINGS)
    p.grad = A * (p.detach() - B)
    opt.step()
    assert not torch.isfinite(p).any()
    # paper mode's 1 - 0.95 is the released code's float32 difference 1 - 0.95f
    close(opt.state[p]["node_root"], 0.050000011920928955 * A * (W0 - B))


@pytest.mark.parametrize("momentum_type", list(Momentum))
def test_flip_reverses_the_sign(momentum_type: Momentum) -> None:
    """sigma = +1: m <- mu m + lr U (momentum types), w <- w + lr U (none); U = g."""
    lr, mu = 0.02, 0.8
    w, m = W0.clone(), torch.zeros(5, dtype=torch.float64)
    flipped = identity_of(G, momentum=momentum_type, flip=True)
    opt = quadratic_optimizer(flipped, lr=lr, momentum=mu)
    for _, w_before, g in quadratic_steps(opt, 40):
        close(w_before, w)
        if momentum_type == Momentum.NONE:
            w = w + lr * g
            continue
        m = mu * m + lr * g
        w = w + m + (lr * g if momentum_type == Momentum.NESTEROV else 0.0)
    close(param_of(opt), w)
    assert (param_of(opt) - B).abs().sum() > (W0 - B).abs().sum()  # it climbs


def test_group_lr_change_takes_effect() -> None:
    p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = GenomeOptimizer([p], identity_of(ONE), lr=1.0, total_steps=10)
    for t in range(10):
        if t == 4:
            opt.param_groups[0]["lr"] = 3.0
        before = p.item()
        p.grad = torch.zeros_like(p)
        opt.step()
        peak = 3.0 if t >= 4 else 1.0
        assert before - p.item() == pytest.approx(0.5 * peak * (1 + math.cos(math.pi * t / 10)))


# -- the list path equals the reference path ----------------------------------------------------


def _battery() -> list[Genome]:
    """Genomes that together use every operand, every op, decays, momentum types and flip."""
    momenta = list(Momentum)
    out = []
    for code in range(-1, 25):
        operand = (QHM_V, G, V_HAT, AGG_S, S_HAT, W4)[code % 6]
        out.append(
            genome(
                Node(inputs=(G, N0), binary_op=ADD),
                Node(inputs=(operand,), unary_op=code),
                momentum=momenta[code % 3],
            )
        )
    for code in range(10):
        out.append(
            genome(
                Node(inputs=(N0,)),
                Node(inputs=(G, (SIGN_V, V_HAT, ONE)[code % 3]), binary_op=code),
                momentum=momenta[code % 3],
                flip=code % 2 == 1,
            )
        )
    for operand in range(20):
        out.append(
            genome(
                Node(inputs=(N0,), unary_op=11),
                Node(inputs=(operand,)),
                momentum=momenta[operand % 3],
            )
        )
    decay_b = Decay(root=DecayNode(inputs=(14, 3), binary_op=2), hidden=DecayNode(inputs=(10,)))
    out.append(
        genome(  # decays on several edges, stateful node fed twice, two dropout nodes
            Node(inputs=(N1, N2), binary_op=8, decays={N2: decay_b}),
            Node(inputs=(G,), unary_op=DROP_50, decays={G: LINEAR_DECAY}),
            Node(inputs=(N0, QHM_S), binary_op=6),
            Node(inputs=(N0,), unary_op=DROP_30),
            momentum=Momentum.NESTEROV,
        )
    )
    return out


def _state_tensors(opt: GenomeOptimizer) -> list[tuple[str, Tensor]]:
    return [
        (key, value)
        for group in opt.param_groups
        for p in group["params"]
        for key, value in sorted(opt.state[p].items())
    ]


@pytest.mark.parametrize("genome_", _battery(), ids=lambda g: g.equation()[:60])
def test_foreach_path_equals_reference_bit_for_bit(genome_: Genome) -> None:
    """Same kernels per tensor, so parameters and every state tensor agree exactly."""
    runs = []
    for foreach in (True, False):
        params = [
            nn.Parameter(
                torch.randn(shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
            )
            for i, shape in enumerate([(3, 2, 3), (4,), (2, 5)])
        ]
        opt = GenomeOptimizer(
            params, genome_, lr=0.01, total_steps=30, warmup_steps=3, seed=7, foreach=foreach
        )
        for step in range(20):
            for p in params:  # a gradient that depends on w, without autograd
                p.grad = torch.sin(2.5 * p.detach() + 0.1 * step) + 0.05 * p.detach()
            opt.step()
        runs.append((params, opt))
    optimizers = [opt for _, opt in runs]
    for p, q in zip(runs[0][0], runs[1][0], strict=True):
        same(p, q)
    fast, reference = (_state_tensors(o) for o in optimizers)
    assert [k for k, _ in fast] == [k for k, _ in reference]
    for (_, a), (_, b) in zip(fast, reference, strict=True):
        same(a, b)


# -- resume -------------------------------------------------------------------------------------

RESUME_GENOMES = [
    # Mom ~ (drop(g, 0.5))+(expMovAvg(v hat)): dropout and a stateful node.
    genome(
        Node(inputs=(N0, N1), binary_op=ADD),
        Node(inputs=(G,), unary_op=DROP_50),
        Node(inputs=(V_HAT,), unary_op=EXP_MOV_AVG),
        momentum=Momentum.MOMENTUM,
    ),
    # Nest ~ drop(deltaChange([id(a1)][g]), 0.3): a decayed edge into a stateful node.
    genome(
        Node(inputs=(N0,), unary_op=DROP_30),
        Node(inputs=(G,), unary_op=DELTA_CHANGE, decays={G: LINEAR_DECAY}),
        momentum=Momentum.NESTEROV,
    ),
]


@pytest.mark.parametrize("genome_", RESUME_GENOMES, ids=lambda g: g.equation())
@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("seed", [5, None])
def test_resume_is_bit_exact(genome_: Genome, foreach: bool, seed: int | None) -> None:
    """60 straight steps, checkpointed (serialised) after 30; a fresh model and optimizer
    (different seed) loaded from the checkpoint and trained 30 steps end bit-identical."""
    kwargs: dict[str, Any] = {"lr": 0.05, "total_steps": 80, "warmup_steps": 5, "foreach": foreach}
    straight = make_model()
    opt = GenomeOptimizer(straight.parameters(), genome_, seed=seed, **kwargs)
    train(straight, opt, range(30))
    buffer = io.BytesIO()
    torch.save({"model": straight.state_dict(), "opt": opt.state_dict()}, buffer)
    train(straight, opt, range(30, 60))

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = make_model(seed=99)
    resumed.load_state_dict(saved["model"])
    opt_resumed = GenomeOptimizer(resumed.parameters(), genome_, seed=12345, **kwargs)
    opt_resumed.load_state_dict(saved["opt"])
    assert opt_resumed.step_count == 30
    train(resumed, opt_resumed, range(30, 60))

    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        same(q, p)
    for (key_a, a), (key_b, b) in zip(
        _state_tensors(opt), _state_tensors(opt_resumed), strict=True
    ):
        assert key_a == key_b
        same(b, a)
    assert opt_resumed.step_count == opt.step_count == 60


def test_dropout_masks_depend_on_the_seed() -> None:
    results = []
    for seed in (1, 1, 2):
        model = make_model()
        train(
            model,
            GenomeOptimizer(
                model.parameters(), RESUME_GENOMES[0], lr=0.05, seed=seed, momentum=0.9
            ),
            range(5),
        )
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], results[2])


def test_load_state_dict_copies_and_checks_the_genome() -> None:
    model = make_model()
    opt = GenomeOptimizer(model.parameters(), ADAM, lr=0.01)
    train(model, opt, range(3))
    saved = copy.deepcopy(opt.state_dict())
    snapshot = copy.deepcopy(saved)
    fresh = GenomeOptimizer(model.parameters(), ADAM, lr=0.01)
    fresh.load_state_dict(saved)
    train(model, fresh, range(3, 6))
    for index, state in snapshot["state"].items():
        for key, value in state.items():
            same(saved["state"][index][key], value)
    other = GenomeOptimizer(model.parameters(), identity_of(G), lr=0.01)
    with pytest.raises(NOSError, match="belongs to genome"):
        other.load_state_dict(saved)
    with pytest.raises(NOSError, match="not saved by a GenomeOptimizer"):
        other.load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())
    # Same printed equation, but the stateful node sits in another slot: its state key differs.
    in_n0 = genome(Node(inputs=(N0,)), Node(inputs=(G,), unary_op=DELTA_CHANGE))
    in_n1 = genome(Node(inputs=(N1,)), _FILLER, Node(inputs=(G,), unary_op=DELTA_CHANGE))
    assert in_n0.equation() == in_n1.equation()
    source = GenomeOptimizer(model.parameters(), in_n0, lr=0.01)
    train(model, source, range(1))
    with pytest.raises(NOSError, match="this genome keeps"):
        GenomeOptimizer(model.parameters(), in_n1, lr=0.01).load_state_dict(source.state_dict())


# -- behaviour at the edges ---------------------------------------------------------------------

DTYPE_GENOMES = [
    ADAM,
    RESUME_GENOMES[0],
    RESUME_GENOMES[1],
    genome(Node(inputs=(N0,), unary_op=20), Node(inputs=(QHM_V,), unary_op=14)),  # norm(i1e)
    genome(Node(inputs=(N0, V_HAT), binary_op=7), Node(inputs=(S_HAT,), unary_op=MAX_VALUE)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("genome_", DTYPE_GENOMES, ids=lambda g: g.equation())
def test_low_precision_dtypes(dtype: torch.dtype, genome_: Genome) -> None:
    model = make_model(dtype=dtype)
    before = [p.detach().clone() for p in model.parameters()]
    opt = GenomeOptimizer(model.parameters(), genome_, lr=0.01, total_steps=20, seed=0)
    train(model, opt, range(8))
    for p, p0 in zip(model.parameters(), before, strict=True):
        assert p.dtype == dtype
        assert not torch.equal(p.detach(), p0)
        assert all(value.dtype == dtype for value in opt.state[p].values())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_op_runs_in_half_precision(dtype: torch.dtype) -> None:
    for genome_ in _battery():
        model = make_model(dtype=dtype)
        opt = GenomeOptimizer(model.parameters(), genome_, lr=0.01, total_steps=5, seed=0)
        train(model, opt, range(2))
        assert all(p.dtype == dtype for p in model.parameters())


def test_decays_and_cycle_momentum_need_total_steps() -> None:
    decayed = genome(Node(inputs=(N0,)), Node(inputs=(G,), decays={G: LINEAR_DECAY}))
    with pytest.raises(NOSError, match="decays, which need total_steps"):
        GenomeOptimizer([nn.Parameter(W0.clone())], decayed, lr=0.1)
    with pytest.raises(NOSError, match="momentum='cycle' needs total_steps"):
        GenomeOptimizer(
            [nn.Parameter(W0.clone())], identity_of(G, momentum=Momentum.MOMENTUM), lr=0.1
        )
    # A constant coefficient, or a momentum type that ignores it, needs no run length.
    GenomeOptimizer(
        [nn.Parameter(W0.clone())],
        identity_of(G, momentum=Momentum.MOMENTUM),
        lr=0.1,
        momentum=0.9,
    )
    GenomeOptimizer([nn.Parameter(W0.clone())], identity_of(G), lr=0.1)


def test_non_finite_gradients_propagate() -> None:
    p = nn.Parameter(W0.clone())
    opt = GenomeOptimizer([p], identity_of(G), lr=0.1)
    p.grad = torch.full_like(p, float("nan"))
    opt.step()
    assert torch.isnan(p).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("foreach", [True, False])
def test_cuda_matches_cpu(foreach: bool) -> None:
    results = []
    for device in ("cpu", "cuda"):
        model = make_model().to(device)
        opt = GenomeOptimizer(model.parameters(), ADAM, lr=0.01, foreach=foreach)
        for step in range(20):
            opt.zero_grad()
            x, y = (v.to(device) for v in batch(step))
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
        results.append([p.detach().cpu() for p in model.parameters()])
    for p, q in zip(*results, strict=True):
        close(q, p, 1e-9)
    model = make_model().cuda()
    opt = GenomeOptimizer(model.parameters(), RESUME_GENOMES[0], lr=0.01, momentum=0.9, seed=1)
    train_cuda = [(v.cuda() for v in batch(s)) for s in range(3)]
    for x, y in train_cuda:
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    assert "cuda:0" in opt.state_dict()["genome_optimizer"]["generators"]


# -- the paper's sphere oracle, run through the optimizer ----------------------------------------

SPHERE_X0 = torch.tensor([1.1, 0.9, 1.1, 0.9, 1.0])
SPHERE_B = torch.tensor([0.5, 1.5, -0.3, -1.2, 0.75])
SPHERE_LRS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
I1E = 14
A13_TIMES_A2 = Decay(root=DecayNode(inputs=(12, 1), binary_op=2))


def _sphere(opt_genome: Genome) -> tuple[str, float | None, float | None]:
    """The sphere test: first (outcome, eta, loss after 34 updates) with loss < 3.5, float32."""
    for flip in (False, True):
        for lr in SPHERE_LRS:
            x = nn.Parameter(SPHERE_X0.clone())
            opt = GenomeOptimizer(
                [x], opt_genome.replace(flip=flip), lr=lr, total_steps=35, warmup_steps=6, seed=0
            )
            for _ in range(35):
                loss = float(((x.detach() - SPHERE_B) ** 2).sum())
                x.grad = 2.0 * (x.detach() - SPHERE_B)
                opt.step()
            if loss < 3.5:  # the loss of iteration 35, i.e. after 34 updates
                return ("flip" if flip else "pass"), lr, loss
    return "reject", None, None


_ORACLE_GENOMES = {
    "id(id(g))": identity_of(G),
    "id(-(g))": genome(Node(inputs=(N0,)), Node(inputs=(G,), unary_op=0)),
    "id(id(sign(g)))": identity_of(SIGN_G),
    "id(id(v hat))": identity_of(V_HAT),
    "(v hat) / (sqrt(|s hat|))": ADAM,
    "bessel_i1e(bessel_i1e(g))": genome(
        Node(inputs=(N0,), unary_op=I1E), Node(inputs=(G,), unary_op=I1E)
    ),
    "id(id(g^2))": identity_of(G2),
    "id(id(10-4w))": identity_of(W4),
    "id(id(1))": identity_of(ONE),
    "id(id([id(a1)][g]))": genome(Node(inputs=(N0,)), Node(inputs=(G,), decays={G: LINEAR_DECAY})),
    "bessel_i1e(bessel_i1e([(a13)*(a2)][g]))": genome(
        Node(inputs=(N0,), unary_op=I1E), Node(inputs=(G,), unary_op=I1E, decays={G: A13_TIMES_A2})
    ),
    "id(g/(1+|g|))": genome(Node(inputs=(N0,)), Node(inputs=(G,), unary_op=21)),
}
# (none, momentum, Nesterov): the paper's oracle table verbatim, as (outcome, eta, loss).
_ORACLE: dict[str, list[tuple[str, float | None, float | None]]] = {
    "id(id(g))": [("pass", 1, 0.0), ("pass", 1, 0.5208), ("pass", 1, 1.1515)],
    "id(-(g))": [("flip", 1, 0.0), ("flip", 1, 0.5208), ("flip", 1, 1.1515)],
    "id(id(sign(g)))": [("pass", 1, 0.0003), ("pass", 1e-1, 0.0666), ("pass", 1, 0.2152)],
    "id(id(v hat))": [("pass", 1, 0.1929), ("reject", None, None), ("pass", 1e-3, 3.4785)],
    "(v hat) / (sqrt(|s hat|))": [
        ("pass", 1, 0.2010),
        ("pass", 1e-2, 1.1794),
        ("pass", 1e-2, 0.9671),
    ],
    "bessel_i1e(bessel_i1e(g))": [("pass", 1, 0.4521), ("pass", 1, 0.4446), ("pass", 1, 0.0069)],
    "id(id(g^2))": [("pass", 1e-2, 2.4334), ("pass", 1e-3, 1.6884), ("pass", 1e-3, 1.6541)],
    "id(id(10-4w))": [("reject", None, None)] * 3,
    "id(id(1))": [("reject", None, None)] * 3,
    "id(id([id(a1)][g]))": [("pass", 1, 0.0), ("pass", 1, 0.6851), ("pass", 1, 0.0)],
    "bessel_i1e(bessel_i1e([(a13)*(a2)][g]))": [
        ("pass", 1, 0.6001),
        ("pass", 1, 0.5887),
        ("pass", 1, 0.0203),
    ],
    "id(g/(1+|g|))": [("pass", 1, 0.0), ("pass", 1, 0.4039), ("pass", 1, 0.0)],
}


@pytest.mark.parametrize("momentum_type", list(Momentum), ids=lambda m: m.name.lower())
@pytest.mark.parametrize("name", list(_ORACLE))
def test_sphere_oracle(name: str, momentum_type: Momentum) -> None:
    """Schedules (T = 35, W = 6), momentum cycle, decays and ops against the oracle table."""
    expected_outcome, expected_lr, expected_loss = _ORACLE[name][int(momentum_type)]
    base = _ORACLE_GENOMES[name]
    assert base.equation() == "None ~ " + name
    outcome, lr, loss = _sphere(base.replace(momentum=momentum_type))
    assert (outcome, lr) == (expected_outcome, expected_lr)
    if expected_loss is not None:
        assert loss == pytest.approx(expected_loss, abs=1e-3)


def test_parsed_spec_examples_take_the_same_steps_on_both_paths() -> None:
    """Released-log example equations, parsed, run identically on the list and reference paths."""
    parse = pytest.importorskip("optuna_nos.space.parse").parse_equation
    examples = [
        "None ~ (min(v hat, [min(a12, a9)][2]))+(10-4w)",
        "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))",
        "None ~ norm([sqrt(a6)][(lam hat)+(((1-0.7)*g+0.7*v hat))])",
        "Mom ~ (g)*([arctan(a4)][ln(|1+exp([max(a9, a10)][g^3])|)])",
        "None ~ clip(v hat, [1/(1+exp(-a11)][ln(|[bessel_i1e(a10)][s hat]|)])",
        "None ~ tanh(g)/(1+|tanh(g)|)",
        "None ~ (0.95*(min([min(a12, a9)][2], v hat))+0.05*((10-6w) / (min([min(a12, a9)]"
        "[2], v hat))))",
        "Nest ~ (v hat)-(MaxValue(mean(beta*s-g^2)))",
    ]
    for text in examples:
        runs = []
        for foreach in (True, False):
            model = make_model()
            opt = GenomeOptimizer(
                model.parameters(),
                parse(text),
                lr=0.01,
                total_steps=40,
                warmup_steps=4,
                foreach=foreach,
            )
            train(model, opt, range(40))
            runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        same(runs[0], runs[1])
        assert torch.isfinite(runs[0]).all(), text


# ------------------------------------------------------------- state dicts of earlier versions


_DATA = Path(__file__).parent / "data"
_genome_states = SimpleNamespace(**runpy.run_path(str(_DATA / "genome_states.py")))
#: Written by tests/data/genome_states.py while t and the dropout generators were plain
#: attributes (see that script's docstring).
_OLD_GENOME_STATES = torch.load(_DATA / "genome_states.pt", weights_only=True)


@pytest.mark.parametrize("case", list(_genome_states.CASES))
def test_earlier_state_dict_resumes_the_fresh_trajectory(case: str) -> None:
    """A state dict saved mid-run by the earlier version (GenomeOptimizer, or the exported
    class) loads into an optimizer with another seed and continues a fresh run's path."""
    data = _genome_states
    saved = _OLD_GENOME_STATES[case]
    fresh = [w.clone().requires_grad_() for w in data.initial_weights()]
    fresh_opt = data.make(case, fresh)
    data.run(fresh_opt, fresh, range(data.SAVED_AT))
    for got, want in zip(saved["weights"], fresh, strict=True):
        torch.testing.assert_close(got, want.detach(), rtol=1e-12, atol=1e-12)
    data.run(fresh_opt, fresh, range(data.SAVED_AT, data.TOTAL_STEPS))

    resumed = [w.clone().requires_grad_() for w in saved["weights"]]
    resumed_opt = data.make(case, resumed, seed=99)
    resumed_opt.load_state_dict(saved["optimizer"])
    data.run(resumed_opt, resumed, range(data.SAVED_AT, data.TOTAL_STEPS))
    for got, want in zip(resumed, fresh, strict=True):
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-12, atol=1e-12)
