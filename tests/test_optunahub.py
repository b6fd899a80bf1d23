"""The OptunaHub package under hub/: it loads with ``optunahub.load_local_module``, exports
this package's own classes (not copies), and its example runs a whole search."""

from __future__ import annotations

import runpy
from pathlib import Path

import optuna
import pytest

import optuna_nos

optunahub = pytest.importorskip("optunahub")

REGISTRY = Path(__file__).resolve().parent.parent / "hub" / "package"
PACKAGE = "samplers/particle_nos"


def _load() -> object:
    return optunahub.load_local_module(PACKAGE, registry_root=str(REGISTRY))


def test_registry_layout() -> None:
    folder = REGISTRY / PACKAGE
    assert {"__init__.py", "README.md", "LICENSE", "example.py"} <= {
        p.name for p in folder.iterdir()
    }
    front = (folder / "README.md").read_text().split("---")[1]
    for key in ("author:", "title:", "description:", "tags:", "optuna_versions:", "license:"):
        assert key in front
    assert "sampler" in front.split("tags:")[1].splitlines()[0]


def test_loads_this_package_classes() -> None:
    module = _load()
    for name in module.__all__:  # type: ignore[attr-defined]
        assert getattr(module, name) is getattr(optuna_nos, name)


@pytest.mark.slow
def test_example_runs_a_whole_search(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def load_module(package: str, **_: object) -> object:
        return optunahub.load_local_module(package, registry_root=str(REGISTRY))

    monkeypatch.setattr(optunahub, "load_module", load_module)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    namespace = runpy.run_path(str(REGISTRY / PACKAGE / "example.py"), run_name="__main__")
    study, sampler = namespace["study"], namespace["sampler"]
    assert sampler.is_finished(study)  # every slot of the GA decided
    assert study.best_trial.state == optuna.trial.TrialState.COMPLETE
    assert len(study.trials) >= sampler.n_slots
    assert "best fitness" in capsys.readouterr().out
