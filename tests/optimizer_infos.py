"""One table of every optimizer under the shared contract (tests/test_optimizer_contract.py).

Like torch's ``OptimizerInfo`` (torch/testing/_internal/common_optimizers.py): each entry says
how to build the optimizer and what it answers to bad input, and one set of contract tests
runs over the whole table. The entries: :class:`GenomeOptimizer` for a few genomes, every
published optimizer, and classes written by :func:`optuna_nos.optim.export.export_source`.
"""

from __future__ import annotations

import functools
import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import Optimizer

from optuna_nos.core.errors import NOSError
from optuna_nos.optim.compiled_step import CompiledGenomeOptimizer
from optuna_nos.optim.export import export_source
from optuna_nos.optim.torch_optim import GenomeOptimizer
from optuna_nos.optimizers import PUBLISHED_OPTIMIZERS, AdamClip
from optuna_nos.space.parse import parse_equation

#: The schedule every entry is built with, unless a test overrides it.
TOTAL_STEPS, WARMUP_STEPS, HOLD_STEPS = 60, 6, 6


@dataclass(frozen=True)
class BadInput:
    """Constructor input the optimizer must reject with an error matching regex ``match``.

    ``kwargs`` replace the entry's constructor arguments; ``params`` (if given) builds the
    params argument instead of one plain float tensor.
    """

    kwargs: dict[str, Any]
    match: str
    params: Callable[[], Any] | None = None


@dataclass(frozen=True)
class OptimizerInfo:
    """How to build one optimizer, and what the contract expects of it."""

    name: str
    #: ``build(params, **kwargs)``.
    build: Callable[..., Optimizer]
    #: Constructor arguments besides params (lr and the schedule).
    kwargs: dict[str, Any]
    #: Steps the optimizer has taken.
    steps_taken: Callable[[Any], int]
    #: Error raised for bad constructor input, and for a step it cannot take.
    error: type[Exception] = NOSError
    step_error: type[Exception] = NOSError
    #: Text of the error for a step past ``total_steps=3``.
    past_end: str = "total_steps=3"
    bad_inputs: tuple[BadInput, ...] = ()
    #: Arguments of a resumed optimizer that its state dict must override (a seed).
    resume_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Text of the error for loading torch.optim.SGD's state dict; None: not checked.
    foreign_state: str | None = None
    #: The step count recorded in a state dict; None: not exposed.
    saved_step: Callable[[dict[str, Any]], int] | None = None
    #: Whether load_state_dict copies the state it is given (torch.optim's may share it).
    copies_loaded_state: bool = False
    #: Whether its update draws random numbers (dropout), so that splitting groups over
    #: optimizers changes it.
    random: bool = False

    def make(self, params: Any, **overrides: Any) -> Optimizer:
        """The optimizer over ``params`` with the entry's arguments, updated by ``overrides``."""
        return self.build(params, **{**self.kwargs, **overrides})


def _named(kwargs: dict[str, Any], text: str, params: Callable[[], Any] | None = None) -> BadInput:
    """A :class:`BadInput` whose error contains ``text`` literally."""
    return BadInput(kwargs, re.escape(text), params)


def _schedule(lr: float) -> dict[str, Any]:
    return {
        "lr": lr,
        "total_steps": TOTAL_STEPS,
        "warmup_steps": WARMUP_STEPS,
        "hold_steps": HOLD_STEPS,
    }


def _plain() -> list[torch.Tensor]:
    return [torch.zeros(2, requires_grad=True)]


_LR_CHECKS = (
    _named({"lr": -1.0}, "-1.0"),
    _named({"lr": float("nan")}, "nan"),
    _named({"lr": True}, "True"),
    _named({"lr": "0.1"}, "'0.1'"),
)
_SCHEDULE_CHECKS = (
    _named({"total_steps": 0}, "total_steps"),
    _named({"total_steps": 10, "warmup_steps": 5, "hold_steps": 5}, "total_steps"),
)

# ------------------------------------------------------------------------- published

_PUBLISHED_BAD = (
    *_LR_CHECKS,
    *_SCHEDULE_CHECKS,
    _named({"lr": 0.1}, "-2.0", lambda: [{"params": _plain(), "lr": -2.0}]),
    _named({"total_steps": 5.0}, "5.0"),
    _named({"total_steps": 10, "warmup_steps": -1}, "-1"),
    _named({}, "empty", lambda: []),
    _named({}, "int64", lambda: [torch.zeros(2, dtype=torch.int64)]),
)
#: Checks of one class's own options.
_OPTION_BAD: dict[str, tuple[BadInput, ...]] = {
    "Opt4": (_named({"variant": 2}, "2"), _named({"eps_in_denominator": 1}, "1")),
    "Opt9": (_named({"nesterov": "nadam"}, "'nadam'"),),
    "Opt10": (_named({"nesterov": "Keras"}, "'Keras'"),),
}


def _published(name: str) -> OptimizerInfo:
    cls = PUBLISHED_OPTIMIZERS[name]
    bad = (*_PUBLISHED_BAD, *_OPTION_BAD.get(name, ()))
    if "use_decay" in cls.options:
        bad += (_named({"use_decay": "yes"}, "'yes'"),)
    return OptimizerInfo(
        name=name,
        build=cls,
        kwargs=_schedule(0.1),
        steps_taken=lambda opt: opt.t,
        bad_inputs=bad,
        foreign_state="nos",
        saved_step=lambda state: state["nos"]["step"],
    )


