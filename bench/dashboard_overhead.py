"""What the dashboard view costs a worker: a search with trial notes and study-view refreshes
against the same search without them, measured in the same run (ratio 1.0 = free).

The study view refreshes after every trial here (``min_interval=0``), a worst case: workers
refresh at most every 30 s. Uses the fast test objective (an integrity check per trial), so
the ratio bounds the overhead on any real objective, whose trials take far longer.

    python bench/dashboard_overhead.py [MIN_INTERVAL_S]   # default 0
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import optuna

from optuna_nos import DivergencePruner, ParticleSampler, StopWhenFinished
from optuna_nos.core.settings import DEFAULT_SETTINGS
from optuna_nos.study.dashboard import StudyView, describe_trial
from testkit.objectives import fast


def search(folder: Path, with_view: bool, interval: float) -> tuple[float, int]:
    storage = f"sqlite:///{folder / ('view.db' if with_view else 'plain.db')}"
    study = optuna.create_study(
        storage=storage,
        direction="maximize",
        pruner=DivergencePruner(),
        sampler=ParticleSampler(n_particles=3, init_factor=2, steps=2, mutations=2, seed=0),
    )
    config = SimpleNamespace(space="paper", settings=DEFAULT_SETTINGS, artifact_dir=None)
    callbacks: list = [StopWhenFinished()]
    if with_view:
        callbacks += [describe_trial, StudyView(str(folder / "art"), min_interval=interval)]
    start = time.perf_counter()
    study.optimize(fast(config), callbacks=callbacks)
    return time.perf_counter() - start, len(study.trials)


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    with tempfile.TemporaryDirectory() as tmp:
        plain, n_plain = search(Path(tmp), with_view=False, interval=interval)
        viewed, n_viewed = search(Path(tmp), with_view=True, interval=interval)
    print(
        f"plain {plain:.2f} s ({n_plain} trials), with notes and a study view refreshed "
        f"at most every {interval:g} s {viewed:.2f} s ({n_viewed} trials): ratio "
        f"{viewed / plain:.2f}, "
        f"{(viewed - plain) / n_viewed * 1000:.0f} ms per trial"
    )


if __name__ == "__main__":
    main()
