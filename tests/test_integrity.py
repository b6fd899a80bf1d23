"""The integrity check against the paper's oracle table, independent references and
the sequential reference path; the behaviour key; structural rejections."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
import torch

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import DEFAULT_SETTINGS, PAPER_SETTINGS
from optuna_nos.optim.integrity import (
    LEARNING_RATES,
    IntegrityResult,
    behaviour_key,
    integrity_check,
    integrity_check_sequential,
    sphere_losses,
    sphere_run,
)
from optuna_nos.space import Decay, DecayNode, Genome, Momentum, Node
from optuna_nos.space.decays import is_valid_decay

N0, N1, N2, N3, N4, ROOT = 20, 21, 22, 23, 24, 25
G, G2, V_HAT, S_HAT, ONE, TWO, W4, SIGN_G = 0, 1, 3, 4, 6, 7, 10, 12
IDENTITY, NEG, SQRT_ABS, I1E, SOFTSIGN = -1, 0, 2, 14, 21
ADD, MUL, DIV = 0, 2, 5
A1, A2, A13 = 0, 1, 12  # decay base schedules a1, a2, a13
DECAY_ID, DECAY_MUL = 12, 2

SPARE = Node((G,))


def genome(root: Node, *hidden: Node, momentum: Momentum = Momentum.NONE) -> Genome:
    nodes = list(hidden) + [SPARE] * (5 - len(hidden))
    return Genome(tuple(nodes), root, momentum)


def chain(inner: Node, outer_op: int = IDENTITY, momentum: Momentum = Momentum.NONE) -> Genome:
    """``outer(inner)``: the root applies ``outer_op`` to n0 = ``inner``."""
    return genome(Node((N0,), unary_op=outer_op), inner, momentum=momentum)


def unary(op: int, column: int, decay: Decay | None = None) -> Node:
    return Node((column,), unary_op=op, decays={column: decay} if decay else {})


A1_DECAY = Decay(root=DecayNode((A1,), unary_op=DECAY_ID))  # [id(a1)]
A13_A2_DECAY = Decay(root=DecayNode((A13, A2), binary_op=DECAY_MUL))  # [(a13)*(a2)]

# -- the oracle table ---------------------------------------------------------------------------

ORACLE_GENOMES: dict[str, Callable[[Momentum], Genome]] = {
    "id(id(g))": lambda m: chain(unary(IDENTITY, G), momentum=m),
    "id(-(g))": lambda m: chain(unary(NEG, G), momentum=m),
    "id(id(sign(g)))": lambda m: chain(unary(IDENTITY, SIGN_G), momentum=m),
    "id(id(v hat))": lambda m: chain(unary(IDENTITY, V_HAT), momentum=m),
    "(v hat) / (sqrt(|s hat|))": lambda m: genome(
        Node((V_HAT, N0), binary_op=DIV), unary(SQRT_ABS, S_HAT), momentum=m
    ),
    "bessel_i1e(bessel_i1e(g))": lambda m: chain(unary(I1E, G), I1E, momentum=m),
    "id(id(g^2))": lambda m: chain(unary(IDENTITY, G2), momentum=m),
    "id(id(10-4w))": lambda m: chain(unary(IDENTITY, W4), momentum=m),
    "id(id(1))": lambda m: chain(unary(IDENTITY, ONE), momentum=m),
    "id(id([id(a1)][g]))": lambda m: chain(unary(IDENTITY, G, A1_DECAY), momentum=m),
    "bessel_i1e(bessel_i1e([(a13)*(a2)][g]))": lambda m: chain(
        unary(I1E, G, A13_A2_DECAY), I1E, momentum=m
    ),
    "id(g/(1+|g|))": lambda m: chain(unary(SOFTSIGN, G), momentum=m),
}

# (outcome, first passing eta, loss) per momentum type: none, momentum, Nesterov (search form).
Expected = tuple[str, float | None, float | None]
ORACLE: dict[str, tuple[Expected, Expected, Expected]] = {
    "id(id(g))": (("pass", 1, 0.0000), ("pass", 1, 0.5208), ("pass", 1, 1.1515)),
    "id(-(g))": (("flip", 1, 0.0000), ("flip", 1, 0.5208), ("flip", 1, 1.1515)),
    "id(id(sign(g)))": (("pass", 1, 0.0003), ("pass", 1e-1, 0.0666), ("pass", 1, 0.2152)),
    "id(id(v hat))": (("pass", 1, 0.1929), ("reject", None, None), ("pass", 1e-3, 3.4785)),
    "(v hat) / (sqrt(|s hat|))": (
        ("pass", 1, 0.2010),
        ("pass", 1e-2, 1.1794),
        ("pass", 1e-2, 0.9671),
    ),
    "bessel_i1e(bessel_i1e(g))": (("pass", 1, 0.4521), ("pass", 1, 0.4446), ("pass", 1, 0.0069)),
    "id(id(g^2))": (("pass", 1e-2, 2.4334), ("pass", 1e-3, 1.6884), ("pass", 1e-3, 1.6541)),
    "id(id(10-4w))": (("reject", None, None),) * 3,
    "id(id(1))": (("reject", None, None),) * 3,
    "id(id([id(a1)][g]))": (("pass", 1, 0.0000), ("pass", 1, 0.6851), ("pass", 1, 0.0000)),
    "bessel_i1e(bessel_i1e([(a13)*(a2)][g]))": (
        ("pass", 1, 0.6001),
        ("pass", 1, 0.5887),
        ("pass", 1, 0.0203),
    ),
    "id(g/(1+|g|))": (("pass", 1, 0.0000), ("pass", 1, 0.4039), ("pass", 1, 0.0000)),
}

ORACLE_CASES = [
    pytest.param(name, momentum, ORACLE[name][momentum], id=f"{name}-{momentum.name}")
    for name in ORACLE
    for momentum in Momentum
]


def assert_outcome(result: IntegrityResult, expected: Expected) -> None:
    outcome, lr, loss = expected
    if outcome == "reject":
        assert not result.passed and not result.flip
        assert result.lr is None and result.loss is None
        assert result.reason.startswith("no learning rate in [1, 0.1, 0.01, 0.001, 0.0001, 1e-05]")
        return
    assert result.passed
    assert result.flip == (outcome == "flip")
    assert result.lr == lr
    assert result.loss == pytest.approx(loss, abs=1e-3)
    assert result.reason.startswith("passed")


@pytest.mark.parametrize(("name", "momentum", "expected"), ORACLE_CASES)
def test_oracle_batched(name: str, momentum: Momentum, expected: Expected) -> None:
    candidate = ORACLE_GENOMES[name](momentum)
    assert candidate.equation() == momentum.prefix + name
    assert_outcome(integrity_check(candidate), expected)


@pytest.mark.parametrize(("name", "momentum", "expected"), ORACLE_CASES)
def test_oracle_sequential(name: str, momentum: Momentum, expected: Expected) -> None:
    assert_outcome(integrity_check_sequential(ORACLE_GENOMES[name](momentum)), expected)


def test_oracle_through_the_parser() -> None:
    parse = pytest.importorskip("optuna_nos.space.parse").parse_equation
    for name, rows in ORACLE.items():
        for momentum, expected in zip(Momentum, rows, strict=True):
            assert_outcome(integrity_check(parse(momentum.prefix + name)), expected)


# -- independent references: closed-form runs written here -------------------------------------

X0 = (1.1, 0.9, 1.1, 0.9, 1.0)
TARGET = (0.5, 1.5, -0.3, -1.2, 0.75)


def schedules(eta: float, total: int = 35, warmup: int = 6) -> tuple[list[float], list[float]]:
    """The search schedules, H = 0: linear warmup then cosine; mu 0.95 -> 0.85 -> 0.95."""
    lrs = [
        eta * t / warmup
        if t < warmup
        else 0.5 * eta * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
        for t in range(total)
    ]
    down = [0.95 - 0.1 * i / (warmup - 1) for i in range(warmup)]
    up = [0.85 + 0.1 * i / (total - warmup - 1) for i in range(total - warmup)]
    return lrs, down + up


def reference_loss(update: str, momentum: Momentum, eta: float, flip: bool) -> float:
    """The integrity test's sphere run in plain float64 Python, for U = g, sign(g) or v hat."""
    lrs, mus = schedules(eta)
    sigma = 1.0 if flip else -1.0
    x, v, m = list(X0), [0.0] * 5, [0.0] * 5
    loss = math.nan
    for t in range(35):
        loss = sum((xi - bi) ** 2 for xi, bi in zip(x, TARGET, strict=True))
        for i in range(5):
            g = 2 * (x[i] - TARGET[i])
            v[i] = 0.9 * v[i] + 0.1 * g
            u = {
                "g": g,
                "sign": math.copysign(1.0, g) if g else 0.0,
                "v_hat": v[i] / (1 - 0.9 ** (t + 1)),
            }[update]
            step = sigma * lrs[t] * u
            if momentum == Momentum.NONE:
                x[i] += step
                continue
            m[i] = mus[t] * m[i] + step
            x[i] += m[i] + (step if momentum == Momentum.NESTEROV else 0.0)
    return loss


