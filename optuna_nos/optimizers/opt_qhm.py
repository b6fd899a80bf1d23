"""Opt1-Opt3: QH-momentum plus a softsign of a tiny weight term.

Common to all three, per tensor at step t (bias corrections with exponent t+1):

    v <- 0.9 v + 0.1 g ;  v_hat = v / (1 - 0.9^(t+1)) ;  q = 0.3 g + 0.7 v_hat
    w <- w - eta_t * U

They carry no decay factors: ``use_decay`` is accepted for a uniform interface and changes
nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optuna_nos.optimizers._base import StepScalars
from optuna_nos.optimizers._functions import clip, ema_, softsign
from optuna_nos.optimizers._qhm import QHMOptimizer

__all__ = ["Opt1", "Opt2", "Opt3", "Opt3_g3"]


def _soft_weight_term(param: Tensor, mix: Tensor) -> Tensor:
    """softsign(1e-5 w / sqrt(1 + (1e-5 w - mix)^2)), Opt2's and Opt3's second term."""
    small_w = 1e-5 * param
    return softsign(small_w / torch.sqrt(1.0 + (small_w - mix) ** 2))


class _TwoMomentOptimizer(QHMOptimizer):
    """Keeps v and one more EMA of a power of g; subclasses say which."""

    #: State name of the second EMA, its beta and the power of g it averages.
    second_name = "s"
    second_beta = 0.99
    second_power = 2

    def _new_state(self, param: Tensor) -> dict[str, Tensor]:
        return {**super()._new_state(param), self.second_name: torch.zeros_like(param)}

    def _moments(
        self, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> tuple[Tensor, Tensor]:
        """Update both EMAs; return q and the bias-corrected second EMA."""
        q, _ = self._qhm(grad, state, scalars)
        ema_(state[self.second_name], grad**self.second_power, self.second_beta)
        return q, state[self.second_name] / scalars.bias_correction(self.second_beta)


class Opt1(_TwoMomentOptimizer):
    """Opt1, with s = EMA_0.99(g^2) and s_hat its bias correction:

        s1 = |1e-5 w - 0.05 g^2 + 0.95 s_hat|
        U  = q + softsign(clip(1e-5 w, s1))

    The grouping of s1 is the released one (it is probably meant to be
    |1e-5 w - (0.05 g^2 + 0.95 s_hat)|, as in Opt2).
    """

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        q, s_hat = self._moments(grad, state, scalars)
        small_w = 1e-5 * param
        bound = torch.abs(small_w - 0.05 * grad**2 + 0.95 * s_hat)
        return q + softsign(clip(small_w, bound))


class Opt2(_TwoMomentOptimizer):
    """Opt2, with s = EMA_0.99(g^2) and s_hat its bias correction:

    s2 = 1e-5 w - (0.05 g^2 + 0.95 s_hat)
    U  = q + softsign(1e-5 w / sqrt(1 + s2^2))
    """

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        q, s_hat = self._moments(grad, state, scalars)
        return q + _soft_weight_term(param, 0.05 * grad**2 + 0.95 * s_hat)


class Opt3(_TwoMomentOptimizer):
    """Opt3, with l = EMA_0.999(g^2) (as released) and l_hat its bias correction:

        l2 = 1e-5 w - (0.01 g^3 + 0.99 l_hat)
        U  = q + softsign(1e-5 w / sqrt(1 + l2^2))

    :class:`Opt3_g3` averages g^3 in l instead, as the search space's lambda does.
    """

    second_name = "l"
    second_beta = 0.999

    def _direction(
        self, param: Tensor, grad: Tensor, state: dict[str, Tensor], scalars: StepScalars
    ) -> Tensor:
        q, l_hat = self._moments(grad, state, scalars)
        return q + _soft_weight_term(param, 0.01 * grad**3 + 0.99 * l_hat)


class Opt3_g3(Opt3):  # noqa: N801 - the variant's published name
    """Opt3 with l = EMA_0.999(g^3), the search space's third moment:

    l2 = 1e-5 w - (0.01 g^3 + 0.99 l_hat)
    U  = q + softsign(1e-5 w / sqrt(1 + l2^2))
    """

    second_power = 3
