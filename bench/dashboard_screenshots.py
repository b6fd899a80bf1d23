"""Screenshots of optuna-dashboard on a small finished search, as a person sees it.

Runs the showcase study (``testkit/dashboard.py``), serves it with optuna-dashboard and
takes headless Chromium screenshots (1400 px wide) of the study page, a complete trial, a
pruned trial and the study note. Not part of CI: it needs Debian's ``chromium``.

    python bench/dashboard_screenshots.py --out /tmp/shots
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from testkit.dashboard import dashboard, get_json, run_showcase_study

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",
)


def screenshot(browser: str, url: str, path: Path, height: int = 1600) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                *_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size=1400,{height}",
                f"--screenshot={path}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium not found (apt-get install -y chromium)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        done = run_showcase_study(folder)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        with dashboard(folder) as base:
            study_id = get_json(f"{base}/api/studies")["study_summaries"][0]["study_id"]
            trials = get_json(f"{base}/api/studies/{study_id}")["trials"]
            complete = next(t["number"] for t in trials if t["state"] == "Complete")
            pruned = next(t["number"] for t in trials if t["state"] == "Pruned")
            pages = {
                "study": f"{base}/dashboard/studies/{study_id}",
                "trial_complete": f"{base}/dashboard/studies/{study_id}/trials?numbers={complete}",
                "trial_pruned": f"{base}/dashboard/studies/{study_id}/trials?numbers={pruned}",
                "study_note": f"{base}/dashboard/studies/{study_id}/note",
            }
            for name, url in pages.items():
                path = args.out / f"{name}.png"
                screenshot(browser, url, path)
                print(f"{path}: {url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
