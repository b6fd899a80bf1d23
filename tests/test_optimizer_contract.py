"""The torch.optim contract, for every optimizer in tests/optimizer_infos.py.

Resume, param groups, lazy state, params without gradients, closures, sparse gradients, the
end of the schedule, deepcopy, dtypes and the errors for bad input.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from optimizer_infos import OPTIMIZER_INFOS, BadInput, OptimizerInfo
from torch import Tensor

INFOS = pytest.mark.parametrize("info", OPTIMIZER_INFOS, ids=lambda info: info.name)


def _model(dtype: torch.dtype, seed: int = 1) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 1).to(dtype)


def _loss(model: torch.nn.Linear) -> Tensor:
    """Mean squared error of a fixed linear regression problem.

    The forward pass runs in float32 (bfloat16 matmuls are slow on CPU) unless the model is
    float64; the parameters, their gradients and the optimizer keep the model's dtype.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    y = x @ torch.randn(4, 1, generator=gen) + 0.1 * torch.randn(64, 1, generator=gen)
    dtype = torch.float64 if model.weight.dtype == torch.float64 else torch.float32
    prediction = torch.nn.functional.linear(
        x.to(dtype), model.weight.to(dtype), model.bias.to(dtype)
    )
    return torch.nn.functional.mse_loss(prediction, y.to(dtype))


def _train(model: torch.nn.Linear, opt: torch.optim.Optimizer, steps: int) -> float:
    for _ in range(steps):
        opt.zero_grad()
        _loss(model).backward()
        opt.step()
    return float(_loss(model).detach())


DTYPES = pytest.mark.parametrize(
    "dtype", [torch.float32, torch.bfloat16, torch.float64], ids=["f32", "bf16", "f64"]
)


@INFOS
@DTYPES
def test_loss_decreases_without_nan(info: OptimizerInfo, dtype: torch.dtype) -> None:
    model = _model(dtype)
    before = float(_loss(model).detach())
    opt = info.make(model.parameters())
    after = _train(model, opt, 40)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert all(p.dtype == dtype for p in model.parameters())
    assert all(s.dtype == dtype for st in opt.state.values() for s in st.values())
    assert math.isfinite(after)
    assert after < 0.2 * before, (before, after)


@INFOS
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_state_dict_resumes_bit_exactly(info: OptimizerInfo, dtype: torch.dtype) -> None:
    """Saved (torch.save, weights_only load) after 20 steps, a fresh model and optimizer
    (another seed where it has one) take the same 20 further steps as the original."""
    model = _model(dtype)
    opt = info.make(model.parameters())
    _train(model, opt, 20)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    _train(model, opt, 20)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = _model(dtype, seed=99)
    resumed.load_state_dict(saved["model"])
    resumed_opt = info.make(resumed.parameters(), **info.resume_kwargs)
    resumed_opt.load_state_dict(saved["opt"])
    assert info.steps_taken(resumed_opt) == 20
    _train(resumed, resumed_opt, 20)
    assert info.steps_taken(resumed_opt) == info.steps_taken(opt) == 40
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


@INFOS
def test_loaded_state_is_a_snapshot(info: OptimizerInfo) -> None:
    """A deep-copied state_dict does not change when the optimizer steps on; it loads into a
    fresh optimizer, and (where the optimizer copies what it loads) stays unchanged after it."""
    w = torch.ones(3, requires_grad=True)
    opt = info.make([w], lr=0.1, total_steps=5, warmup_steps=0, hold_steps=0)
    w.grad = torch.ones(3)
    opt.step()
    snapshot = copy.deepcopy(opt.state_dict())
    opt.step()
    if info.saved_step is not None:
        assert info.saved_step(snapshot) == 1 and info.saved_step(opt.state_dict()) == 2
    state_now = opt.state_dict()["state"][0]
    assert any(
        not torch.equal(value, state_now[key]) for key, value in snapshot["state"][0].items()
    )

    untouched = copy.deepcopy(snapshot)
    v = torch.ones(3, requires_grad=True)
    fresh = info.make([v], lr=0.1, total_steps=5, warmup_steps=0, hold_steps=0)
    fresh.load_state_dict(snapshot)
    assert info.steps_taken(fresh) == 1
    if info.copies_loaded_state:
        for _ in range(2):
            v.grad = torch.ones(3)
            fresh.step()
        for key, value in untouched["state"][0].items():
            assert torch.equal(snapshot["state"][0][key], value)


@INFOS
def test_loading_a_foreign_state_dict_raises(info: OptimizerInfo) -> None:
    if info.foreign_state is None:
        pytest.skip(f"{info.name} does not check where a state dict comes from")
    w = torch.zeros(2, requires_grad=True)
    plain = torch.optim.SGD([w], lr=0.1).state_dict()
    with pytest.raises(info.error, match=info.foreign_state):
        info.make([w]).load_state_dict(plain)


