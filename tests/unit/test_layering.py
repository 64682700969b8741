"""The import graph of ``tastegraph`` has no cycles and no import goes up the layers.

Layers, top to bottom (an import may go down or sideways, never up):

5. entry points: ``cli``, ``demo`` and ``evaluation`` (which builds a catalog with the
   product's own pipeline and measures it end to end, as a user would through the CLI);
4. ``app``, ``server``: the composition root and the process runner, may import anything below;
3. ``api``, ``web``, ``workers``: adapters and background roles, handed a built app or services;
2. services: ``catalog``, ``search``, ``feed``, ``recs``, ``engagement``, ``people``;
1. engines and ports: ``index``, ``models``, ``imaging``, ``store``, ``eligibility``;
0. ``domain``, ``settings``, ``errors`` and small utilities (``lazy``, ``progress``).

Module-level and function-level imports both count; imports under ``if TYPE_CHECKING:`` do
not (they never run). A new package must be given a layer here, or the test fails.
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = "tastegraph"

LAYERS: dict[str, int] = {
    "__init__": 0,
    "domain": 0,
    "access": 0,
    "settings": 0,
    "errors": 0,
    "lazy": 0,
    "progress": 0,
    "extras": 0,
    "index": 1,
    "models": 1,
    "imaging": 1,
    "store": 1,
    "eligibility": 1,
    "catalog": 2,
    "search": 2,
    "feed": 2,
    "engagement": 2,
    "people": 2,
    "api": 3,
    "web": 3,
    "workers": 3,
    "app": 4,
    "server": 4,
    "cli": 5,
    "demo": 5,
    "evaluation": 5,
}

# Known edges, each removed by the helper named once its branch is merged. An edge listed here
# is left out of both checks. (importer prefix, imported prefix)
KNOWN: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if "migrations" in parts:  # alembic scripts: loaded by path, not imported
            continue
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """``(imported name, line)`` for every import that can run (not under TYPE_CHECKING)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            # ``from pkg import sub`` imports the module ``pkg.sub``; ``from pkg import name``
            # imports ``pkg`` (``_resolve`` falls back to the longest module named).
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest module of ours that ``name`` names (``a.b.func`` -> ``a.b``)."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in modules:
            return cand
        parts.pop()
    return None


def _known(src: str, dst: str) -> bool:
    return any(
        (src == a or src.startswith(a + ".")) and (dst == b or dst.startswith(b + "."))
        for a, b in KNOWN
    )


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line}, our modules only, known exceptions left out."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = {}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: dict[str, int] = {}
        for name, line in _imports(tree, mod, path.name == "__init__.py"):
            if not name.startswith(ROOT):
                continue
            dst = _resolve(name, modules)
            if dst is None or dst in (mod, ROOT) or _known(mod, dst):
                continue
            edges.setdefault(dst, line)
        graph[mod] = edges
    return graph


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each as a chain."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(_chain(graph, set(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _chain(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """One cycle through ``comp``, as ``a -> b -> ... -> a``."""
    start = min(comp)
    path, seen = [start], {start}
    node = start
    while True:
        nxt = sorted(w for w in graph[node] if w in comp)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return [*path, start]
        fresh = [w for w in nxt if w not in seen]
        if not fresh:
            return [*path, start]
        node = fresh[0]
        path.append(node)
        seen.add(node)


GRAPH = import_graph()


def test_every_package_has_a_layer() -> None:
    missing = sorted({_package(m) for m in GRAPH} - set(LAYERS))
    assert not missing, f"give these a layer in LAYERS: {missing}"


def test_no_import_goes_up_the_layers() -> None:
    bad = []
    for mod, edges in sorted(GRAPH.items()):
        for dst, line in sorted(edges.items()):
            a, b = LAYERS.get(_package(mod), 0), LAYERS.get(_package(dst), 0)
            if b > a:
                bad.append(f"{mod}:{line} -> {dst} (layer {a} imports layer {b})")
    assert not bad, "imports that go up the layers:\n" + "\n".join(bad)


def test_no_cycle_between_modules() -> None:
    graph = {m: set(e) for m, e in GRAPH.items()}
    found = [" -> ".join(c) for c in _cycles(graph)]
    assert not found, "import cycles between modules:\n" + "\n".join(found)


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, edges in GRAPH.items():
        for dst in edges:
            if _package(dst) != _package(mod):
                graph[_package(mod)].add(_package(dst))
    found = [" -> ".join(c) for c in _cycles(dict(graph))]
    if found:
        # Name one module edge per package edge, so the chain says where to look.
        where = []
        for chain in found:
            parts = chain.split(" -> ")
            for a, b in itertools.pairwise(parts):
                edge = next(
                    f"{m}:{GRAPH[m][d]} -> {d}"
                    for m in sorted(GRAPH)
                    if _package(m) == a
                    for d in sorted(GRAPH[m])
                    if _package(d) == b
                )
                where.append(f"  {a} -> {b}: {edge}")
        pytest.fail("import cycles between packages:\n" + "\n".join(found + where))


def test_the_checker_sees_a_cycle_and_ignores_type_checking() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import tastegraph.app\n"
        "def f():\n    from tastegraph import search\n"
    )
    names = {n for n, _ in _imports(tree, "tastegraph.x", False)}
    assert "tastegraph.app" not in names and "tastegraph.search" in names