@pytest.mark.parametrize("momentum", list(Momentum), ids=lambda m: m.name)
@pytest.mark.parametrize(("update", "operand"), [("g", G), ("sign", SIGN_G), ("v_hat", V_HAT)])
def test_all_twelve_losses_match_a_plain_python_run(
    update: str, operand: int, momentum: Momentum
) -> None:
    losses = sphere_losses(chain(unary(IDENTITY, operand), momentum=momentum))
    assert losses.shape == (2, len(LEARNING_RATES)) and losses.dtype == torch.float32
    for flip in (False, True):
        for k, eta in enumerate(LEARNING_RATES):
            expected = reference_loss(update, momentum, eta, flip)
            got = float(losses[int(flip), k])
            if math.isfinite(expected) and abs(expected) < 1e30:
                assert got == pytest.approx(expected, rel=1e-4, abs=1e-4), (flip, eta)
            else:
                assert not math.isfinite(got) or got > 1e30


def test_plain_gradient_matches_torch_sgd() -> None:
    """U = g without momentum is SGD with the warmup-cosine learning rate."""
    losses = sphere_losses(chain(unary(IDENTITY, G)))
    target = torch.tensor(TARGET)
    for k, eta in enumerate(LEARNING_RATES):
        x = torch.tensor(X0, requires_grad=True)
        optimizer = torch.optim.SGD([x], lr=0.0)
        lrs, _ = schedules(eta)
        for t in range(34):
            optimizer.zero_grad()
            ((x - target) ** 2).sum().backward()
            optimizer.param_groups[0]["lr"] = lrs[t]
            optimizer.step()
        expected = float(((x.detach() - target) ** 2).sum())
        assert float(losses[0, k]) == pytest.approx(expected, rel=1e-5, abs=1e-6)


