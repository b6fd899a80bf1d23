"""No file of the project cites working notes that users do not have.

The code, tests, configs, benches, README and docs/ state rules and sources themselves (the paper,
the released code, its search log); a pointer such as a section number of an unpublished
specification or design note means nothing to a reader of the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Whole words only, case-sensitive; built from parts so that this file does not match itself.
INTERNAL_REF = re.compile(r"\b(" + "SP" + "EC" + "|" + "DES" + "IGN" + r")\b")

TEXT_SUFFIXES = {".py", ".toml", ".md", ".txt", ".cfg", ".ini", ".yml", ".yaml", ".sh", ".rst"}
SKIPPED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "build",
    "dist",
    "node_modules",
}


def project_text_files() -> list[Path]:
    """Every text file of the repository outside caches, environments and build outputs."""
    found = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if any(p in SKIPPED_DIRS or p.endswith(".egg-info") for p in parts):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or parts[0] == ".ci"):
            found.append(path)
    return sorted(found)


def test_the_scan_covers_the_project() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in project_text_files()}
    for expected in (
        "README.md",
        "pyproject.toml",
        "optuna_nos/core/settings.py",
        "proxy/fitness.py",
        "transfer/optimizers.py",
        "studies/paper_cifar10.toml",
        "tests/test_notation.py",
        "docs/method.md",
        "docs/architecture.md",
    ):
        assert expected in names


def test_the_pattern_matches_citations_only() -> None:
    assert INTERNAL_REF.search("the faithful column of " + "SP" + "EC section 13")
    assert INTERNAL_REF.search("(" + "DES" + "IGN.md, decision 3)")
    assert not INTERNAL_REF.search("OptimizerSpec, a spec string, SPECTRAL, design choices")


def test_no_citation_of_internal_notes() -> None:
    hits = [
        f"{path.relative_to(ROOT).as_posix()}:{n}: {line.strip()}"
        for path in project_text_files()
        for n, line in enumerate(path.read_text("utf-8", "replace").splitlines(), 1)
        if INTERNAL_REF.search(line)
    ]
    assert not hits, "\n".join(hits)