@INFOS
def test_param_groups_equal_separate_optimizers(info: OptimizerInfo) -> None:
    """Two groups with their own lr step as two optimizers over one group each."""
    if info.random:
        pytest.skip("dropout draws depend on how the params are grouped")
    grouped, split = _model(torch.float64), _model(torch.float64)
    opt = info.make([{"params": [grouped.weight]}, {"params": [grouped.bias], "lr": 0.01}])
    singles = [info.make([split.weight]), info.make([split.bias], lr=0.01)]
    for _ in range(10):
        opt.zero_grad()
        _loss(grouped).backward()
        opt.step()
        for single in singles:
            single.zero_grad()
        _loss(split).backward()
        for single in singles:
            single.step()
    for a, b in zip(grouped.parameters(), split.parameters(), strict=True):
        assert torch.equal(a, b)


@INFOS
def test_params_without_grad_are_skipped(info: OptimizerInfo) -> None:
    used, unused = torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = info.make([used, unused], lr=0.1, total_steps=5, warmup_steps=0, hold_steps=0)
    assert len(opt.state) == 0  # state is lazy
    for _ in range(3):  # some updates are 0 at t = 0 (decay factor A(0) = 0)
        opt.zero_grad()
        (used**2).sum().backward()
        opt.step()
    assert info.steps_taken(opt) == 3
    assert unused not in opt.state and torch.equal(unused, torch.ones(2))
    assert used in opt.state and not torch.equal(used, torch.ones(3))


@INFOS
def test_closure_is_evaluated_with_grad_and_returned(info: OptimizerInfo) -> None:
    with_closure, plain = _model(torch.float64), _model(torch.float64)
    start = [p.detach().clone() for p in plain.parameters()]
    opt_a = info.make(with_closure.parameters())
    opt_b = info.make(plain.parameters())
    first_loss = float(_loss(plain).detach())
    for step in range(10):

        def closure() -> Tensor:
            opt_a.zero_grad()
            loss = _loss(with_closure)
            loss.backward()
            return loss

        loss = opt_a.step(closure)
        assert isinstance(loss, Tensor) and loss.ndim == 0
        if step == 0:
            assert float(loss.detach()) == first_loss
        _train(plain, opt_b, 1)
    for p, q, p0 in zip(with_closure.parameters(), plain.parameters(), start, strict=True):
        assert torch.equal(p, q)
        assert not torch.equal(p, p0)


@INFOS
def test_stepping_past_total_steps_raises(info: OptimizerInfo) -> None:
    w = torch.zeros(3, requires_grad=True)
    opt = info.make([w], total_steps=3, warmup_steps=0, hold_steps=0)
    for _ in range(3):
        w.grad = torch.ones(3)
        opt.step()
    with pytest.raises(info.step_error, match=info.past_end):
        opt.step()


@INFOS
def test_sparse_gradients_raise(info: OptimizerInfo) -> None:
    embedding = torch.nn.Embedding(5, 3, sparse=True)
    opt = info.make(embedding.parameters(), total_steps=5, warmup_steps=0, hold_steps=0)
    embedding(torch.tensor([1, 2])).sum().backward()
    before = embedding.weight.detach().clone()
    with pytest.raises(info.step_error, match="sparse"):
        opt.step()
    assert torch.equal(embedding.weight, before)
    assert info.steps_taken(opt) == 0


@INFOS
def test_deepcopy_gives_an_independent_equal_optimizer(info: OptimizerInfo) -> None:
    model = _model(torch.float32)
    opt = info.make(model.parameters())
    _train(model, opt, 5)
    clone_model, clone_opt = copy.deepcopy((model, opt))
    assert info.steps_taken(clone_opt) == 5
    _train(model, opt, 5)
    _train(clone_model, clone_opt, 5)
    for a, b in zip(model.parameters(), clone_model.parameters(), strict=True):
        assert torch.equal(a, b)


_BAD_CASES = [
    pytest.param(info, bad, id=f"{info.name}-{bad.kwargs}-{bad.match}")
    for info in OPTIMIZER_INFOS
    for bad in info.bad_inputs
]


@pytest.mark.parametrize(("info", "bad"), _BAD_CASES)
def test_bad_input_raises_naming_the_value(info: OptimizerInfo, bad: BadInput) -> None:
    params = bad.params() if bad.params is not None else [torch.zeros(2, requires_grad=True)]
    with pytest.raises(info.error, match=bad.match):
        info.make(params, **bad.kwargs)
