"""README.md and docs/ stay true: every Python snippet runs as written (each on its own in a
fresh interpreter), every relative link and every file path they name exists, and the stored
attr names of the docs are exactly the ones the code writes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.process import run_argv

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOC_PAGES]


def _snippets(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text("utf-8"), re.S)


SNIPPETS = _snippets(README)
DOC_SNIPPETS = [(page.name, snippet) for page in DOC_PAGES for snippet in _snippets(page)]


def _run(snippet: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_argv([sys.executable, "-W", "error::UserWarning", "-c", snippet], cwd, 600)


def test_the_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 3


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index: int, tmp_path: Path) -> None:
    done = _run(SNIPPETS[index], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("page", "snippet"),
    DOC_SNIPPETS,
    ids=[f"{page}-{i}" for i, (page, _) in enumerate(DOC_SNIPPETS)],
)
def test_docs_snippet_runs(page: str, snippet: str, tmp_path: Path) -> None:
    done = _run(snippet, tmp_path)
    assert done.returncode == 0, f"{page}: {done.stderr[-3000:]}"


# -- links and paths ---------------------------------------------------------------------------


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces -> -."""
    headings = re.findall(r"^#+ (.+)$", path.read_text("utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_docs_exist_and_the_readme_links_them() -> None:
    names = {page.name for page in DOC_PAGES}
    assert {"README.md", "method.md", "paper-mode.md", "architecture.md", "extending.md"} <= names
    text = README.read_text("utf-8")
    for name in ("method.md", "paper-mode.md", "architecture.md", "extending.md"):
        assert f"(docs/{name}" in text, name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text("utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # an external address
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{page.name}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: no heading for {target}"


#: A repository path written in code style: a top-level folder of the project, then a path.
_PATH = re.compile(r"`((?:optuna_nos|proxy|transfer|studies|tests|bench|deploy)/[\w./-]*)`")


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_named_files_exist(page: Path) -> None:
    for path in _PATH.findall(page.read_text("utf-8")):
        found = (ROOT / path).exists() or (ROOT / f"{path}.py").exists()  # a module, by name
        assert found, f"{page.name} names {path}, which does not exist"


def test_docs_pages_named_in_the_code_exist() -> None:
    named = {
        (source.relative_to(ROOT).as_posix(), page)
        for package in ("optuna_nos", "proxy", "transfer")
        for source in (ROOT / package).rglob("*.py")
        for page in re.findall(r"docs/[\w-]+\.md", source.read_text("utf-8"))
    }
    assert named, "no docs page named in the code"
    missing = sorted((source, page) for source, page in named if not (ROOT / page).exists())
    assert missing == []


# -- the stored contract -----------------------------------------------------------------------

#: An optuna-nos storage key in code: ``nos:name`` (system attr) or ``nos.name`` (user attr).
_ATTR = re.compile(r"""["'](nos[:.][a-z_]+)["']""")
_DOC_ATTR = re.compile(r"`(nos[:.][a-z_]+)`")


def _code_attr_names() -> set[str]:
    names: set[str] = set()
    for package in ("optuna_nos", "proxy", "transfer"):
        for source in (ROOT / package).rglob("*.py"):
            names |= set(_ATTR.findall(source.read_text("utf-8")))
    return names


def test_architecture_lists_exactly_the_stored_attrs() -> None:
    code = _code_attr_names()
    documented = set(_DOC_ATTR.findall((ROOT / "docs" / "architecture.md").read_text("utf-8")))
    assert code, "no stored attr names found in the code"
    assert sorted(code - documented) == [], "stored by the code but not documented"
    assert sorted(documented - code) == [], "documented but not stored by the code"


def test_paper_mode_page_names_every_switch() -> None:
    from optuna_nos.core.settings import Settings

    text = (ROOT / "docs" / "paper-mode.md").read_text("utf-8")
    switches = [name for name, value in vars(Settings).items() if isinstance(value, property)]
    fields = ["paper_mode", "unary_root_decay_prob", "change_op_max_unary"]
    assert switches
    for name in switches + fields:
        assert f"`{name}`" in text, name


# -- the layers ------------------------------------------------------------------------------


def _layer_table_names() -> set[str]:
    """The module and package names in the modules column of docs/architecture.md's layer
    table."""
    text = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    section = text.split("## The layers of `optuna_nos`", 1)[1].split("\n## ", 1)[0]
    cells = [line.split("|")[2] for line in section.splitlines() if line.startswith("|")]
    return {name.rstrip("/") for cell in cells for name in re.findall(r"`([\w/]+)`", cell)}


def test_the_layer_table_names_every_module_by_name() -> None:
    """Names, not paths, so the table stays true when a module moves to another folder."""
    package = ROOT / "optuna_nos"
    listed = _layer_table_names()
    present = {p.stem for p in package.rglob("*.py")} | {
        p.name for p in package.rglob("*") if p.is_dir()
    }
    assert sorted(listed - present) == [], "named in the layer table but not in optuna_nos"
    modules = {
        p.stem
        for p in package.rglob("*.py")
        if not p.stem.startswith("_") and "optimizers" not in p.parts
    }
    assert sorted(modules - listed) == [], "modules of optuna_nos missing from the layer table"
