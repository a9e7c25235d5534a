"""The package's shape: no import cycle (``TYPE_CHECKING`` included), no module
reaching into another's private names, and nothing outside ``tests/`` importing
from it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "alphapoint"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in ``path``, relative ones resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
    return found


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def test_no_import_cycle_type_checking_included() -> None:
    modules = package_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for module, names in imported(path, ast.parse(path.read_text())):
            for target in [module, *(f"{module}.{n}" for n in names)]:
                # A package's __init__ only re-exports: an edge to it is an edge
                # to the module that defines the name, found through its own imports.
                if target in modules and target != name and modules[target].name != "__init__.py":
                    edges.add(target)
        graph[name] = edges

    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles
    # The graph is not empty: the walk above really saw the package.
    assert sum(map(len, graph.values())) > 50


def python_files() -> list[Path]:
    return [
        path
        for folder in ("alphapoint", "tests", "scripts", "benchmarks", "examples")
        for path in (ROOT / folder).rglob("*.py")
    ]


def test_no_module_imports_or_touches_another_modules_private_names() -> None:
    offences = []
    for path in python_files():
        tree = ast.parse(path.read_text())
        modules_here = set()
        for module, names in imported(path, tree):
            if module.startswith("alphapoint"):
                offences += [f"{path}: from {module} import {n}" for n in names if _private(n)]
            for alias in names:
                modules_here.add(alias)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules_here.update((a.asname or a.name).split(".")[0] for a in node.names)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules_here
                and node.value.id not in ("self", "cls")
            ):
                offences.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not offences, offences


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_nothing_outside_the_tests_imports_from_them() -> None:
    for folder in ("alphapoint", "scripts", "benchmarks", "examples"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            tree = ast.parse(text)
            for module, _ in imported(path, tree):
                assert not module.startswith(("tests", "test_")), f"{path} imports {module}"
            assert "sys.path.insert" not in text or "tests" not in text, path
