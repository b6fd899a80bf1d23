"""The proxy ConvNet and its stacked form for the batched screen."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from optuna_nos.core.errors import NOSError
from optuna_nos.space.parse import parse_equation
from proxy.model import ConvNet, GeneratorDropout, conv_same, same_padding
from proxy.stack import StackedConvNet, needs_per_tensor_layout


@pytest.mark.parametrize(("base", "count"), [(32, 94_986), (48, 211_594)])
def test_parameter_counts_match_the_paper(base: int, count: int) -> None:
    model = ConvNet(base)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == count


def test_layer_shapes_and_output() -> None:
    model = ConvNet(32).eval()
    x = torch.randn(2, 3, 32, 32)
    sides = []
    for conv, stride in zip(model.conv_layers, (1, 2, 2), strict=True):
        x = conv_same(x, conv.weight, conv.bias, stride)
        sides.append(x.shape[-1])
    assert sides == [32, 16, 8]
    assert [c.out_channels for c in model.conv_layers] == [32, 64, 128]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    digits = ConvNet(8, in_channels=1)
    assert digits(torch.randn(5, 1, 8, 8)).shape == (5, 10)


def test_keras_initialisation_and_batchnorm() -> None:
    model = ConvNet(48, generator=torch.Generator().manual_seed(0))
    layers: list[torch.nn.Conv2d | torch.nn.Linear] = [*model.conv_layers, model.fc]
    for layer in layers:
        weight: torch.Tensor = layer.weight
        receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
        fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        assert float(weight.detach().abs().max()) <= limit
        assert float(weight.detach().abs().max()) > 0.9 * limit
        # U(-a, a) has variance a^2 / 3.
        assert abs(float(weight.detach().var()) / (limit**2 / 3) - 1.0) < 0.15
        assert layer.bias is not None and torch.count_nonzero(layer.bias) == 0
    for norm in model.norm_layers:
        assert norm.momentum == 0.01 and norm.eps == 1e-3
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    same = ConvNet(48, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same.conv_layers[1].weight, model.conv_layers[1].weight)


def test_same_padding_is_tensorflows() -> None:
    # out = ceil(n / s); total = max((out - 1) s + k - n, 0); before = total // 2.
    assert same_padding(32, 3, 2) == (0, 1)
    assert same_padding(16, 3, 2) == (0, 1)
    assert same_padding(8, 3, 2) == (0, 1)
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(32, 3, 1) == (1, 1)
    assert same_padding(5, 1, 1) == (0, 0)


def test_stride_two_pads_bottom_right_only() -> None:
    # A kernel that reads only its top-left tap returns x[2i - top, 2j - left]: with "same"
    # padding of 0 before, that is x[2i, 2j] (symmetric padding would give x[2i - 1, 2j - 1]).
    x = torch.randn(1, 1, 8, 8)
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 0, 0] = 1.0
    out = conv_same(x, weight, None, stride=2)
    assert torch.equal(out, x[:, :, ::2, ::2])
    bottom_right = torch.zeros(1, 1, 3, 3)
    bottom_right[0, 0, 2, 2] = 1.0
    out = conv_same(x, bottom_right, None, stride=2)
    assert torch.equal(out[0, 0, :3, :3], x[0, 0, 2::2, 2::2][:3, :3])
    assert torch.all(out[0, 0, 3, :] == 0) and torch.all(out[0, 0, :, 3] == 0)


def test_dropout_rate_scale_and_seed() -> None:
    layer = GeneratorDropout(0.2, torch.Generator().manual_seed(3))
    x = torch.ones(200, 500)
    out = layer(x)
    kept = out != 0
    assert abs(float(kept.double().mean()) - 0.8) < 0.01
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.8))
    again = GeneratorDropout(0.2, torch.Generator().manual_seed(3))
    assert torch.equal(again(x), out)
    assert torch.equal(layer.eval()(x), x)
    with pytest.raises(NOSError, match="dropout"):
        GeneratorDropout(1.0)


def test_model_arguments_are_checked() -> None:
    with pytest.raises(NOSError, match="base_width"):
        ConvNet(0)
    with pytest.raises(NOSError, match="in_channels"):
        ConvNet(8, in_channels=2.5)  # type: ignore[arg-type]


# -- the stacked form ---------------------------------------------------------------------------


def _models(count: int, dropout_seed: int = 100) -> list[ConvNet]:
    return [
        ConvNet(
            4,
            in_channels=3,
            generator=torch.Generator().manual_seed(k),
            dropout_generator=torch.Generator().manual_seed(dropout_seed + k),
        ).double()
        for k in range(count)
    ]


@pytest.mark.parametrize(("per_tensor", "grouped"), [(False, True), (True, True), (False, False)])
def test_stack_equals_separate_models(per_tensor: bool, grouped: bool) -> None:
    references = _models(3)
    stack = StackedConvNet(_models(3), per_tensor=per_tensor, grouped=grouped)
    x = torch.randn(16, 3, 12, 12, dtype=torch.float64)
    labels = torch.randint(0, 10, (16,))
    logits = stack(x, training=True)
    assert logits.shape == (16, 3, 10)
    losses = F.cross_entropy(
        logits.transpose(1, 2), labels[:, None].expand(-1, 3), reduction="none"
    ).mean(dim=0)
    losses.sum().backward()
    for k, model in enumerate(references):
        model.train()
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        assert torch.allclose(losses[k], loss, rtol=1e-12, atol=0)
        grads = [p.grad for p in model.parameters()]
        if per_tensor:
            stacked_grads = [leaf.grad for leaf in stack.leaves[k]]
        else:
            flat = stack.leaves[k][0].grad
            assert flat is not None
            stacked_grads = [
                flat[s.offset : s.offset + s.numel].view(s.shape) for s in stack.slots
            ]
        for mine, theirs in zip(stacked_grads, grads, strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)
        # Running statistics moved like the lone model's.
        exported = stack.model(k)
        for layer in range(3):
            for mine, theirs in zip(
                exported.running_stats(layer), model.running_stats(layer), strict=True
            ):
                torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=0)


def test_stack_logits_match_each_model_in_both_modes() -> None:
    references = _models(3)
    stack = StackedConvNet(_models(3))
    x = torch.randn(8, 3, 12, 12, dtype=torch.float64)
    train_logits = stack(x, training=True)
    eval_logits = stack(x, training=False)
    for k, model in enumerate(references):
        torch.testing.assert_close(train_logits[:, k], model.train()(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(eval_logits[:, k], model.eval()(x), rtol=1e-12, atol=1e-12)


def test_keep_drops_copies_without_touching_the_others() -> None:
    references = _models(3)
    stack = StackedConvNet(_models(3))
    x = torch.randn(8, 3, 12, 12, dtype=torch.float64)
    stack(x, training=True)
    for model in references:
        model.train()(x)
    stack.keep([0, 2])
    assert stack.active == [0, 2] and stack.size == 2
    logits = stack(x, training=True)
    assert logits.shape == (8, 2, 10)
    for position, copy_index in enumerate(stack.active):
        expected = references[copy_index].train()(x)
        torch.testing.assert_close(logits[:, position], expected, rtol=1e-12, atol=1e-12)
    assert stack.leaves[1][0].grad is None


def test_nan_in_one_copy_stays_there() -> None:
    stack = StackedConvNet(_models(3))
    with torch.no_grad():
        stack.leaves[1][0][:10] = float("nan")
    logits = stack(torch.randn(8, 3, 12, 12, dtype=torch.float64), training=True)
    assert torch.isnan(logits[:, 1]).all()
    assert torch.isfinite(logits[:, [0, 2]]).all()


def test_norm_genomes_need_the_per_tensor_layout() -> None:
    assert needs_per_tensor_layout(parse_equation("None ~ norm(sqrt(|g|))"))
    assert not needs_per_tensor_layout(parse_equation("None ~ (v hat) / (sqrt(|s hat|))"))


def test_stack_rejects_mixed_architectures() -> None:
    with pytest.raises(NOSError, match="architecture"):
        StackedConvNet([ConvNet(4), ConvNet(8)])
    with pytest.raises(NOSError, match="at least one"):
        StackedConvNet([])
