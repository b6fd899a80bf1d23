"""What optuna-dashboard shows of a finished search, read through its HTTP API."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from optuna_nos.study.dashboard import METRIC_NAME
from testkit.dashboard import dashboard, get_json, run_showcase_study


def _attrs(entity: dict[str, Any]) -> dict[str, str]:
    return {a["key"]: a["value"] for a in entity["user_attrs"]}


def _png(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(8)


@pytest.mark.subprocess
@pytest.mark.slow
def test_dashboard_shows_the_search(tmp_path: Path) -> None:
    done = run_showcase_study(tmp_path)
    assert done.returncode == 0, done.stderr
    with dashboard(tmp_path) as base:
        study_id = get_json(f"{base}/api/studies")["study_summaries"][0]["study_id"]
        detail = get_json(f"{base}/api/studies/{study_id}")
        assert detail["objective_names"] == [METRIC_NAME]

        complete = next(t for t in detail["trials"] if t["state"] == "Complete")
        keys = [a["key"] for a in complete["user_attrs"]]
        assert keys[0] == "equation" and "genome" not in keys
        assert all(len(a["value"]) <= 200 for a in complete["user_attrs"])
        note = complete["note"]["body"]
        equation = _attrs(complete)["equation"]
        assert f"**`{equation}`**" in note and "LaTeX: `" in note and "| fidelity |" in note
        fidelity = _attrs(complete)["fidelity"]
        assert float(_attrs(complete)[f"fitness ({fidelity})"]) == complete["values"][0]
        artifact = complete["artifacts"][0]["artifact_id"]
        assert f"/artifacts/{study_id}/{complete['trial_id']}/{artifact}" in note

        pruned = [t for t in detail["trials"] if t["state"] == "Pruned"]
        assert pruned, "the showcase study has pruned trials"
        for trial in pruned:
            reason = _attrs(trial)["nos.reason"]
            assert trial["note"]["body"].startswith(f"**Pruned**: {reason}")
            url = (
                f"{base}/artifacts/{study_id}/{trial['trial_id']}/"
                f"{trial['artifacts'][0]['artifact_id']}"
            )
            assert _png(url) == b"\x89PNG\r\n\x1a\n"

        study_note = detail["note"]["body"]
        assert "### Leaderboard" in study_note and "baseline adam" in study_note
        assert "### Lineage of the best genome" in study_note
        plot = detail["artifacts"][0]
        assert f"/artifacts/{study_id}/{plot['artifact_id']}" in study_note
        assert _png(f"{base}/artifacts/{study_id}/{plot['artifact_id']}") == b"\x89PNG\r\n\x1a\n"
        best = _attrs(detail)["best equation"]
        assert f"`{best}`" in study_note.split("### Leaderboard")[1].split("\n| 1 |")[1]
