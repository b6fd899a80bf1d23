"""The published optimizers: formulas in float64 and the optimizer contract.

The float64 references below are written from the paper's formulas with numpy/scipy,
independently of the package (they share nothing with it but the formulas).
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from scipy import special

from optuna_nos.core.errors import NOSError
from optuna_nos.optimizers import (
    A1,
    A2,
    A3,
    A4,
    A5,
    PUBLISHED_OPTIMIZERS,
    AdamClip,
    Opt4,
    Opt5,
    Opt7,
)

EPS = 1e-7
DECAYED = ("Opt4", "Opt5", "Opt6", "Opt7", "Opt8", "Opt9", "Opt10")
UNDECAYED = ("Opt1", "Opt2", "Opt3", "Opt3_g3", "A1", "A2", "A3", "A4", "A5")


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- float64 reference


def reference_schedules(total: int, warmup: int, hold: int) -> dict[str, np.ndarray]:
    """Base schedules, eta_t / eta and mu_t, F0."""
    t = np.arange(total, dtype=np.float64)
    beta = 0.95 * (1.0 - (t + 1.0) / total)
    a = {
        "a2": t / total,
        "a4": 0.5 * (1.0 - np.cos(np.pi * t / total)),
        "a6": 0.5 * (1.0 - np.cos(2.0 * np.pi * t / total)),
        "a8": 0.5 * (1.0 - np.cos(np.pi * np.mod(2.0 * t, total) / total)),
        "a10": np.mod(2.0 * t, total) / total,
        "a11": 0.01 ** (t / total),
        "a13": beta / (0.05 + beta),
    }
    shape = np.empty(total)
    for step in range(total):
        if step < warmup:
            shape[step] = step / warmup
        elif hold > 0 and step <= warmup + hold:
            shape[step] = 1.0
        else:
            shape[step] = 0.5 * (
                1.0 + math.cos(math.pi * (step - warmup - hold) / (total - warmup - hold))
            )
    mu = np.concatenate(
        [
            np.linspace(0.95, 0.85, warmup),
            np.full(hold, 0.85),
            np.linspace(0.85, 0.95, total - warmup - hold),
        ]
    )
    f0 = special.erfc(special.erfc(a["a4"])) / (1.0 - np.tanh(a["a8"]) ** 2)
    return {**a, "shape": shape, "mu": mu, "F0": f0}


def _softsign(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.abs(x))


def _sym_clip(x: np.ndarray, c: np.ndarray | float) -> np.ndarray:
    return np.clip(x, -np.abs(c), np.abs(c))


class Reference:
    """One published optimizer, step by step, on numpy float64 arrays."""

    def __init__(
        self, name: str, options: dict[str, Any], total: int, warmup: int, hold: int
    ) -> None:
        self.name = name
        self.use_decay = options.get("use_decay", True)
        self.variant = options.get("variant", 0)
        self.eps_in_denominator = options.get("eps_in_denominator", True)
        self.nesterov = options.get("nesterov", "keras")
        self.s = reference_schedules(total, warmup, hold)
        self.state: dict[int, dict[str, np.ndarray]] = {}

    def eta(self, lr: float, t: int) -> float:
        factor = (
            self.s["F0"][t] if self.use_decay and self.name in ("Opt4", "Opt5", "Opt6") else 1.0
        )
        return lr * self.s["shape"][t] * factor

    def direction(self, key: int, g: np.ndarray, w: np.ndarray, t: int) -> np.ndarray:
        st = self.state.setdefault(key, {n: np.zeros_like(w) for n in ("v", "s", "l", "m")})
        s, name, on = self.s, self.name, self.use_decay
        st["v"] = 0.9 * st["v"] + 0.1 * g
        v_hat = st["v"] / (1.0 - 0.9 ** (t + 1))
        q = 0.3 * g + 0.7 * v_hat
        st["s"] = 0.99 * st["s"] + 0.01 * g * g
        s_hat = st["s"] / (1.0 - 0.99 ** (t + 1))
        if name == "Opt1":
            s1 = np.abs(1e-5 * w - 0.05 * g**2 + 0.95 * s_hat)
            return q + _softsign(_sym_clip(1e-5 * w, s1))
        if name == "Opt2":
            s2 = 1e-5 * w - (0.05 * g**2 + 0.95 * s_hat)
            return q + _softsign(1e-5 * w / np.sqrt(1.0 + s2**2))
        if name in ("Opt3", "Opt3_g3"):
            st["l"] = 0.999 * st["l"] + 0.001 * (g**3 if name == "Opt3_g3" else g**2)
            l_hat = st["l"] / (1.0 - 0.999 ** (t + 1))
            l2 = 1e-5 * w - (0.01 * g**3 + 0.99 * l_hat)
            return q + _softsign(1e-5 * w / np.sqrt(1.0 + l2**2))
        if name in ("Opt4", "Opt5"):
            a_t = np.arctan(s["a13"][t]) if name == "Opt4" and self.variant == 0 else 1.0
            c = np.abs(a_t * np.exp(v_hat))
            eps = EPS if name == "Opt4" and self.eps_in_denominator else 0.0
            return q / (_sym_clip(np.full_like(c, 2.0), c) + eps)
        if name == "Opt6":
            b_t = 1.0 - np.tanh(s["a4"][t]) ** 2 if on else 1.0
            return q / np.abs(b_t * np.exp(1e-4 * w))
        if name in ("Opt7", "Opt8"):
            a_t = max(s["a6"][t], s["a10"][t]) if on else 1.0
            outer = np.tanh if name == "Opt7" else np.arcsinh
            return outer(a_t * np.arcsinh(q))
        if name == "Opt9":
            a_t = special.erfc(s["a11"][t]) if on else 1.0
            return a_t * g * np.exp(np.arctan(0.05 * g**2 + 0.95 * s_hat))
        if name == "Opt10":
            a_t = s["a13"][t] * s["a2"][t] if on else 1.0
            return special.i1e(special.i1e(a_t * g))
        bound = {
            "A1": np.sqrt(s_hat) + EPS,
            "A2": np.abs(np.log(s_hat + EPS)),
            "A3": np.sqrt(np.abs(np.log(s_hat + EPS))),
            "A4": special.expit(s_hat + EPS),
            "A5": np.sqrt(s_hat) + EPS,
        }[name]
        u = _sym_clip(v_hat, bound)
        if name == "A5":
            u = u * min(1.0, 1.0 / np.linalg.norm(u)) if np.any(u) else u
        return u

    def apply(self, key: int, w: np.ndarray, u: np.ndarray, eta: float, t: int) -> np.ndarray:
        if self.name not in ("Opt9", "Opt10"):
            return w - eta * u
        st, mu = self.state[key], self.s["mu"][t]
        st["m"] = mu * st["m"] - eta * u
        if self.nesterov == "keras":
            return w + mu * st["m"] - eta * u
        return w + st["m"] - eta * u


def _formula_cases() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    for name in PUBLISHED_OPTIMIZERS:
        if name.startswith("A"):
            cases.append((name, {}))
        else:
            cases += [(name, {"use_decay": True}), (name, {"use_decay": False})]
    cases += [
        ("Opt4", {"variant": 1}),
        ("Opt4", {"eps_in_denominator": False}),
        ("Opt4", {"variant": 1, "eps_in_denominator": False, "use_decay": False}),
        ("Opt9", {"nesterov": "search"}),
        ("Opt10", {"nesterov": "search", "use_decay": False}),
    ]
    return cases


def _gradient(noise: np.ndarray, w: np.ndarray, w0: np.ndarray) -> np.ndarray:
    """A gradient that depends on the trajectory, so errors compound."""
    return noise + 0.1 * (w - w0)


@pytest.mark.parametrize(
    ("name", "options"), _formula_cases(), ids=lambda v: v if isinstance(v, str) else repr(v)
)
def test_float64_matches_spec_formula(name: str, options: dict[str, Any]) -> None:
    total, warmup, hold, steps, lr = 60, 5, 10, 50, 0.05
    rng = np.random.default_rng(7)
    # Large weights make the 1e-5 w and 1e-4 w terms (and clip bounds) matter.
    starts = [3000.0 * rng.standard_normal((3, 4)), 3000.0 * rng.standard_normal(5)]
    lrs = [lr, 0.5 * lr]
    noise = [
        [rng.standard_normal(w.shape) * 10.0 ** rng.uniform(-3, 1, w.shape) for w in starts]
        for _ in range(steps)
    ]
    noise[3][1][:] = 0.0  # an all-zero gradient tensor (A5's norm of 0, sign of 0)

    params = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in starts]
    groups = [{"params": [p], "lr": group_lr} for p, group_lr in zip(params, lrs, strict=True)]
    opt = PUBLISHED_OPTIMIZERS[name](
        groups, total_steps=total, warmup_steps=warmup, hold_steps=hold, **options
    )
    ref = Reference(name, options, total, warmup, hold)
    ref_w = [w.copy() for w in starts]
    for t in range(steps):
        for key, p in enumerate(params):
            p.grad = torch.from_numpy(_gradient(noise[t][key], p.detach().numpy(), starts[key]))
            g = _gradient(noise[t][key], ref_w[key], starts[key])
            u = ref.direction(key, g, ref_w[key], t)
            ref_w[key] = ref.apply(key, ref_w[key], u, ref.eta(lrs[key], t), t)
        opt.step()
        for key, p in enumerate(params):
            moved = p.detach().numpy() - starts[key]
            np.testing.assert_allclose(
                moved, ref_w[key] - starts[key], rtol=1e-9, atol=1e-12, err_msg=f"{name} step {t}"
            )
    assert opt.t == steps
    assert all(p.dtype == torch.float64 for s in opt.state.values() for p in s.values())


def test_adamclip_variants_are_a1_to_a5() -> None:
    for variant, cls in enumerate((A1, A2, A3, A4, A5)):
        weights = []
        for make in (
            lambda p, v=variant: AdamClip(p, v, 0.1, total_steps=10),
            lambda p, c=cls: c(p, 0.1, total_steps=10),
        ):
            torch.manual_seed(0)
            w = torch.randn(6, requires_grad=True)
            opt = make([w])
            for _ in range(5):
                w.grad = torch.sin(3 * w.detach()) + 0.1
                opt.step()
            weights.append(w.detach().clone())
        assert torch.equal(weights[0], weights[1]), cls.__name__


def test_opt4_variant1_without_eps_is_opt5() -> None:
    weights = []
    for make in (
        lambda p: Opt4(p, 0.1, total_steps=20, variant=1, eps_in_denominator=False),
        lambda p: Opt5(p, 0.1, total_steps=20),
    ):
        w = torch.linspace(-2, 2, 7, dtype=torch.float64, requires_grad=True)
        opt = make([w])
        for _ in range(20):
            w.grad = torch.tanh(3.0 * w.detach()) - 0.3
            opt.step()
        weights.append(w.detach())
    assert bool(torch.isfinite(weights[0]).all())
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize(("eps_in_denominator", "finite"), [(True, True), (False, False)])
def test_opt4_last_step(eps_in_denominator: bool, finite: bool) -> None:
    """a13(T-1) = 0 gives c = 0: the released form divides by 0."""
    w = torch.ones(4, requires_grad=True)
    opt = Opt4([w], 0.01, total_steps=12, eps_in_denominator=eps_in_denominator)
    for _ in range(12):
        w.grad = torch.full_like(w, 0.3)
        opt.step()
    assert bool(torch.isfinite(w).all()) is finite


# ----------------------------------------------------- published-only contract (the shared
# contract is in tests/test_optimizer_contract.py)

ALL = sorted(PUBLISHED_OPTIMIZERS)


@pytest.mark.parametrize("name", ALL)
def test_docstring_states_the_update(name: str) -> None:
    doc = PUBLISHED_OPTIMIZERS[name].__doc__ or ""
    assert "U =" in doc or "U  =" in doc


def test_loading_a_differently_configured_state_raises() -> None:
    w = torch.zeros(2, requires_grad=True)
    saved = Opt4([w], total_steps=10, variant=0).state_dict()
    with pytest.raises(NOSError, match="variant"):
        Opt4([w], total_steps=10, variant=1).load_state_dict(saved)
    with pytest.raises(NOSError, match="total_steps"):
        Opt4([w], total_steps=11).load_state_dict(saved)
    with pytest.raises(NOSError, match="Opt5"):
        Opt5([w], total_steps=10).load_state_dict(saved)
    plain = torch.optim.SGD([w], lr=0.1).state_dict()
    with pytest.raises(NOSError, match="nos"):
        Opt4([w], total_steps=10).load_state_dict(plain)


# ------------------------------------------------------------- state dicts of the old layout

_DATA = Path(__file__).parent / "data"
_published_states = _load_module(_DATA / "published_states.py")
#: Written by tests/data/published_states.py on the layout that kept the schedule settings in
#: ``state_dict()["nos"]["config"]`` (see that script's docstring).
_OLD_STATES = torch.load(_DATA / "published_states.pt", weights_only=True)


@pytest.mark.parametrize(
    ("case", "class_name", "options"),
    _published_states.CASES,
    ids=[case for case, _, _ in _published_states.CASES],
)
def test_old_layout_state_dict_resumes_the_fresh_trajectory(
    case: str, class_name: str, options: dict[str, Any]
) -> None:
    """A state dict saved mid-run by the old layout loads and continues a fresh run's path."""
    data = _published_states
    saved = _OLD_STATES[case]
    fresh = [w.clone().requires_grad_() for w in data.initial_weights()]
    fresh_opt = data.make(class_name, options, fresh)
    data.run(fresh_opt, fresh, range(data.SAVED_AT))
    for got, want in zip(saved["weights"], fresh, strict=True):
        torch.testing.assert_close(got, want.detach(), rtol=1e-12, atol=1e-12)
    data.run(fresh_opt, fresh, range(data.SAVED_AT, data.TOTAL_STEPS - 1))

    resumed = [w.clone().requires_grad_() for w in saved["weights"]]
    resumed_opt = data.make(class_name, options, resumed)
    resumed_opt.load_state_dict(saved["optimizer"])
    assert resumed_opt.t == data.SAVED_AT
    data.run(resumed_opt, resumed, range(data.SAVED_AT, data.TOTAL_STEPS - 1))
    for got, want in zip(resumed, fresh, strict=True):
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-12, atol=1e-12)
    assert resumed_opt.t == fresh_opt.t == data.TOTAL_STEPS - 1


