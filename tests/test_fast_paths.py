"""The proxy's fast training paths against the reference path.

* ``channels_last``: NHWC inputs to the same float64 convolutions equal the NCHW runs to a
  relative 1e-12 (the CPU kernels may sum in another order), accuracies exactly;
* ``bf16``: bfloat16 autocast runs and learns (validation accuracy within 0.1 of the float32
  run at every epoch, well above chance), and paper mode refuses it with one line;
* the batches are drawn by index from tensors on the training device (no loader): every
  batch lives where the split lives.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_fitness import _spec

from optuna_nos.core.errors import NOSError
from optuna_nos.core.settings import PAPER_SETTINGS
from optuna_nos.space.parse import parse_equation
from proxy.data import load_digits, training_batches
from proxy.screen import RunSeeds, train_stack

ADAM = "None ~ (v hat) / (sqrt(|s hat|))"


@pytest.fixture(scope="module")
def digits_data():  # type: ignore[no-untyped-def]
    return load_digits()


def _train(spec, lrs=(1e-2, 1e-1)):  # type: ignore[no-untyped-def]
    return train_stack(spec, list(lrs), RunSeeds.derive(3))


def test_channels_last_equals_the_reference_layout(digits_data) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(digits_data, parse_equation(ADAM), val=digits_data.val, epochs=2)
    (reference, ref_stack), (fast, fast_stack) = (
        _train(spec),
        _train(replace(spec, channels_last=True)),
    )
    for ref_run, fast_run in zip(reference, fast, strict=True):
        assert fast_run.train_acc == ref_run.train_acc
        assert fast_run.val_acc == ref_run.val_acc
    for ref_leaves, fast_leaves in zip(ref_stack.leaves, fast_stack.leaves, strict=True):
        for a, b in zip(ref_leaves, fast_leaves, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-15)


def test_bf16_autocast_runs_and_learns(digits_data) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(
        digits_data,
        parse_equation(ADAM),
        dtype=torch.float32,
        val=digits_data.val,
        epochs=4,
        steps_per_epoch=8,
        width=8,
    )
    (reference,), _ = _train(spec, lrs=(1e-2,))
    (fast,), stack = _train(replace(spec, bf16=True, channels_last=True), lrs=(1e-2,))
    assert all(leaf.dtype == torch.float32 for leaf in stack.leaves[0])
    assert fast.stop is None and fast.val_acc[-1] > 0.3  # chance is 0.1
    # Same trajectory to within bfloat16's rounding: 0.1 accuracy per epoch.
    for ours, theirs in zip(fast.val_acc, reference.val_acc, strict=True):
        assert abs(ours - theirs) <= 0.1


def test_bf16_is_refused_in_paper_mode(digits_data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NOSError, match="bf16=True is refused in paper mode"):
        _spec(digits_data, parse_equation(ADAM), bf16=True, settings=PAPER_SETTINGS)


def test_batches_are_drawn_on_the_split_device(digits_data) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(digits_data, parse_equation(ADAM))
    stream = training_batches(spec.train, spec.norm, spec.augmentation, batch_size=32, seed=0)
    images, labels = next(stream)
    assert images.device == spec.train.images.device == labels.device