# -- batched pass == sequential reference -------------------------------------------------------


def random_decay(rng: random.Random) -> Decay:
    """A decay drawn until it is valid, unary or binary, possibly with D."""
    while True:
        hidden = DecayNode((rng.randrange(14),), unary_op=rng.randrange(13))
        if rng.random() < 0.3:
            first, second = rng.sample(range(15), 2)
            root = DecayNode((first, second), binary_op=rng.randrange(7))
        else:
            root = DecayNode((rng.randrange(15),), unary_op=rng.randrange(13))
        decay = Decay(root=root, hidden=hidden)
        if is_valid_decay(decay):
            return decay


def random_node(rng: random.Random, column: int | None) -> Node:
    """A node reading operands or other hidden nodes; ``column`` None makes a root."""

    def pick() -> int:
        if column is None or rng.random() < 0.25:
            return rng.choice([c for c in range(N0, ROOT) if c != column])
        return rng.randrange(20)

    first = pick()
    inputs: tuple[int, ...] = (first,)
    if rng.random() < 0.4:
        second = rng.randrange(20) if column is None else pick()
        if second != first:
            inputs = (first, second)
    decays = {c: random_decay(rng) for c in inputs if rng.random() < 0.2}
    return Node(inputs, unary_op=rng.randrange(-1, 25), binary_op=rng.randrange(10), decays=decays)


