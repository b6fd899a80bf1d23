"""The paper's published optimizers and evolved LR schedules, in torch.

- :class:`Opt1` .. :class:`Opt10` (and the variant :class:`Opt3_g3`): hand-written
  ``torch.optim.Optimizer`` s with their own warmup -> hold -> cosine schedule; ``use_decay``
  (default True) switches on their decay factors.
- :class:`AdamClip` (variant 0..4) and its fixed-variant names :class:`A1` .. :class:`A5`.
- :class:`EvolvedLR`: the nine evolved LR schedules as an LR scheduler for any optimizer.

As with ``torch.optim``'s hyperparameters, ``lr``, the schedule (``total_steps``,
``warmup_steps``, ``hold_steps``) and a class's options are entries of every param group (a
group may set its own) and so part of ``state_dict()``.
"""

from __future__ import annotations

from optuna_nos.optimizers._base import PublishedOptimizer
from optuna_nos.optimizers.adamclip import A1, A2, A3, A4, A5, ADAMCLIP_VARIANTS, AdamClip
from optuna_nos.optimizers.evolved_lr import (
    LR_FLOOR,
    N_EVOLVED_LR_SCHEDULES,
    EvolvedLR,
    evolved_lr_factor,
)
from optuna_nos.optimizers.opt_clip import Opt4, Opt5, Opt6
from optuna_nos.optimizers.opt_nesterov import NESTEROV_FORMS, Opt9, Opt10
from optuna_nos.optimizers.opt_qhm import Opt1, Opt2, Opt3, Opt3_g3
from optuna_nos.optimizers.opt_soft import Opt7, Opt8

__all__ = [
    "A1",
    "A2",
    "A3",
    "A4",
    "A5",
    "ADAMCLIP_VARIANTS",
    "LR_FLOOR",
    "NESTEROV_FORMS",
    "N_EVOLVED_LR_SCHEDULES",
    "PUBLISHED_OPTIMIZERS",
    "AdamClip",
    "EvolvedLR",
    "Opt1",
    "Opt10",
    "Opt2",
    "Opt3",
    "Opt3_g3",
    "Opt4",
    "Opt5",
    "Opt6",
    "Opt7",
    "Opt8",
    "Opt9",
    "PublishedOptimizer",
    "evolved_lr_factor",
]

#: Every published optimizer class by name.
PUBLISHED_OPTIMIZERS: dict[str, type[PublishedOptimizer]] = {
    cls.__name__: cls
    for cls in (
        Opt1,
        Opt2,
        Opt3,
        Opt3_g3,
        Opt4,
        Opt5,
        Opt6,
        Opt7,
        Opt8,
        Opt9,
        Opt10,
        A1,
        A2,
        A3,
        A4,
        A5,
    )
}
