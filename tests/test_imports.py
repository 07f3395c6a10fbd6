"""The import graph of ``xalign/``: no cycle, and no module imports the root package.

Read from the source (``ast``), as the plugin boundary test in ``tests/test_plugins.py`` does:
every ``import`` / ``from ... import`` of a module under ``xalign/`` counts, also those inside
functions (they only postpone a cycle to run time); imports under ``if TYPE_CHECKING:`` do not
(they never run). ``from xalign.pkg import name`` is an edge to ``xalign.pkg.name`` when that
is a module, else to ``xalign.pkg``. Importing ``xalign.a.b`` also runs ``xalign/a/__init__.py``;
that edge is left out here (a package's ``__init__`` re-exporting its modules is no cycle of
its own): the graph is the modules a module names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xalign"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement but those in an ``if TYPE_CHECKING:`` body (its ``else`` runs)."""
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module of a (possibly relative) ``from`` import in ``module``."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> list[tuple[int, str]]:
    """(line, imported xalign module) of every import ``module`` runs, root package included."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out: list[tuple[int, str]] = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "xalign"]
            continue
        source = _absolute(module, node)
        if source.split(".")[0] != "xalign":
            continue
        if source == "xalign":  # `from xalign import name` runs the root package, module or not
            out.append((node.lineno, "xalign"))
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            out.append((node.lineno, sub if sub in MODULES else source))
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the xalign modules it imports (the root package left out: tested apart)."""
    return {
        m: {t for _, t in imports_of(m) if t in MODULES and t not in (m, "xalign")} for m in MODULES
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one
    cycle through all of its modules where there is one, else its sorted members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return [_a_cycle(c, edges) for c in found]


def _a_cycle(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module (what to cut), closed."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges[v] & members):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    return component  # pragma: no cover - a component always has a cycle


def describe(cycle: list[str]) -> str:
    return " -> ".join(cycle)


# -- the checker itself, on hand-made graphs and sources ---------------------------------------
def test_cycles_finds_each_component_and_ignores_dags() -> None:
    dag = {"a": {"b", "c"}, "b": {"c"}, "c": set()}
    assert cycles(dag) == []
    two = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}, "e": {"a"}}
    assert sorted(map(tuple, cycles(two))) == [("a", "b", "a"), ("c", "d", "c")]
    ring = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert cycles(ring) == [["a", "b", "c", "a"]]


def test_import_reader_counts_function_imports_not_type_checking(tmp_path: Path) -> None:
    source = (
        "from __future__ import annotations\n"
        "import typing\n"
        "from typing import TYPE_CHECKING\n"
        "import xalign.errors\n"
        "if TYPE_CHECKING:\n"
        "    from xalign.config import RunConfig\n"
        "if typing.TYPE_CHECKING:\n"
        "    import xalign.recipe\n"
        "else:\n"
        "    import xalign.batch\n"
        "def f():\n"
        "    from xalign.links import LinkSpec\n"
        "    from xalign import ot\n"
        "    import xalign\n"
    )
    nodes = _import_nodes(ast.parse(source))
    names = [
        n.names[0].name if isinstance(n, ast.Import) else f"{n.module}:{n.names[0].name}"
        for n in nodes
    ]
    assert names == [
        "__future__:annotations",
        "typing",
        "typing:TYPE_CHECKING",
        "xalign.errors",
        "xalign.batch",
        "xalign.links:LinkSpec",
        "xalign:ot",
        "xalign",
    ]


def test_relative_imports_resolve() -> None:
    node = ast.parse("from ..errors import XalignError").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _absolute("xalign.data.prepare", node) == "xalign.errors"
    node = ast.parse("from . import sampler").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _absolute("xalign.data", node) == "xalign.data"


# -- xalign itself ------------------------------------------------------------------------------
def test_every_module_is_read() -> None:
    assert {"xalign", "xalign.recipe", "xalign.plugins", "xalign.data.prepare"} <= set(MODULES)
    edges = graph()
    assert "xalign.errors" in edges["xalign.config"]  # a module-level import
    assert "xalign.hookspecs" in edges["xalign.plugins"]


def test_no_module_imports_the_root_package() -> None:
    """``import xalign`` / ``from xalign import name`` inside ``xalign/`` runs the root
    ``__init__`` (the whole public API) from a module it imports: a cycle by construction.
    ``__version__`` is in ``xalign._version``; everything else in its own module."""
    offenders = [
        f"{MODULES[m].relative_to(ROOT)}:{line}: imports the root package"
        for m in MODULES
        if m != "xalign"
        for line, target in imports_of(m)
        if target == "xalign"
    ]
    assert offenders == [], "\n".join(offenders)


def test_no_import_cycle_inside_xalign() -> None:
    """No cycle among the modules under ``xalign/``, function-level imports included."""
    found = cycles(graph())
    assert found == [], "import cycles:\n" + "\n".join(map(describe, found))


if __name__ == "__main__":  # pragma: no cover - `python tests/test_imports.py`: the cycles
    for c in cycles(graph()):
        print(describe(c))
    pytest.main([__file__, "-q"])
