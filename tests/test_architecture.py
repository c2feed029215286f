"""The layering README's "How it works" promises, read from every import statement in
``app/`` (lazy ones inside functions and ``TYPE_CHECKING`` blocks included):

* SQLAlchemy only under ``app/store`` and ``app/engine`` (and the migrations);
* ``app.web`` only from ``app/web`` itself, the composition root and ``app/server.py``;
* no import cycle between ``app`` packages (``app.X``);
* the agent (``app/agent``) on the standard library, its own modules and
  ``app.protocol``: it ships as one file to machines that have nothing else;
* ``app/core`` pure: no I/O libraries.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
MIGRATIONS = APP / "store" / "migrations"


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in ``path``; relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_of(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from app import web` imports app.web
                if module == "app" or module.startswith("app."):
                    yield node.lineno, f"{module}.{alias.name}"


def _sources() -> list[Path]:
    return sorted(p for p in APP.rglob("*.py") if MIGRATIONS not in p.parents)


def _top(name: str) -> str:
    return name.split(".")[0]


def _package(module: str) -> str:
    """``app.engine.engine`` -> ``app.engine``; ``app.wiring`` -> ``app.wiring``."""
    return ".".join(module.split(".")[:2])


def _is_app_module(name: str) -> bool:
    """Whether ``name`` names a module or package of app (not a name inside one)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _under(path: Path, *folders: str) -> bool:
    return any(APP / f in path.parents or path == APP / f for f in folders)


def test_sqlalchemy_only_in_the_store_and_the_engine() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{line}: {name}"
        for p in _sources()
        if not _under(p, "store", "engine")
        for line, name in _imports(p)
        if _top(name) == "sqlalchemy"
    ]
    assert found == []


def test_only_the_composition_root_and_the_server_reach_into_web() -> None:
    allowed = {APP / "wiring.py", APP / "server.py"}
    found = [
        f"{p.relative_to(ROOT)}:{line}: {name}"
        for p in _sources()
        if not _under(p, "web") and p not in allowed
        for line, name in _imports(p)
        if name == "app.web" or name.startswith("app.web.")
    ]
    assert found == []


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for p in _sources():
        source = _package(_module_of(p))
        for _line, name in _imports(p):
            if name.startswith("app.") and _is_app_module(name):
                target = _package(name)
                if target != source:
                    edges[source].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_packages() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("folder", ["agent"])
def test_the_agent_needs_only_the_standard_library(folder: str) -> None:
    stdlib = sys.stdlib_module_names
    found = []
    for p in sorted((APP / folder).rglob("*.py")):
        for line, name in _imports(p):
            top = _top(name)
            if top == "__future__" or top in stdlib:
                continue
            if name == "app.protocol" or name.startswith(("app.protocol.", f"app.{folder}")):
                continue
            if name == "app":  # `from app import protocol` yields app and app.protocol
                continue
            found.append(f"{p.relative_to(ROOT)}:{line}: {name}")
    assert found == []


def test_the_core_is_pure() -> None:
    io = {"sqlalchemy", "aiohttp", "boto3", "botocore", "gidgethub", "gitlab", "requests"}
    found = [
        f"{p.relative_to(ROOT)}:{line}: {name}"
        for p in _sources()
        if _under(p, "core")
        for line, name in _imports(p)
        if _top(name) in io
        or (name.startswith("app.") and not name.startswith(("app.core", "app.agent")))
    ]
    assert found == []
