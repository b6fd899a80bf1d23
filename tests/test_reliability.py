"""Reliability: the CI set of bench/drills.py, and bad gradients in every optimizer.

The drills run the ``optuna-nos`` command in subprocesses against real storages (see
``testkit.drills`` for what each checks). ``postgres-restart`` stops the local PostgreSQL
cluster for 10 s, so it runs only with ``OPTUNA_NOS_DRILL_RESTART=1`` (CI sets it; on a
shared server it would interrupt other users), and alone: not under pytest-xdist, in its own
``pytest -m restarts_postgres`` run. ``load16`` takes minutes and is not run here.

Bad gradients have defined behaviour in :class:`optuna_nos.GenomeOptimizer` and every
published optimizer, as in ``torch.optim``: ``step`` never raises; a parameter without a
gradient is left untouched and gets no state; a zero-size parameter stays zero-size; a NaN or
infinite gradient entry is not masked, so it can make its own tensor non-finite, but never
another tensor.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

import optuna_nos
from optuna_nos import optimizers
from optuna_nos.space.parse import parse_equation
from testkit import drills
from testkit.postgres import DEFAULT_SERVER, require_postgres


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize(
    "name",
    [
        "signals",
        "sigkill",
        "artifacts",
        pytest.param("postgres-restart", marks=pytest.mark.restarts_postgres),
    ],
)
def test_drill(name: str) -> None:
    if drills.DRILLS[name][1]:
        require_postgres()
    if name == "postgres-restart":
        if os.environ.get("OPTUNA_NOS_DRILL_RESTART") != "1":
            pytest.skip("restarts the PostgreSQL server; set OPTUNA_NOS_DRILL_RESTART=1")
        if os.environ.get("PYTEST_XDIST_WORKER"):
            pytest.skip(
                "restarts the PostgreSQL server under the other tests; run it alone: "
                "pytest -m restarts_postgres"
            )
        if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
            pytest.skip("needs a local pg_ctlcluster-managed PostgreSQL")
    result = drills.run_drill(name, DEFAULT_SERVER)
    assert result.passed, "\n".join(result.findings)


def test_duplicate_claim_count_on_hand_made_trials() -> None:
    import datetime

    from optuna.trial import TrialState, create_trial

    t0 = datetime.datetime(2024, 1, 1)

    def attempt(number: int, slot: str, start: int, end: int | None) -> object:
        trial = create_trial(
            state=TrialState.COMPLETE if end else TrialState.RUNNING,
            value=1.0 if end else None,
            system_attrs={"nos:slot": slot},
        )
        trial.number = number
        trial.datetime_start = t0 + datetime.timedelta(seconds=start)
        trial.datetime_complete = t0 + datetime.timedelta(seconds=end) if end else None
        return trial

    trials = [
        attempt(0, "init 0", 0, 5),
        attempt(1, "init 0", 2, 6),  # overlapping: 1
        attempt(2, "init 1", 0, 3),
        attempt(3, "init 1", 4, 7),  # a retry: 0
        attempt(4, "init 2", 0, None),
        attempt(5, "init 2", 9, 10),
    ]  # still running: 1
    assert drills._duplicate_claims(trials) == (2, 6)


# -- bad gradients ---------------------------------------------------------------------------

GENOMES = [
    "None ~ (v hat) / (sqrt(|s hat|))",
    "Nest ~ id(id(g))",
    "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))",
]
PUBLISHED = sorted(
    n for n in optimizers.__all__ if n.startswith("Opt") or n in ("A1", "A2", "A3", "A4", "A5")
)


def _optimizer(kind: str, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if kind.startswith("genome:"):
        _, foreach, equation = kind.split(":", 2)
        return optuna_nos.GenomeOptimizer(
            params, parse_equation(equation), lr=0.1, total_steps=10, foreach=foreach == "foreach"
        )
    return getattr(optimizers, kind)(params, lr=0.1, total_steps=10)


KINDS = PUBLISHED + [f"genome:{mode}:{eq}" for eq in GENOMES for mode in ("foreach", "loop")]


def test_every_published_optimizer_is_covered() -> None:
    assert len(PUBLISHED) >= 15 and "Opt10" in PUBLISHED and "A5" in PUBLISHED


@pytest.mark.parametrize("kind", KINDS)
def test_parameter_without_gradient_is_untouched(kind: str) -> None:
    still = torch.nn.Parameter(torch.linspace(-1, 1, 5))
    moving = torch.nn.Parameter(torch.ones(3))
    optimizer = _optimizer(kind, [still, moving])
    for _ in range(3):
        moving.grad = torch.full((3,), 0.5)
        optimizer.step()
    assert torch.equal(still.detach(), torch.linspace(-1, 1, 5))
    assert len(optimizer.state.get(still, {})) == 0
    assert not torch.equal(moving.detach(), torch.ones(3))


@pytest.mark.parametrize("kind", KINDS)
def test_zero_size_parameter(kind: str) -> None:
    empty = torch.nn.Parameter(torch.ones(0, 4))
    other = torch.nn.Parameter(torch.ones(3))
    reference = torch.nn.Parameter(torch.ones(3))
    optimizer = _optimizer(kind, [empty, other])
    alone = _optimizer(kind, [reference])
    for _ in range(3):
        empty.grad = torch.ones(0, 4)
        other.grad = torch.full((3,), 0.5)
        reference.grad = torch.full((3,), 0.5)
        optimizer.step()
        alone.step()
    assert empty.shape == (0, 4)
    torch.testing.assert_close(other.detach(), reference.detach())  # no effect on others


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_gradient_stays_in_its_tensor(kind: str, bad: float) -> None:
    hit = torch.nn.Parameter(torch.ones(3))
    clean = torch.nn.Parameter(torch.ones(3))
    reference = torch.nn.Parameter(torch.ones(3))
    optimizer = _optimizer(kind, [hit, clean])
    alone = _optimizer(kind, [reference])
    for _ in range(3):
        hit.grad = torch.tensor([bad, 0.5, 0.5])
        clean.grad = torch.full((3,), 0.5)
        reference.grad = torch.full((3,), 0.5)
        optimizer.step()
        alone.step()
    torch.testing.assert_close(clean.detach(), reference.detach())
    assert hit.shape == (3,)
