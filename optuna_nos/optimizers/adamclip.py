"""AdamClip: Adam's first moment clipped by a function of its second moment.

Per tensor at step t, with bias corrections of exponent t+1:

    v <- 0.9 v + 0.1 g ;    v_hat = v / (1 - 0.9^(t+1))
    s <- 0.99 s + 0.01 g^2 ; s_hat = s / (1 - 0.99^(t+1))
    w <- w - eta_t U

    A1 (variant 0):  U = clip(v_hat, sqrt(s_hat) + 1e-7)
    A2 (variant 1):  U = clip(v_hat, |ln(s_hat + 1e-7)|)
    A3 (variant 2):  U = clip(v_hat, sqrt(|ln(s_hat + 1e-7)|))
    A4 (variant 3):  U = clip(v_hat, sigmoid(s_hat + 1e-7))          (bound in (0.5, 1))
    A5 (variant 4):  U = norm(clip(v_hat, sqrt(s_hat) + 1e-7)),  norm(x) = x / max(1, ||x||_2)

with clip(x, c) = clip(x, -|c|, |c|) and ||x||_2 over the whole tensor. eta_t is warmup ->
hold at eta -> cosine. Unlike Adam, these updates are not scale-invariant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from optuna_nos.optimizers._base import OptionCheck, PublishedOptimizer, StepScalars, int_in
from optuna_nos.optimizers._functions import EPS, clip, ema_

__all__ = ["A1", "A2", "A3", "A4", "A5", "ADAMCLIP_VARIANTS", "AdamClip"]


def _norm_clip(x: Tensor) -> Tensor:
    """x * min(1, 1/||x||_2) = x / max(1, ||x||_2), over the whole tensor (0 stays 0)."""
    return x / torch.clamp(torch.linalg.vector_norm(x), min=1.0)


def _sqrt_bound(s_hat: Tensor) -> Tensor:
    return torch.sqrt(s_hat) + EPS


#: variant -> (bound on |v_hat| as a function of s_hat, whether to norm-clip afterwards)
_VARIANTS: dict[int, tuple[Callable[[Tensor], Tensor], bool]] = {
    0: (_sqrt_bound, False),
    1: (lambda s_hat: torch.abs(torch.log(s_hat + EPS)), False),
    2: (lambda s_hat: torch.sqrt(torch.abs(torch.log(s_hat + EPS))), False),
    3: (lambda s_hat: torch.sigmoid(s_hat + EPS), False),
    4: (_sqrt_bound, True),
}

ADAMCLIP_VARIANTS = tuple(sorted(_VARIANTS))


class AdamClip(PublishedOptimizer):
    """AdamClip variant 0..4 (= A1..A5), U = clip(v_hat, f(s_hat)); see the module docstring.

    The names A1..A5 for variants 0..4 are an assumed mapping.
    """

    options: ClassVar[dict[str, tuple[Any, OptionCheck]]] = {
        "variant": (0, int_in(ADAMCLIP_VARIANTS[0], ADAMCLIP_VARIANTS[-1])),
    }

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        variant: int = 0,
        lr: float = 1e-3,
        *,
        total_steps: int,
        warmup_steps: int = 0,
        hold_steps: int = 0,
    ) -> None:
        """As :class:`PublishedOptimizer`, with the variant (0..4) second."""
        super().__init__(
            params,
            lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            hold_steps=hold_steps,
            variant=variant,
        )

    def _new_state(self, param: Tensor) -> dict[str, Tensor]:
        return {"v": torch.zeros_like(param), "s": torch.zeros_like(param)}

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        ema_(state["v"], grad, 0.9)
        ema_(state["s"], grad**2, 0.99)
        v_hat = state["v"] / scalars.bias_correction(0.9)
        s_hat = state["s"] / scalars.bias_correction(0.99)
        bound_of, norm_clip = _VARIANTS[scalars.group["variant"]]
        update = clip(v_hat, bound_of(s_hat))
        return _norm_clip(update) if norm_clip else update


class _FixedVariant(AdamClip):
    """AdamClip with the variant fixed by the subclass."""

    fixed_variant: ClassVar[int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        variant = cls.fixed_variant
        cls.options = {"variant": (variant, int_in(variant, variant))}

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        *,
        total_steps: int,
        warmup_steps: int = 0,
        hold_steps: int = 0,
    ) -> None:
        """As :class:`PublishedOptimizer`; the variant is the class's."""
        super().__init__(
            params,
            self.fixed_variant,
            lr,
            total_steps=total_steps,
            warmup_steps=warmup_steps,
            hold_steps=hold_steps,
        )


class A1(_FixedVariant):
    """A1 = AdamClip variant 0:  U = clip(v_hat, sqrt(s_hat) + 1e-7)."""

    fixed_variant = 0


class A2(_FixedVariant):
    """A2 = AdamClip variant 1:  U = clip(v_hat, |ln(s_hat + 1e-7)|)."""

    fixed_variant = 1


class A3(_FixedVariant):
    """A3 = AdamClip variant 2:  U = clip(v_hat, sqrt(|ln(s_hat + 1e-7)|))."""

    fixed_variant = 2


class A4(_FixedVariant):
    """A4 = AdamClip variant 3:  U = clip(v_hat, sigmoid(s_hat + 1e-7))."""

    fixed_variant = 3


class A5(_FixedVariant):
    """A5 = AdamClip variant 4:  U = norm(clip(v_hat, sqrt(s_hat) + 1e-7)), ||U||_2 <= 1."""

    fixed_variant = 4
