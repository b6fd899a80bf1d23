"""The import graph of the project's packages: no cycles, and the layer arrows point one way.

Read from the source with :mod:`ast`; nothing is imported. An edge runs from a module to every
module it imports, at module level or inside a function (blocks under ``if TYPE_CHECKING:``
are left out: they never run). ``from pkg import name`` is an edge to ``pkg.name`` where that
is a module, else to ``pkg``; an edge to a package is an edge to its ``__init__``. Importing a
submodule runs its parents' ``__init__`` too, but those are not counted as edges: a package's
``__init__`` re-exporting its submodules would otherwise close a cycle with each of them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The packages whose modules make up the graph.
PACKAGES = ("optuna_nos", "proxy", "transfer", "testkit")
#: The layers of optuna_nos (its second name component) and what each may import.
LAYERS_ALLOWED = {
    "core": {"core"},
    "space": {"core", "space"},
    "optim": {"core", "space", "optim"},
    "optimizers": {"core", "space", "optim", "optimizers"},
}
#: Layers that must not import the given layers.
LAYERS_FORBIDDEN = {"study": {"cli"}, "sampler": {"cli"}}
#: Calls that load code by file path or widen the import path.
LOADERS = {
    "spec_from_file_location",
    "run_path",
    "SourceFileLoader",
    "insert",
    "append",
    "import_module",
    "__import__",
    "exec_module",
    "load_source",
}


def module_name(path: Path) -> str:
    """``a/b/c.py`` -> ``a.b.c``; ``a/b/__init__.py`` -> ``a.b``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(*folders: str) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file below the folders."""
    return {
        module_name(path): path
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*.py"))
    }


def is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` condition is ``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def executed_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of the tree outside ``if TYPE_CHECKING:`` bodies (their ``else`` kept)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def from_module(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module of ``from X import ...`` in module ``name`` (file ``path``)."""
    if not node.level:
        return node.module or ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module or ''}".strip(".")


def imported_names(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module the file imports, as full dotted names (``known`` resolves
    ``from pkg import name`` to the submodule ``pkg.name`` where there is one)."""
    targets: set[str] = set()
    for node in executed_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = from_module(name, path, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
    return targets


def resolve(target: str, known: set[str]) -> str | None:
    """The longest known module that ``target`` names or lies in; None outside the graph."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges inside the graph, every imported name) per module of :data:`PACKAGES`."""
    files = source_files(*PACKAGES)
    known = set(files)
    raw = {name: imported_names(name, path, known) for name, path in files.items()}
    edges = {
        name: {m for t in targets if (m := resolve(t, known)) is not None}
        for name, targets in raw.items()
    }
    return edges, raw


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of size > 1, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """For every edge inside a strongly connected component, the shortest cycle through it
    (``[a, b, ..., a]``), each cycle once."""
    result: dict[frozenset[tuple[str, str]], list[str]] = {}
    for component in strongly_connected(edges):
        members = set(component)
        for start in component:
            for first in sorted(edges[start] & members):
                path = shortest_path(edges, first, start, members)
                cycle = [start, *path]
                key = frozenset(zip(cycle, cycle[1:], strict=False))
                result.setdefault(key, cycle)
    return sorted(result.values(), key=lambda c: (len(c), c))


def shortest_path(
    edges: dict[str, set[str]], source: str, goal: str, members: set[str]
) -> list[str]:
    """Breadth-first shortest path from ``source`` to ``goal`` inside ``members``."""
    parent: dict[str, str | None] = {source: None}
    queue = [source]
    for v in queue:
        if v == goal:
            break
        for w in sorted(edges[v] & members):
            if w not in parent:
                parent[w] = v
                queue.append(w)
    path: list[str] = []
    node: str | None = goal
    while node is not None:
        path.append(node)
        node = parent[node]
    return path[::-1]


def enclosing_imports(name: str, path: Path, known: set[str]) -> list[str]:
    """The file's imports of names from a package it lies in (``import P``, or ``from P import
    x`` where ``P.x`` is not a module).

    Python runs a package's ``__init__`` before any of its modules, so a module that imports
    from its own package reads a half-run ``__init__`` whenever the import starts at the module;
    siblings are imported by their own names instead (``from P import sibling`` is fine: it
    imports the module ``P.sibling``).
    """
    parts = name.split(".")
    if path.name != "__init__.py":
        parts.pop()
    enclosing = {".".join(parts[:end]) for end in range(1, len(parts) + 1)}
    found = []
    for node in executed_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name in enclosing]
        elif isinstance(node, ast.ImportFrom):
            base = from_module(name, path, node)
            found += [
                f"{base}.{alias.name} (line {node.lineno})"
                for alias in node.names
                if base in enclosing and f"{base}.{alias.name}" not in known
            ]
    return found


