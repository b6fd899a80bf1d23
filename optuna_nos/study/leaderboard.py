"""The leaderboard: one row per genome, its best fitness at each fidelity, and the baselines.

A genome is scored more than once in a particle GA (an initial trial at the *init* fidelity,
its re-evaluation at the *evolution* fidelity, retries), so rows are keyed by the genome's
equation and hold ``best[fidelity] = max value`` over its COMPLETE trials with a finite value.
Rows rank by the evolution-fidelity score first (the score the GA selects on), then by the
init-fidelity score: a genome scored at the evolution fidelity ranks above every genome
scored only at the init fidelity, since the two are not comparable.

Trials without an equation (a worker's "search finished" trial, a trial pruned before its
genome existed) never appear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_nos.core.display import printable
from optuna_nos.study.stored import BASELINES_ATTR, EQUATION_ATTR, FIDELITY_USER_ATTR

__all__ = ["BASELINES_ATTR", "FIDELITIES", "Row", "baselines", "leaderboard", "format_leaderboard"]

#: Study user attr: ``{baseline name: {fidelity: fitness}}``.
#: Fidelities, in the order a leaderboard shows them.
FIDELITIES = ("evolution", "init")


@dataclass
class Row:
    """One genome: its equation, best fitness per fidelity and the trial that scored it."""

    equation: str
    best: dict[str, float] = field(default_factory=dict)
    trial: dict[str, int] = field(default_factory=dict)

    def rank_key(self) -> tuple[float, float]:
        """Sort key (ascending = best first): evolution score, then init score."""
        return (-self.best.get("evolution", -math.inf), -self.best.get("init", -math.inf))

    @property
    def best_trial(self) -> int:
        """The trial of the row's highest-ranked score (evolution fidelity if scored there)."""
        for fidelity in FIDELITIES:
            if fidelity in self.trial:
                return self.trial[fidelity]
        raise AssertionError("a row always has a score")


def _fidelity(trial: FrozenTrial) -> str:
    return "init" if trial.user_attrs.get(FIDELITY_USER_ATTR) == "init" else "evolution"


def leaderboard(trials: list[FrozenTrial], top: int | None = None) -> list[Row]:
    """The ``top`` best genomes among ``trials``, best first (all with ``top=None``)."""
    rows: dict[str, Row] = {}
    for trial in trials:
        equation = trial.user_attrs.get(EQUATION_ATTR)
        value = trial.value if trial.state == TrialState.COMPLETE else None
        if not isinstance(equation, str) or value is None or not math.isfinite(value):
            continue
        row = rows.setdefault(equation, Row(equation))
        fidelity = _fidelity(trial)
        if value > row.best.get(fidelity, -math.inf):
            row.best[fidelity] = value
            row.trial[fidelity] = trial.number
    ranked = sorted(rows.values(), key=lambda r: (r.rank_key(), r.best_trial))
    return ranked if top is None else ranked[:top]


def baselines(study: optuna.Study) -> dict[str, dict[str, float]]:
    """The study's recorded baselines, ``{name: {fidelity: fitness}}`` (empty when none).

    Any worker may have written the attr: entries that are not a number per fidelity are
    skipped, and a baseline left with no score is left out.
    """
    raw = study.user_attrs.get(BASELINES_ATTR, {})
    if not isinstance(raw, dict):
        return {}
    clean: dict[str, dict[str, float]] = {}
    for name, by_fidelity in raw.items():
        if not isinstance(by_fidelity, dict):
            continue
        scores = {
            str(fidelity): float(value)
            for fidelity, value in by_fidelity.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        if scores:
            clean[str(name)] = scores
    return clean


def _score(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if math.isfinite(value) else "failed"


def format_leaderboard(study: optuna.Study, top: int = 10) -> list[str]:
    """The leaderboard as terminal lines: baselines first, then one line per genome."""
    rows = leaderboard(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), top)
    metric = (study.metric_names or ["fitness"])[0]
    lines = [
        f"leaderboard of study {study.study_name!r}: best {len(rows)} genomes, "
        f"best {metric} at each fidelity"
    ]
    lines.append(f"  {'#':>3} {'evolution':>9} {'init':>7} {'trial':>6}  equation")
    for name, by_fidelity in sorted(baselines(study).items()):
        lines.append(
            f"  {'-':>3} {_score(by_fidelity.get('evolution')):>9} "
            f"{_score(by_fidelity.get('init')):>7} {'-':>6}  baseline {printable(name)}"
        )
    for rank, row in enumerate(rows, 1):
        lines.append(
            f"  {rank:>3} {_score(row.best.get('evolution')):>9} "
            f"{_score(row.best.get('init')):>7} {row.best_trial:>6}  "
            f"{printable(row.equation)}"
        )
    return lines