def random_genome(rng: random.Random) -> Genome:
    """A structurally valid genome with every op, operand and momentum type possible."""
    while True:
        hidden = tuple(random_node(rng, c) for c in range(N0, ROOT))
        try:
            return Genome(hidden, random_node(rng, None), Momentum(rng.randrange(3)))
        except NOSError:  # an active cycle: draw again
            continue


def random_genomes(count: int, seed: int) -> list[Genome]:
    rng = random.Random(seed)
    return [random_genome(rng) for _ in range(count)]


def same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def assert_batched_equals_sequential(candidates: list[Genome], settings=DEFAULT_SETTINGS) -> None:
    for candidate in candidates:
        batched = integrity_check(candidate, settings)
        sequential = integrity_check_sequential(candidate, settings)
        assert batched == sequential, candidate.equation()


def test_random_genomes_batched_equals_sequential() -> None:
    candidates = random_genomes(40, seed=1)
    outcomes = {(r.passed, r.flip) for r in map(integrity_check, candidates)}
    assert len(outcomes) == 3, "the sample should hold passes, flipped passes and rejections"
    assert_batched_equals_sequential(candidates)


def test_random_genomes_all_twelve_losses_bit_for_bit() -> None:
    """Every row of the batched pass equals its sequential run, dropout included."""
    for candidate in random_genomes(12, seed=2):
        batched = sphere_losses(candidate, generator=torch.Generator().manual_seed(7)).flatten()
        generator = torch.Generator().manual_seed(7)
        sequential = [
            sphere_run(candidate, lr, flip=flip, generator=generator)
            for flip in (False, True)
            for lr in LEARNING_RATES
        ]
        for got, want in zip(batched.tolist(), sequential, strict=True):
            assert same_float(got, want), candidate.equation()


def all_twelve_sequential(candidate: Genome, settings=DEFAULT_SETTINGS) -> list[float]:
    generator = torch.Generator().manual_seed(0)
    return [
        sphere_run(candidate, lr, flip=flip, settings=settings, generator=generator)
        for flip in (False, True)
        for lr in LEARNING_RATES
    ]


@pytest.mark.parametrize("op", range(-1, 25))
def test_every_unary_op_matches_sequential_bit_for_bit(op: int) -> None:
    """Each unary op on a decayed QHM-v edge, under a softsign root, all momentum types."""
    qhm_v, momenta = 14, list(Momentum)
    candidate = chain(unary(op, qhm_v, A1_DECAY), SOFTSIGN, momentum=momenta[op % 3])
    for settings in (DEFAULT_SETTINGS, PAPER_SETTINGS):
        batched = sphere_losses(candidate, settings).flatten().tolist()
        sequential = all_twelve_sequential(candidate, settings)
        assert all(same_float(a, b) for a, b in zip(batched, sequential, strict=True))


@pytest.mark.parametrize("op", range(10))
@pytest.mark.parametrize("momentum", list(Momentum), ids=lambda m: m.name)
def test_every_binary_op_matches_sequential_bit_for_bit(op: int, momentum: Momentum) -> None:
    """Each binary op on (v hat, n0 = AggMo-s), with a decay on the second edge."""
    aggmo_s = 18
    root = Node((V_HAT, N0), binary_op=op, decays={N0: A13_A2_DECAY})
    candidate = genome(root, unary(IDENTITY, aggmo_s), momentum=momentum)
    batched = sphere_losses(candidate).flatten().tolist()
    assert all(
        same_float(a, b) for a, b in zip(batched, all_twelve_sequential(candidate), strict=True)
    )


