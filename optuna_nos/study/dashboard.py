"""What optuna-dashboard shows of a search: the metric's name, trial notes and the study view.

* :func:`name_metric` names the objective "validation accuracy" (not "Objective 0").
* :func:`trial_note` / :func:`describe_trial` (a study callback): a Markdown note per trial,
  shown at the top of its page: the prune reason first, then the equation in paper and
  readable notation (LaTeX as code to copy: the dashboard's Markdown renders no math),
  fitness, fidelity, slot, the lr the screen chose, parent and mutation, the schedule PNG.
* :class:`StudyView` keeps the study note, the study user attrs ``best equation`` /
  ``best fitness`` (the "Study User Attributes" card sits beside the Best Trial card, which
  can only show params) and the study artifact "fitness per particle" up to date.

Images in notes link to ``/artifacts/...``, which optuna-dashboard serves when started with
``--artifact-dir`` (the same directory the workers write).
"""

from __future__ import annotations

import io
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_nos.study.leaderboard import baselines, leaderboard
from optuna_nos.study.stored import (
    BEST_EQUATION_ATTR,
    BEST_FITNESS_ATTR,
    EQUATION_ATTR,
    FIDELITY_USER_ATTR,
    LR_ATTR,
    MUTATION_ATTR,
    PARENT_ATTR,
    PARTICLE_ATTR,
    REASON_ATTR,
    SLOT_USER_ATTR,
    STEP_ATTR,
    trial_genome,
)

__all__ = ["METRIC_NAME", "StudyView", "describe_trial", "name_metric", "trial_note"]

_logger = logging.getLogger(__name__)

#: The name of the objective's value, shown by the dashboard instead of "Objective 0".
METRIC_NAME = "validation accuracy"
#: Study user attrs that put the best genome beside the dashboard's Best Trial card.
_PLOT_NAME = "fitness_per_particle.png"


def name_metric(study: optuna.Study) -> None:
    """Name the study's objective :data:`METRIC_NAME` unless it already has a name."""
    import warnings

    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAME])


def _trial_link(study_id: int, number: Any) -> str:
    return f"[trial {number}](/dashboard/studies/{study_id}/trials?numbers={number})"


def _mutation_text(mutation: Any) -> str:
    if not isinstance(mutation, Mapping):
        return "-"
    where = f" at {mutation['node']}" if mutation.get("node") else ""
    return (
        f"{mutation.get('kind', '?')}{where}: `{mutation.get('before')}` → "
        f"`{mutation.get('after')}`"
    )


def trial_note(
    *,
    study_id: int,
    number: int,
    attrs: Mapping[str, Any],
    genome: Any = None,
    value: float | None = None,
    state: str = "complete",
    artifact_url: str | None = None,
) -> str:
    """The Markdown note of one trial (``attrs``: its user attrs)."""
    from optuna_nos.space.notation import format_equation

    lines: list[str] = []
    reason = attrs.get(REASON_ATTR)
    if state != "complete":
        lines.append(f"**{state.capitalize()}**: {reason or 'no reason recorded'}")
        lines.append("")
    if genome is not None:
        lines += [
            f"**`{format_equation(genome, 'paper')}`**",
            "",
            f"readable: `{format_equation(genome, 'readable')}`",
            "",
            f"LaTeX: `{format_equation(genome, 'latex')}`",
            "",
        ]
    score = "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
    lr = attrs.get(LR_ATTR)
    parent = attrs.get(PARENT_ATTR)
    rows = [
        (METRIC_NAME, score),
        ("fidelity", str(attrs.get(FIDELITY_USER_ATTR, "-"))),
        ("slot", f"`{attrs[SLOT_USER_ATTR]}`" if SLOT_USER_ATTR in attrs else "-"),
        ("learning rate (screen)", "-" if lr is None else f"{lr:g}"),
        ("parent", _trial_link(study_id, parent) if isinstance(parent, int) else "-"),
        ("mutation", _mutation_text(attrs.get(MUTATION_ATTR))),
    ]
    lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    if artifact_url is not None:
        lines.append(f"![learning-rate schedule and decays]({artifact_url})")
    return "\n".join(lines)


def fitness_attr(fidelity: str) -> str:
    """The numeric user attr holding a trial's value at its fidelity: the History plot's
    y-axis choices include numeric user attrs, so picking it shows one fidelity alone."""
    return f"fitness ({fidelity})"


def record_fitness_by_fidelity(
    objective: Callable[[optuna.Trial], float],
) -> Callable[[optuna.Trial], float]:
    """``objective`` that also sets the user attr :func:`fitness_attr` of the trial's
    fidelity to its (finite) value before returning it."""
    from optuna_nos.study.suggest import trial_fidelity

    def recorded(trial: optuna.Trial) -> float:
        value = objective(trial)
        if isinstance(value, int | float) and math.isfinite(value):
            trial.set_user_attr(fitness_attr(trial_fidelity(trial)), float(value))
        return value

    return recorded


