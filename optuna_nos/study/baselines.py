"""One worker per study scores the objective's baselines: a claim no two workers both win.

The claim is the creation of a marker study named ``<study>:baselines``: study names are
unique in every Optuna storage, so exactly one of any number of racing workers creates it
(the others get :class:`optuna.exceptions.DuplicatedStudyError`). The winner scores the
baselines, writes them to the study user attr ``nos.baselines`` and deletes the marker.
A winner that dies before writing leaves the marker behind: the study then has no baselines
until someone runs ``optuna-nos run`` on it or deletes the marker study.
"""

from __future__ import annotations

from typing import Any

import optuna

from optuna_nos.study.stored import BASELINES_ATTR, BASELINES_MARKER_SUFFIX

__all__ = ["claim_baselines", "marker_name", "release_baselines"]


def marker_name(study: optuna.Study) -> str:
    return f"{study.study_name}{BASELINES_MARKER_SUFFIX}"


def claim_baselines(study: optuna.Study, objective: Any) -> bool:
    """True when this process should score ``objective``'s baselines for ``study`` now."""
    if not getattr(objective, "baselines", ()) or BASELINES_ATTR in study.user_attrs:
        return False
    try:
        study._storage.create_new_study(
            directions=[optuna.study.StudyDirection.MAXIMIZE], study_name=marker_name(study)
        )
    except optuna.exceptions.DuplicatedStudyError:
        return False
    if BASELINES_ATTR in study.user_attrs:  # scored (and released) since the first check
        release_baselines(study)
        return False
    return True


def release_baselines(study: optuna.Study) -> None:
    """Delete the claim's marker study."""
    storage = study._storage
    storage.delete_study(storage.get_study_id_from_name(marker_name(study)))
