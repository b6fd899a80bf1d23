"""Torch-optimizer baselines in the proxy (against plain torch.optim runs), BatchNorm momentum,
MNIST-1D and its task, and the bootstrap interval the benches report."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from optuna_nos.core.errors import NOSError
from optuna_nos.core.schedules import lr_schedule
from proxy.baselines import TORCH_BASELINES, TorchBaseline
from proxy.data import load_digits, normalization
from proxy.fitness import measure_fitness
from proxy.model import ConvNet
from proxy.protocol import EarlyStop
from proxy.screen import RunSeeds, RunSpec, train_stack
from testkit.reference import reference_run
from testkit.stats import bootstrap_interval

TORCH_REFERENCE = {
    "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.01),
    "sgd_nesterov": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True),
    "rmsprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr),
}


@pytest.fixture(scope="module")
def digits_data():  # type: ignore[no-untyped-def]
    return load_digits()


def _spec(data, rule: TorchBaseline) -> RunSpec:  # type: ignore[no-untyped-def]
    return RunSpec(
        genome=rule,
        width=4,
        train=data.train,
        norm=normalization(data, "scale"),
        augmentation=None,
        total_steps=30,
        warmup_steps=5,
        epochs=3,
        steps_per_epoch=6,
        early_stop=EarlyStop(0, 0.0),
        batch_size=32,
        dtype=torch.float64,
        bn_momentum=0.1,
    )


def _reference_run(
    spec: RunSpec, name: str, lr: float, seeds: RunSeeds
) -> tuple[ConvNet, list[float]]:
    """One run written plainly: a ConvNet, torch.optim, eta_t = lr_schedule(lr, T, W)[t]."""
    rates = lr_schedule(lr, spec.total_steps, spec.warmup_steps).tolist()
    return reference_run(
        spec, seeds, lambda params: TORCH_REFERENCE[name](params, lr), rates.__getitem__
    )


@pytest.mark.parametrize("name", sorted(TORCH_REFERENCE))
def test_baseline_runs_equal_plain_torch_runs(digits_data, name: str) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(digits_data, TorchBaseline(name))
    seeds = RunSeeds.derive(5)
    lrs = [0.3, 0.03, 0.003]
    results, stack = train_stack(spec, lrs, seeds)
    for k, lr in enumerate(lrs):
        model, accuracies = _reference_run(spec, name, lr, seeds)
        assert results[k].train_acc == accuracies
        theirs = dict(model.named_parameters())
        for key, value in stack.model(k).named_parameters():
            # A conv bias feeding BatchNorm has a zero gradient up to rounding, which
            # Adam-type updates (g / (|g| + eps)) turn into noise of size lr * 1e-8 / eps.
            atol = 1e-6 if key.startswith("convs.") and key.endswith(".bias") else 1e-10
            # The stack's grouped convolution sums in another order than a single one; at
            # lr 0.3 RMSprop's 1 / sqrt(v) grows those float64 roundings to ~1e-8 relative
            # within 12 steps on some CPUs (the order depends on the CPU's kernels).
            rtol = 1e-7 if name == "rmsprop" else 1e-9
            torch.testing.assert_close(value, theirs[key], rtol=rtol, atol=atol)


def test_bn_momentum_is_torch_batchnorm_momentum() -> None:
    model = ConvNet(4, in_channels=1, bn_momentum=0.1)
    reference = torch.nn.BatchNorm2d(4, eps=1e-3)
    x = torch.randn(8, 4, 5, 5)
    model.norms[0](x)
    reference(x)
    torch.testing.assert_close(model.running_stats(0)[0], reference.running_mean)
    with pytest.raises(NOSError, match="bn_momentum"):
        ConvNet(4, bn_momentum=0.0)


def test_unknown_baseline_is_refused() -> None:
    with pytest.raises(NOSError, match="unknown baseline 'adagrad'"):
        TorchBaseline("adagrad")
    assert TORCH_BASELINES == ("adam", "adamw", "sgd_nesterov", "rmsprop", "lion")


def test_mnist1d_splits() -> None:
    from proxy.mnist1d import load_mnist1d

    state = np.random.get_state()[1].copy()
    val = load_mnist1d(train_size=300, val_size=100, test_size=100)
    test = load_mnist1d(train_size=300, val_size=100, test_size=100, split="test")
    assert np.array_equal(np.random.get_state()[1], state)
    assert val.train.images.shape == (300, 1, 1, 40) and len(val.val) == len(test.val) == 100
    assert torch.equal(val.train.images, test.train.images)
    rows = {tuple(r.tolist()) for r in val.train.images.view(300, 40)}
    assert not rows & {tuple(r.tolist()) for r in val.val.images.view(100, 40)}
    assert not rows & {tuple(r.tolist()) for r in test.val.images.view(100, 40)}
    assert set(val.train.labels.tolist()) == set(range(10))
    again = load_mnist1d(train_size=300, val_size=100, test_size=100)
    assert torch.equal(again.val.images, val.val.images)
    with pytest.raises(NOSError, match="split must be one of val, test, got 'train'"):
        load_mnist1d(split="train")


def test_mnist1d_objective_scores_torch_baselines() -> None:
    from proxy.tasks import mnist1d

    objective = mnist1d(
        train_size=200,
        val_size=100,
        test_size=10,
        init={
            "width": 4,
            "total_steps": 40,
            "warmup_steps": 4,
            "final_epochs": 2,
            "final_steps_per_epoch": 10,
            "screen_epochs": 1,
            "screen_steps_per_epoch": 5,
        },
        stage1_fail_below=0.0,
        screen_fail_below=0.0,
    )
    assert objective.baselines == TORCH_BASELINES
    assert isinstance(objective.baseline_rule("lion"), TorchBaseline)
    result = measure_fitness(objective.baseline_rule("adamw"), objective.task, "init", seed=1)
    assert result.fitness is not None and 0.0 <= result.fitness <= 1.0
    assert len(result.screen) == 7 and result.final is not None
    with pytest.raises(NOSError, match="unknown baseline"):
        objective.baseline_rule("sgd")


def test_bootstrap_interval() -> None:
    mean, low, high = bootstrap_interval([0.5, 0.6, 0.7], [0.4, 0.5, 0.6], paired=True)
    assert mean == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    a, b = [0.1, 0.9, 0.5, 0.3], [0.2, 0.2, 0.2]
    mean, low, high = bootstrap_interval(a, b, paired=False)
    assert mean == pytest.approx(np.mean(a) - np.mean(b))
    assert min(a) - 0.2 <= low < mean < high <= max(a) - 0.2
    narrow = bootstrap_interval(a, b, paired=False, level=0.5)
    assert low < narrow[1] < narrow[2] < high


def test_replace_keeps_baseline_rule(digits_data) -> None:  # type: ignore[no-untyped-def]
    spec = replace(_spec(digits_data, TorchBaseline("lion")), epochs=1)
    results, _ = train_stack(spec, [1e-3], RunSeeds.derive(0))
    assert len(results[0].train_acc) == 1
