"""Secrets and exposure: storage passwords never leak; no code runs data; the dashboard is local.

* A password in the storage URL never appears in any output of the ``optuna-nos`` command
  (progress bar and logs included), in its error messages, or in any study/trial attribute.
  The test server uses trust authentication, so any password is accepted and ignored.
* The package never unpickles, ``eval``s or ``exec``s data: the sources of ``optuna_nos/``,
  ``proxy/`` and ``transfer/`` are searched (by syntax tree, so comments and ``model.eval()``
  do not count) for the constructs that run data as code.
* The README's dashboard command binds 127.0.0.1.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import optuna
import pytest

from optuna_nos.study.storage import normalize_url
from testkit.config import ga_table, objective_table, workers_table
from testkit.process import run_args, run_cli

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Sup3r-Secr3t-7f1c"
CONFIG = ga_table(mutations=1) + objective_table("fast") + workers_table(2, 5, 2)


def _with_password(url: str) -> str:
    """``postgresql://user@host/db`` -> ``postgresql://user:PASSWORD@host/db``."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PASSWORD}@{host}"


@pytest.mark.slow
@pytest.mark.subprocess
def test_password_never_in_output_errors_or_attrs(postgres_url: str, tmp_path: Path) -> None:
    url = _with_password(postgres_url)
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    outputs = []
    run = run_cli(*run_args(config, url, "s"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr.replace(PASSWORD, "***")
    outputs.append(run)
    for args in (
        ["leaderboard"],
        ["show", "0"],
        ["export", "0"],
        ["worker", "--n-trials", "1"],
        ["show", "9999"],
        ["worker", "--study", "no-such-study"],
    ):
        rest = args if "--study" in args else [*args, "--study", "s"]
        outputs.append(run_cli(*rest, "--storage", url, cwd=tmp_path))
    # Errors that quote the URL: unknown database, refused port, a malformed URL.
    server, _ = url.rsplit("/", 1)
    for bad in (
        f"{server}/no_such_database_x",
        url.replace(":5432", ":1"),
        url.replace("@", "@@").replace("://", ":/"),
    ):
        outputs.append(run_cli("leaderboard", "--storage", bad, cwd=tmp_path))
    assert [o.returncode for o in outputs[-4:]] == [2, 2, 2, 2]
    for done in outputs:
        assert PASSWORD not in done.stdout and PASSWORD not in done.stderr, done.args
    assert "***" in outputs[-3].stderr  # the errors show the URL, password hidden

    study = optuna.load_study(study_name="s", storage=normalize_url(postgres_url))
    stored = [study.user_attrs, study._storage.get_study_system_attrs(study._study_id)]
    for trial in study.get_trials(deepcopy=False):
        stored += [trial.user_attrs, trial.system_attrs, trial.params]
    assert len(stored) > 2
    assert PASSWORD not in json.dumps(stored, default=str)


# -- no code from data ---------------------------------------------------------------------

PACKAGES = ("optuna_nos", "proxy", "transfer")
#: Modules that turn bytes into objects by running code.
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
#: (file, name) pairs that are allowed, each with its reason.
ALLOWED = {
    # CIFAR-10 ships as Python pickles; proxy/cifar_files.py (used by proxy/ and transfer/)
    # reads them with a pickle.Unpickler subclass whose find_class admits only an explicit
    # set of numpy array-reconstruction globals, so a crafted file cannot run code.
    ("proxy/cifar_files.py", "pickle"),
}


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _keyword_true(call: ast.Call, name: str) -> bool:
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def unsafe_uses(path: Path, tree: ast.AST) -> list[tuple[str, str, int]]:
    """(file, construct, line) for every construct that could run data as code."""
    rel = path.relative_to(ROOT).as_posix()
    found: list[tuple[str, str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            found += [
                (rel, n.split(".")[0], node.lineno)
                for n in names
                if n.split(".")[0] in UNSAFE_MODULES
            ]
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in ("eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"):
                found.append((rel, name, node.lineno))
            elif name == "torch.load" or name.endswith(".torch.load"):
                if not _keyword_true(node, "weights_only"):
                    found.append((rel, "torch.load without weights_only=True", node.lineno))
            elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                found.append((rel, name, node.lineno))
            elif _keyword_true(node, "allow_pickle"):
                found.append((rel, f"{name}(allow_pickle=True)", node.lineno))
    return found


def test_no_code_runs_data_in_the_package() -> None:
    sources = _sources()
    assert len(sources) > 20
    found = []
    for path in sources:
        found += unsafe_uses(path, ast.parse(path.read_text(encoding="utf-8")))
    offending = [f for f in found if (f[0], f[1]) not in ALLOWED]
    assert offending == []


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("import pickle\n", "pickle"),
        ("from marshal import loads\n", "marshal"),
        ("eval(text)\n", "eval"),
        ("exec(text)\n", "exec"),
        ("torch.load(path)\n", "torch.load without weights_only=True"),
        ("torch.load(path, weights_only=False)\n", "torch.load without weights_only=True"),
        ("yaml.load(text)\n", "yaml.load"),
        ("np.load(path, allow_pickle=True)\n", "np.load(allow_pickle=True)"),
    ],
)
def test_the_search_catches_each_construct(snippet: str, expected: str) -> None:
    path = ROOT / "optuna_nos" / "probe.py"
    assert [f[1] for f in unsafe_uses(path, ast.parse(snippet))] == [expected]


def test_the_search_ignores_safe_lookalikes() -> None:
    path = ROOT / "optuna_nos" / "probe.py"
    safe = (
        "model.eval()\n# pickle is never used\ntorch.load(p, weights_only=True)\nx = 'eval(1)'\n"
    )
    assert unsafe_uses(path, ast.parse(safe)) == []


def test_readme_dashboard_binds_localhost() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if re.match(r"\s*optuna-dashboard\s", line)]
    assert commands, "the README shows no optuna-dashboard command"
    for line in commands:
        assert re.search(r"--host[ =]127\.0\.0\.1(\s|$)", line), line
    assert "0.0.0.0" not in readme