@pytest.mark.parametrize("op", [5, 9], ids=["sigmoid", "pow"])
def test_ops_with_lane_dependent_kernels_match(op: int) -> None:
    """sigmoid and pow round differently in SIMD blocks and scalar tails; rows still match."""
    if op == 5:
        candidate = chain(unary(5, V_HAT), SOFTSIGN, momentum=Momentum.NESTEROV)
    else:
        candidate = genome(
            Node((N0, N1), binary_op=9),
            unary(IDENTITY, G),
            unary(IDENTITY, S_HAT),
            momentum=Momentum.MOMENTUM,
        )
    generator = torch.Generator()
    sequential = [
        sphere_run(candidate, lr, flip=flip, generator=generator)
        for flip in (False, True)
        for lr in LEARNING_RATES
    ]
    batched = sphere_losses(candidate).flatten().tolist()
    assert all(same_float(a, b) for a, b in zip(batched, sequential, strict=True))


@pytest.mark.parametrize("code", [17, 18, 19, 22, 23, 24])
def test_dropout_and_stateful_ops_match_sequential(code: int) -> None:
    for momentum in Momentum:
        candidate = chain(unary(code, G), momentum=momentum)
        for settings in (DEFAULT_SETTINGS, PAPER_SETTINGS):
            assert_batched_equals_sequential([candidate], settings)


@pytest.mark.slow
def test_many_random_genomes_batched_equals_sequential() -> None:
    assert_batched_equals_sequential(random_genomes(300, seed=3))
    assert_batched_equals_sequential(random_genomes(100, seed=4), PAPER_SETTINGS)


# -- settings, dropout, generator ---------------------------------------------------------------


def test_paper_mode_expmovavg_divides_by_zero() -> None:
    candidate = chain(unary(22, G))
    assert integrity_check(candidate).passed
    paper = integrity_check(candidate, PAPER_SETTINGS)
    assert not paper.passed and paper.reason.startswith("no learning rate")


def test_dropout_is_reproducible_and_follows_the_generator() -> None:
    candidate = chain(unary(17, G), SOFTSIGN)
    assert integrity_check(candidate) == integrity_check(candidate)
    seeded = [
        sphere_losses(candidate, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)
    ]
    assert torch.equal(seeded[0], seeded[1])
    assert not torch.equal(seeded[0], seeded[2])


# -- structural rejections and errors -----------------------------------------------------------


def test_out_of_range_decay_is_rejected_with_its_edge() -> None:
    a12_plus_a9 = Decay(root=DecayNode((11, 8), binary_op=ADD))  # reaches 1.9
    candidate = chain(unary(IDENTITY, G, a12_plus_a9))
    for check in (integrity_check, integrity_check_sequential):
        result = check(candidate)
        assert not result.passed and result.lr is None
        assert result.reason == (
            "decay [(a12)+(a9)] on the edge g -> n0 leaves [0, 1] on the T = 100 grid"
        )


def test_decay_on_an_inactive_edge_is_ignored() -> None:
    bad = Decay(root=DecayNode((11, 8), binary_op=ADD))
    candidate = genome(Node((N0,)), unary(IDENTITY, G), Node((G,), decays={G: bad}))
    assert integrity_check(candidate).passed


def cyclic_genome() -> Genome:
    """n0 <- n1 <- n0 under the root, built past the constructor's own cycle check."""
    hidden = (unary(IDENTITY, N1), unary(IDENTITY, N0), SPARE, SPARE, SPARE)
    candidate = object.__new__(Genome)
    for name, value in (
        ("hidden", hidden),
        ("root", Node((N0,))),
        ("momentum", Momentum.NONE),
        ("flip", False),
    ):
        object.__setattr__(candidate, name, value)
    return candidate


def test_cycle_is_rejected() -> None:
    for check in (integrity_check, integrity_check_sequential):
        result = check(cyclic_genome())
        assert not result.passed
        assert "cycle" in result.reason


def test_an_exception_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(torch.special, "i1e", broken)
    candidate = chain(unary(I1E, G))
    for check in (integrity_check, integrity_check_sequential):
        result = check(candidate)
        assert not result.passed
        assert result.reason == "exception: RuntimeError: kernel exploded"