def artifact_url(study_id: int, trial_id: int | None, artifact_id: str) -> str:
    """Where optuna-dashboard serves an artifact of a trial (or of the study)."""
    if trial_id is None:
        return f"/artifacts/{study_id}/{artifact_id}"
    return f"/artifacts/{study_id}/{trial_id}/{artifact_id}"


def describe_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Write :func:`trial_note` for a finished ``trial`` (a study callback; never raises).

    The genome comes from the system attr ``nos:genome``, the image from the trial's first
    PNG artifact.
    """
    from types import SimpleNamespace

    from optuna_dashboard import save_note

    try:
        genome = trial_genome(trial)
        url = next(
            (
                artifact_url(study._study_id, trial._trial_id, meta["artifact_id"])
                for meta in _artifact_metas(trial.system_attrs)
                if meta.get("mimetype") == "image/png"
            ),
            None,
        )
        body = trial_note(
            study_id=study._study_id,
            number=trial.number,
            attrs=trial.user_attrs,
            genome=genome,
            value=trial.value,
            state=trial.state.name.lower(),
            artifact_url=url,
        )
        # save_note reads only .storage, .study and ._trial_id of a trial
        save_note(
            SimpleNamespace(
                storage=study._storage,
                study=study,  # type: ignore[arg-type]
                _trial_id=trial._trial_id,
            ),
            body,
        )
    except Exception as exc:  # a note is a convenience; the search matters more
        _logger.warning("cannot save the note of trial %d: %s", trial.number, exc)


def _artifact_metas(system_attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    import json

    metas = []
    for key, value in system_attrs.items():
        if key.startswith("artifacts:") and isinstance(value, str):
            try:
                meta = json.loads(value)
            except ValueError:
                continue
            if isinstance(meta, dict) and isinstance(meta.get("artifact_id"), str):
                metas.append(meta)
    return metas


# -- study view -------------------------------------------------------------------------------


def _lineage(trials: list[FrozenTrial], number: int) -> list[str]:
    """Markdown lines: ``number``'s ancestry, root first, with each step's mutation."""
    by_number = {t.number: t for t in trials}
    chain: list[FrozenTrial] = []
    current = by_number.get(number)
    while current is not None and current not in chain:
        chain.append(current)
        parent = current.user_attrs.get(PARENT_ATTR)
        current = by_number.get(parent) if isinstance(parent, int) else None
    lines = []
    for depth, trial in enumerate(reversed(chain)):
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        mutation = trial.user_attrs.get(MUTATION_ATTR)
        change = f" ({_mutation_text(mutation)})" if mutation else ""
        slot, equation = (trial.user_attrs.get(key, "") for key in (SLOT_USER_ATTR, EQUATION_ATTR))
        lines.append(
            f"{'  ' * depth}- trial {trial.number} `{slot}` {value}{change}: `{equation}`"
        )
    return lines


def study_note(
    study: optuna.Study, trials: list[FrozenTrial], *, top: int = 10, plot_url: str | None = None
) -> str:
    """The study's Markdown note: leaderboard with baselines, lineage of the best, the plot."""
    rows = leaderboard(trials)
    finished = [t for t in trials if t.state.is_finished()]
    lines = [
        f"## {study.study_name}",
        "",
        f"{len(finished)} finished trials; fitness is the {METRIC_NAME} at each fidelity "
        "(*init*: the cheap screen of random genomes, *evolution*: particles and "
        "children). In the History plot, pick the y axis `fitness (init)` or "
        "`fitness (evolution)` to see one fidelity.",
        "",
        "### Leaderboard",
        "",
        "| # | evolution | init | trial | equation |",
        "|---:|---:|---:|---:|---|",
    ]
    for name, scores in sorted(baselines(study).items()):
        cells = [_cell(scores.get(f)) for f in ("evolution", "init")]
        lines.append(f"| - | {cells[0]} | {cells[1]} | - | baseline {name} |")
    for rank, row in enumerate(rows[:top], 1):
        cells = [_cell(row.best.get(f)) for f in ("evolution", "init")]
        link = _trial_link(study._study_id, row.best_trial)
        lines.append(f"| {rank} | {cells[0]} | {cells[1]} | {link} | `{row.equation}` |")
    if rows:
        lines += [
            "",
            f"### Lineage of the best genome (trial {rows[0].best_trial})",
            "",
            *_lineage(trials, rows[0].best_trial),
        ]
    if plot_url is not None:
        lines += ["", "### Fitness per particle", "", f"![fitness per particle]({plot_url})"]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if math.isfinite(value) else "failed"