def test_modules_import_siblings_not_their_package() -> None:
    files = source_files(*PACKAGES)
    bad = [
        f"{name} imports {target}"
        for name, path in files.items()
        if path.name != "__init__.py"
        for target in enclosing_imports(name, path, set(files))
    ]
    assert not bad, "\n".join(bad)


def layer(module: str) -> str | None:
    """The layer of an optuna_nos module (``optuna_nos.space.genome`` -> ``space``)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "optuna_nos" and len(parts) > 1 else None


def test_the_graph_sees_the_known_edges() -> None:
    edges, _ = graph()
    assert "optuna_nos.space.compute" in edges["optuna_nos.space"]
    assert "optuna_nos.core.errors" in edges["optuna_nos.space.genome"]
    assert all(edges[m] <= set(edges) for m in edges)


def test_cycle_finder_on_a_known_graph() -> None:
    edges = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert cycles(edges) == [["d", "d"], ["a", "b", "a"], ["b", "c", "a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_edges_of_a_known_file(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "import p.q\n"
        "from p import sub, name\n"
        "from .sibling import x\n"
        "if TYPE_CHECKING:\n"
        "    import hidden\n"
        "else:\n"
        "    import shown\n"
        "def f():\n"
        "    from p.deep import y\n"
    )
    known = {"p", "p.q", "p.sub", "p.deep", "pkg.sibling"}
    assert imported_names("pkg.m", path, known) == {
        "typing",
        "p.q",
        "p.sub",
        "p",
        "pkg.sibling",
        "shown",
        "p.deep",
    }
    assert resolve("p.deep.y", known) == "p.deep" and resolve("numpy", known) is None


def test_no_import_cycles() -> None:
    found = cycles(graph()[0])
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_optuna_nos_layers_point_down() -> None:
    edges, raw = graph()
    bad = []
    for module, targets in sorted(edges.items()):
        own = layer(module)
        if own is None:
            continue
        for target in sorted(targets):
            other = layer(target)
            if other is None:
                continue
            if own in LAYERS_ALLOWED and other not in LAYERS_ALLOWED[own]:
                bad.append(f"{module} -> {target}")
            if other in LAYERS_FORBIDDEN.get(own, ()):
                bad.append(f"{module} -> {target}")
    assert not bad, "layer arrows broken:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("importer", "forbidden"),
    [
        ("optuna_nos", ("proxy", "transfer", "testkit", "tests", "bench")),
        ("proxy", ("transfer", "tests", "bench")),
    ],
)
def test_packages_do_not_import_upward(importer: str, forbidden: tuple[str, ...]) -> None:
    _, raw = graph()
    bad = [
        f"{module} -> {target}"
        for module, targets in sorted(raw.items())
        if module.split(".")[0] == importer
        for target in sorted(targets)
        if target.split(".")[0] in forbidden
    ]
    assert not bad, "\n".join(bad)


def assigned_strings(tree: ast.AST) -> dict[str, list[str]]:
    """Name -> the string constants in every expression assigned to it in the file."""
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            strings = [
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            ]
            for target in targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, []).extend(strings)
    return found


def loads_by_path(tree: ast.AST, folder: str) -> list[int]:
    """Lines of loader calls (:data:`LOADERS`) whose arguments name ``folder`` as a string,
    directly or through a name assigned in the same file."""
    strings = assigned_strings(tree)
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called not in LOADERS:
            continue
        seen: list[str] = []
        names: list[str] = []
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            for sub in ast.walk(arg):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    seen.append(sub.value)
                elif isinstance(sub, ast.Name):
                    names.append(sub.id)
        done: set[str] = set()
        while names:
            name = names.pop()
            if name not in done:
                done.add(name)
                seen.extend(strings.get(name, ()))
        if any(folder in Path(s).parts or s.startswith(folder + ".") or s == folder for s in seen):
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize(("importer", "forbidden"), [("tests", "bench"), ("bench", "tests")])
def test_tests_and_bench_stay_apart(importer: str, forbidden: str) -> None:
    bad = []
    for name, path in source_files(importer).items():
        tree = ast.parse(path.read_text(), str(path))
        bad += [
            f"{name} imports {target}"
            for target in sorted(imported_names(name, path, set()))
            if target.split(".")[0] == forbidden
        ]
        bad += [
            f"{name}:{line} loads from {forbidden}/" for line in loads_by_path(tree, forbidden)
        ]
    assert not bad, "\n".join(bad)