def test_bad_arguments_raise() -> None:
    with pytest.raises(NOSError, match="needs a Genome"):
        integrity_check("None ~ id(id(g))")  # type: ignore[arg-type]
    with pytest.raises(NOSError, match="settings"):
        integrity_check(chain(unary(IDENTITY, G)), settings=None)  # type: ignore[arg-type]


# -- behaviour key ------------------------------------------------------------------------------

EQUIVALENT_GROUPS: list[list[Genome]] = [
    [  # U = g
        chain(unary(IDENTITY, G)),  # id(id(g))
        chain(unary(NEG, G), NEG),  # -(-(g))
        genome(Node((N0, ONE), binary_op=MUL), unary(IDENTITY, G)),  # (id(g))*(1)
        genome(
            Node((N3,)),
            SPARE,
            SPARE,
            Node((G,), unary_op=7, binary_op=4),
            Node((G, ONE), binary_op=MUL),
        ),  # id((g)*(1)) via n3, n2 inactive
    ],
    [  # U = 2g
        genome(Node((G, N0), binary_op=ADD), unary(IDENTITY, G)),  # (g)+(id(g))
        genome(Node((TWO, N0), binary_op=MUL), unary(IDENTITY, G)),  # (2)*(id(g))
        genome(Node((N0, N1), binary_op=ADD), unary(IDENTITY, G), unary(IDENTITY, G)),
        genome(Node((N0, N1), binary_op=1), unary(IDENTITY, G), unary(NEG, G)),  # g - (-g)
    ],
    [  # Adam-like, with and without a redundant identity
        genome(Node((V_HAT, N0), binary_op=DIV), unary(SQRT_ABS, S_HAT)),
        genome(Node((V_HAT, N1), binary_op=DIV), unary(SQRT_ABS, S_HAT), unary(IDENTITY, N0)),
    ],
]

DIFFERENT: list[Genome] = [
    chain(unary(IDENTITY, G)),
    chain(unary(NEG, G)),
    genome(Node((TWO, N0), binary_op=MUL), unary(IDENTITY, G)),
    chain(unary(IDENTITY, G), momentum=Momentum.MOMENTUM),
    chain(unary(IDENTITY, G), momentum=Momentum.NESTEROV),
    chain(unary(IDENTITY, SIGN_G)),
    chain(unary(IDENTITY, V_HAT)),
    chain(unary(IDENTITY, G, A1_DECAY)),
    chain(unary(IDENTITY, G, Decay(root=DecayNode((A2,), unary_op=DECAY_ID)))),
    chain(unary(IDENTITY, G, A13_A2_DECAY)),
    chain(unary(17, G)),
    chain(unary(18, G)),
    chain(unary(22, G)),
    chain(unary(23, G)),
    chain(unary(24, G)),
    chain(unary(20, G)),
    genome(Node((G, N0), binary_op=ADD), unary(IDENTITY, 8)),  # g + 1e-6 w
    genome(Node((G, N0), binary_op=7), unary(IDENTITY, TWO)),  # clip(g, 2)
    genome(Node((V_HAT, N0), binary_op=DIV), unary(SQRT_ABS, S_HAT)),
]


def test_behaviour_key_is_shared_by_equivalent_genomes() -> None:
    for group in EQUIVALENT_GROUPS:
        equations = {candidate.equation() for candidate in group}
        assert len(equations) == len(group), "each group should print differently"
        assert len({behaviour_key(candidate) for candidate in group}) == 1, equations


def test_behaviour_key_tells_different_behaviours_apart() -> None:
    keys = [behaviour_key(candidate) for candidate in DIFFERENT]
    assert len(set(keys)) == len(keys)


def test_behaviour_key_is_deterministic() -> None:
    for candidate in DIFFERENT:
        key = behaviour_key(candidate)
        assert key == behaviour_key(candidate)
        assert len(key) == 24 and int(key, 16) >= 0


def test_behaviour_key_ignores_flip_and_follows_settings() -> None:
    candidate = chain(unary(22, G))
    assert behaviour_key(candidate) == behaviour_key(candidate.replace(flip=True))
    assert behaviour_key(candidate) != behaviour_key(candidate, PAPER_SETTINGS)