def fitness_plot_png(study: optuna.Study, trials: list[FrozenTrial]) -> bytes:
    """PNG: each particle's best fitness per GA step, with the baselines as reference lines.

    Step 0 is the particle's re-evaluation (evolution fidelity), step k >= 1 the best child of
    its k-th step. Baselines are horizontal lines: solid at the evolution fidelity, dotted at
    the init fidelity.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    best: dict[int, dict[int, float]] = {}
    for trial in trials:
        particle, value = trial.user_attrs.get(PARTICLE_ATTR), trial.value
        if (
            trial.state != TrialState.COMPLETE
            or not isinstance(particle, int)
            or value is None
            or not math.isfinite(value)
        ):
            continue
        if trial.user_attrs.get(FIDELITY_USER_ATTR) == "init":
            continue
        x = int(trial.user_attrs.get(STEP_ATTR) or 0)
        best.setdefault(particle, {})
        best[particle][x] = max(value, best[particle].get(x, -math.inf))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for particle, points in sorted(best.items()):
        xs = sorted(points)
        ax.plot(xs, [points[x] for x in xs], marker="o", linewidth=1, label=f"particle {particle}")
    styles = {"evolution": "-", "init": ":"}
    colors = ("black", "grey", "brown", "olive")
    for index, (name, scores) in enumerate(sorted(baselines(study).items())):
        color = colors[index % len(colors)]
        for fidelity, score in scores.items():
            if isinstance(score, int | float) and math.isfinite(score):
                ax.axhline(
                    score,
                    color=color,
                    linestyle=styles.get(fidelity, "--"),
                    linewidth=1,
                    label=f"{name} ({fidelity})",
                )
    ax.set_xlabel("GA step (0: the particle's re-evaluation; k: best child of step k)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(METRIC_NAME)
    ax.set_title(f"{study.study_name}: best fitness per particle and step", fontsize=9)
    if ax.lines:
        ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


class StudyView:
    """Keeps the study note, ``best equation`` attrs and the fitness plot up to date.

    Use as a study callback: it refreshes after a trial when the number of decided GA slots
    changed and at least ``min_interval`` seconds passed since its last refresh (and always on
    :meth:`refresh`). The plot is written as a study artifact with a fixed id (one per study),
    overwritten on each refresh, when ``artifact_dir`` is set.
    """

    def __init__(
        self, artifact_dir: str | None = None, *, min_interval: float = 30.0, top: int = 10
    ) -> None:
        self.artifact_dir = artifact_dir
        self.min_interval = min_interval
        self.top = top
        self._last = -math.inf
        self._decided: int | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if time.monotonic() - self._last < self.min_interval:
            return
        decided = getattr(study.sampler, "n_decided", None)
        count = decided(study) if callable(decided) else trial.number
        if count == self._decided:
            return
        self._decided = count
        self.refresh(study)

    def refresh(self, study: optuna.Study) -> None:
        """Rewrite the study note, best-genome attrs and plot now (never raises)."""
        from optuna_dashboard import save_note

        self._last = time.monotonic()
        try:
            trials = study.get_trials(deepcopy=False)
            rows = leaderboard(trials)
            if rows:
                fidelity = "evolution" if "evolution" in rows[0].best else "init"
                study.set_user_attr(BEST_EQUATION_ATTR, rows[0].equation)
                study.set_user_attr(
                    BEST_FITNESS_ATTR,
                    f"{rows[0].best[fidelity]:.4f} ({fidelity}, trial {rows[0].best_trial})",
                )
            plot_url = self._upload_plot(study, trials)
            save_note(study, study_note(study, trials, top=self.top, plot_url=plot_url))
        except Exception as exc:  # the view is a convenience; never stop a worker for it
            _logger.warning("cannot update the study's dashboard view: %s", exc)

    def _upload_plot(self, study: optuna.Study, trials: list[FrozenTrial]) -> str | None:
        if self.artifact_dir is None:
            return None
        import json

        from optuna_nos.study.artifact_store import open_artifact_store

        artifact_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"optuna-nos/{study.study_name}/plot"))
        store = open_artifact_store(self.artifact_dir)
        store.write(artifact_id, io.BytesIO(fitness_plot_png(study, trials)))
        key = f"artifacts:{artifact_id}"
        if key not in study._storage.get_study_system_attrs(study._study_id):
            meta = {
                "artifact_id": artifact_id,
                "filename": _PLOT_NAME,
                "mimetype": "image/png",
                "encoding": None,
            }
            study._storage.set_study_system_attr(study._study_id, key, json.dumps(meta))
        return artifact_url(study._study_id, None, artifact_id)
