"""Per-trial PNG artifact: the genome's effective learning-rate schedule and decay curves.

The plot shows eta_t (warmup -> hold -> cosine), every active edge's decay d(t), and the
effective step size of the whole update when the root's input edges carry decays. It is
uploaded with Optuna's artifact API so optuna-dashboard serves it (``--artifact-dir``).
The directory may start with ``~`` or name environment variables (``$HOME/art``); both are
expanded on the worker. Artifacts never fail a trial: a read-only, full or unusable directory
(a dangling symbolic link, a NUL in its name) logs one warning per process, later failures
are silent.
"""

from __future__ import annotations

import logging
import os
import tempfile

import optuna

from optuna_nos.core.display import printable
from optuna_nos.core.schedules import lr_schedule
from optuna_nos.space.decays import decay_values
from optuna_nos.space.genome import ROOT, Genome, column_name
from optuna_nos.space.notation import format_decay, format_equation
from optuna_nos.space.operands import N_OPERANDS, OPERANDS

__all__ = ["plot_schedule_png", "upload_schedule_artifact"]

_logger = logging.getLogger(__name__)
_warned_dirs: set[str] = set()


def plot_schedule_png(
    genome: Genome,
    path: str,
    *,
    lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    hold_steps: int = 0,
) -> None:
    """Write a PNG of eta_t and of every active decay d(t) over t = 0..T-1 to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = range(total_steps)
    eta = lr_schedule(lr, total_steps, warmup_steps, hold_steps).numpy()
    fig, (ax_lr, ax_decay) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax_lr.plot(steps, eta, label="η_t (warmup → hold → cosine)")
    root_factor = None
    for consumer, child, decay in genome.active_edges():
        if decay is None:
            continue
        values = decay_values(decay, total_steps).numpy()
        source = OPERANDS[child].name if child < N_OPERANDS else column_name(child)
        label = f"{source} → {column_name(consumer)}: {format_decay(decay)}"
        ax_decay.plot(steps, values, label=label[:80])
        if consumer == ROOT and len(genome.root.inputs) == 1:
            root_factor = values
    if root_factor is not None:
        ax_lr.plot(steps, eta * root_factor, label="η_t × d(t) on the root's input edge")
    ax_lr.set_ylabel("learning rate")
    ax_lr.legend(fontsize=7)
    ax_decay.set_ylabel("decay d(t)")
    ax_decay.set_xlabel("step t")
    if ax_decay.lines:
        ax_decay.legend(fontsize=7)
    else:
        ax_decay.text(
            0.5, 0.5, "no decays", ha="center", va="center", transform=ax_decay.transAxes
        )
    fig.suptitle(format_equation(genome)[:100], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def upload_schedule_artifact(
    trial: optuna.trial.Trial,
    genome: Genome,
    artifact_dir: str,
    *,
    lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    hold_steps: int = 0,
) -> str | None:
    """Plot and upload the schedule PNG for ``trial``; returns the artifact id or None.

    ``artifact_dir`` is a directory (``~`` and ``$HOME`` expanded) or ``s3://BUCKET``
    (:mod:`optuna_nos.study.artifact_store`). Any failure (read-only or full directory, dangling
    symbolic link, a name the system refuses, an unreachable or refusing bucket, a plotting
    error) logs one warning per process and location, and the trial goes on.
    """
    from optuna.artifacts import upload_artifact

    from optuna_nos.study.artifact_store import open_artifact_store

    try:
        store = open_artifact_store(artifact_dir)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"schedule_trial{trial.number}.png")
            plot_schedule_png(
                genome,
                path,
                lr=lr,
                total_steps=total_steps,
                warmup_steps=warmup_steps,
                hold_steps=hold_steps,
            )
            return upload_artifact(
                artifact_store=store, file_path=path, study_or_trial=trial, mimetype="image/png"
            )
    except Exception as exc:  # noqa: BLE001 - an artifact must never fail its trial
        if artifact_dir not in _warned_dirs:
            _warned_dirs.add(artifact_dir)
            reason = (exc.strerror if isinstance(exc, OSError) else None) or exc
            _logger.warning(
                "cannot write artifacts to %s (%s); trials continue without them",
                printable(artifact_dir),
                reason,
            )
        return None