def _adamclip() -> OptimizerInfo:
    """AdamClip itself, variant as the second positional argument."""
    return OptimizerInfo(
        name="AdamClip(variant=2)",
        build=lambda params, variant=2, **kw: AdamClip(params, variant, **kw),
        kwargs=_schedule(0.1),
        steps_taken=lambda opt: opt.t,
        bad_inputs=(
            *_PUBLISHED_BAD,
            _named({"variant": 5}, "5"),
            _named({"variant": True}, "True"),
        ),
        foreign_state="nos",
        saved_step=lambda state: state["nos"]["step"],
    )


# ------------------------------------------------------------------ genome optimizers

#: (name, equation, lr): Adam, a Lion-like sign of momentum, PowerSign, and a genome with
#: dropout and a stateful node (so its state dict carries generator states).
GENOMES = (
    ("Adam", "None ~ (v hat) / (sqrt(|s hat|))", 0.2),
    ("SignMomentum", "Nest ~ id(id(sign(v hat)))", 0.002),
    ("PowerSign", "None ~ (g)*(exp((sign(g))*(sign(v hat))))", 0.1),
    ("DropoutMaxValue", "Nest ~ (drop(g, 0.5))+(MaxValue(v hat))", 0.002),
)

_GENOME_BAD = (
    BadInput({"lr": -1.0}, "lr must be >= 0, got -1.0"),
    BadInput({"lr": float("nan")}, "lr must be finite, got nan"),
    BadInput({"lr": float("inf")}, "lr must be finite, got inf"),
    BadInput({"lr": True}, "lr must be a real number, got True"),
    BadInput({"lr": "0.1"}, "lr must be a real number, got '0.1'"),
    BadInput({"lr": 0.1, "total_steps": 0}, "total_steps must be >= 1, got 0"),
    BadInput(
        {"lr": 0.1, "total_steps": 10, "warmup_steps": 10, "hold_steps": 0},
        "must be less than total_steps",
    ),
    BadInput(
        {"lr": 0.1, "total_steps": None, "warmup_steps": 3, "hold_steps": 0}, "need total_steps"
    ),
    BadInput({"lr": 0.1, "momentum": 1.5}, "momentum must lie in \\[0, 1\\], got 1.5"),
    BadInput({"lr": 0.1, "momentum": "cyclic"}, "momentum must be 'cycle' or a float"),
    BadInput({"lr": 0.1, "seed": 1.5}, "seed must be an int or None, got 1.5"),
    BadInput({"lr": 0.1}, "lr must be >= 0, got -0.5", lambda: [{"params": _plain(), "lr": -0.5}]),
    BadInput({"lr": 0.1}, "floating-point parameters", lambda: [torch.zeros(3, dtype=torch.long)]),
)


def _genome_optimizer(
    name: str,
    equation: str,
    lr: float,
    cls: type[GenomeOptimizer] = GenomeOptimizer,
    **options: Any,
) -> OptimizerInfo:
    genome = parse_equation(equation)
    return OptimizerInfo(
        name=f"{cls.__name__}[{name}]",
        build=lambda params, **kw: cls(params, genome, **options, **kw),
        kwargs={**_schedule(lr), "seed": 1},
        steps_taken=lambda opt: opt.step_count,
        past_end="step 3 is past the schedule",
        bad_inputs=_GENOME_BAD,
        resume_kwargs={"seed": 99},
        foreign_state="not saved by a GenomeOptimizer",
        copies_loaded_state=True,
        random="drop(" in equation,
    )


# ----------------------------------------------------------------------- exported


@functools.cache
def exported_class(equation: str) -> type[Optimizer]:
    """The class :func:`export_source` writes for ``equation``, imported as a module."""
    name = f"exported_contract_{abs(hash(equation))}"
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(export_source(parse_equation(equation)), name, "exec"), module.__dict__)  # noqa: S102
    return module.EvolvedOptimizer  # type: ignore[no-any-return]


def _exported(name: str, equation: str, lr: float) -> OptimizerInfo:
    return OptimizerInfo(
        name=f"export[{name}]",
        build=lambda params, **kw: exported_class(equation)(params, **kw),
        kwargs={**_schedule(lr), "seed": 1},
        steps_taken=lambda opt: opt.t,
        error=ValueError,
        step_error=RuntimeError,
        past_end="step 3 is past total_steps = 3",
        bad_inputs=(
            *_PUBLISHED_BAD,
            _named({"momentum": 1.5}, "1.5"),
            _named({"momentum": True}, "True"),
            _named({"seed": 1.5}, "1.5"),
            _named({"lr_schedule": "no"}, "'no'"),
            _named({"total_steps": None, "warmup_steps": 3, "hold_steps": 0}, "warmup_steps=3"),
        ),
        resume_kwargs={"seed": 99},
        foreign_state="not saved by EvolvedOptimizer",
        saved_step=lambda state: state["evolved"]["t"],
        random="drop(" in equation,
    )


OPTIMIZER_INFOS: tuple[OptimizerInfo, ...] = (
    *(_genome_optimizer(*genome) for genome in GENOMES),
    # aot_eager traces the graph without generating code: the contract, not the kernels.
    _genome_optimizer(*GENOMES[0], cls=CompiledGenomeOptimizer, backend="aot_eager"),
    *(_published(name) for name in sorted(PUBLISHED_OPTIMIZERS)),
    _adamclip(),
    *(_exported(*genome) for genome in GENOMES if genome[0] in ("Adam", "DropoutMaxValue")),
)