# ------------------------------------------------------------------ settings per param group


def test_settings_are_param_group_entries() -> None:
    w = torch.zeros(2, requires_grad=True)
    opt = Opt4([w], 0.1, total_steps=10, warmup_steps=2, variant=1)
    group = opt.state_dict()["param_groups"][0]
    assert {
        key: group[key]
        for key in (
            "lr",
            "total_steps",
            "warmup_steps",
            "hold_steps",
            "use_decay",
            "variant",
            "eps_in_denominator",
        )
    } == {
        "lr": 0.1,
        "total_steps": 10,
        "warmup_steps": 2,
        "hold_steps": 0,
        "use_decay": True,
        "variant": 1,
        "eps_in_denominator": True,
    }
    assert opt.defaults == {key: group[key] for key in opt.defaults}


@pytest.mark.parametrize(
    ("name", "override"),
    [
        ("Opt9", {"use_decay": False, "nesterov": "search"}),
        ("Opt4", {"variant": 1, "total_steps": 40, "warmup_steps": 0, "hold_steps": 3}),
        ("AdamClip", {"variant": 4, "lr": 0.3}),
    ],
)
def test_a_group_with_its_own_settings_steps_as_its_own_optimizer(
    name: str, override: dict[str, Any]
) -> None:
    """Group settings override the constructor's, as torch.optim's hyperparameters do."""
    cls = AdamClip if name == "AdamClip" else PUBLISHED_OPTIMIZERS[name]
    start = [torch.linspace(-2, 2, 6, dtype=torch.float64), torch.ones(3, dtype=torch.float64)]
    grouped = [w.clone().requires_grad_() for w in start]
    split = [w.clone().requires_grad_() for w in start]
    kwargs: dict[str, Any] = {"lr": 0.1, "total_steps": 30, "warmup_steps": 4}
    opt = cls([{"params": [grouped[0]]}, {"params": [grouped[1]], **override}], **kwargs)
    singles = [cls([split[0]], **kwargs), cls([split[1]], **{**kwargs, **override})]
    for step in range(25):
        for params in (grouped, split):
            for w in params:
                w.grad = torch.sin(2.0 * w.detach() + 0.1 * step)
        opt.step()
        for single in singles:
            single.step()
    for a, b in zip(grouped, split, strict=True):
        assert torch.equal(a, b)


def test_a_bad_group_setting_raises_naming_it() -> None:
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(NOSError, match="use_decay must be a bool, got 'no'"):
        Opt4([{"params": [w], "use_decay": "no"}], total_steps=10)
    with pytest.raises(NOSError, match="has no option 'variant'"):
        Opt7([w], total_steps=10, variant=1)


@pytest.mark.parametrize("name", ALL)
def test_signature_names_the_schedule_and_the_options(name: str) -> None:
    """Harnesses read lr's default and (T, W, H) off the signature."""
    cls = PUBLISHED_OPTIMIZERS[name]
    parameters = inspect.signature(cls).parameters
    assert parameters["lr"].default == 1e-3
    assert {"total_steps", "warmup_steps", "hold_steps"} <= set(parameters)
    if not name.startswith("A"):
        assert {name: parameters[name].default for name in cls.options} == {
            name: default for name, (default, _) in cls.options.items()
        }
