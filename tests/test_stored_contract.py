"""The stored wire format is named in one module: optuna_nos.study.stored."""

from __future__ import annotations

import ast
from pathlib import Path

import optuna

from optuna_nos.core.errors import NOSError
from optuna_nos.study import stored

ROOT = Path(__file__).resolve().parent.parent
TREES = ("optuna_nos", "proxy", "transfer", "bench", "testkit")
CONTRACT = ROOT / "optuna_nos" / "study" / "stored.py"
#: Every attr name the contract defines (the ``*_ATTR`` constants).
NAMES = {value for key, value in vars(stored).items() if key.endswith("_ATTR")}
#: Calls whose first string argument (or second, after a trial/study id) is an attr key.
ATTR_CALLS = {
    "set_user_attr",
    "set_system_attr",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "set_study_user_attr",
    "set_study_system_attr",
}
ATTR_MAPS = {"user_attrs", "system_attrs", "attrs"}


def _sources() -> list[Path]:
    return [
        path for tree in TREES for path in sorted((ROOT / tree).rglob("*.py")) if path != CONTRACT
    ]


def _name(node: ast.expr) -> str:
    """``attrs`` for ``attrs`` and ``trial.attrs``; empty for anything else."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _attr_key_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String literals naming a stored attr: any ``nos:``/``nos.`` name, and a bare user attr
    name used as a key of an attr call, an attr map's ``get`` or subscript, or ``in``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in NAMES
            and node.value.startswith(("nos:", "nos."))
        ):
            found.append((node.lineno, node.value))
        keys: list[ast.expr] = []
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ATTR_CALLS:
                keys = list(node.args[:2])
            elif node.func.attr == "get" and _name(node.func.value) in ATTR_MAPS:
                keys = list(node.args[:1])
        elif isinstance(node, ast.Subscript) and _name(node.value) in ATTR_MAPS:
            keys = [node.slice]
        found += [
            (key.lineno, str(key.value))
            for key in keys
            if isinstance(key, ast.Constant) and key.value in NAMES
        ]
    return found


def test_no_stored_attr_name_is_spelled_outside_the_contract() -> None:
    offences = [
        f"{path.relative_to(ROOT)}:{line}: {value!r}"
        for path in _sources()
        for line, value in _attr_key_literals(ast.parse(path.read_text()))
    ]
    assert not offences, "stored attr names outside optuna_nos/study/stored.py:\n" + "\n".join(
        sorted(set(offences))
    )


def test_the_grep_finds_a_planted_literal() -> None:
    planted = ast.parse(
        'trial.set_user_attr("nos.reason", "x")\ntrial.user_attrs.get("slot")\nx = "nos:slot"\n'
    )
    assert {value for _, value in _attr_key_literals(planted)} == {
        "nos.reason",
        "slot",
        "nos:slot",
    }


def test_the_ga_record_round_trips_and_refuses_another_version() -> None:
    study = optuna.create_study()
    storage, study_id = study._storage, study._study_id
    assert stored.read_ga_record(storage, study_id) is None
    record = stored.ga_record({"n_particles": 2}, 7, "paper", {"paper_mode": False})
    stored.write_ga_record(storage, study_id, record)
    assert stored.read_ga_record(storage, study_id) == record
    assert record["version"] == stored.GA_RECORD_VERSION
    storage.set_study_system_attr(
        study_id, stored.GA_CONFIG_ATTR, {**record, "version": stored.GA_RECORD_VERSION + 1}
    )
    try:
        stored.read_ga_record(storage, study_id)
    except NOSError as exc:
        assert "format version" in str(exc)
    else:
        raise AssertionError("a record of another version was read")


def test_a_record_without_a_version_is_version_1() -> None:
    study = optuna.create_study()
    storage, study_id = study._storage, study._study_id
    storage.set_study_system_attr(study_id, stored.GA_CONFIG_ATTR, {"space": "paper"})
    assert stored.read_ga_record(storage, study_id) == {"space": "paper"}


def test_workers_may_differ_in_seed_only() -> None:
    base = stored.ga_record({"n_particles": 2}, 1, "paper", {})
    stored.check_ga_record("s", base, {**base, "seed": 2})
    try:
        stored.check_ga_record("s", base, {**base, "space": "adam_variants"})
    except NOSError as exc:
        assert "space='adam_variants'" in str(exc)
    else:
        raise AssertionError("a different space was accepted")
