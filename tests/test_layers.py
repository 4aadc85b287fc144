"""The layering, read from the source: the domain imports nothing outside itself, and no
two modules import each other, directly or round a longer loop.

Imports are read with :mod:`ast`, not by importing, so the test is fast and sees
imports under ``if TYPE_CHECKING:`` too. Imports inside functions (the CLI defers heavy
ones so that ``--help`` stays fast) count for the domain rule but not for cycles: they
run after every module has loaded.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "volumed"


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(name: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The package's modules that ``node``, in module ``name``, loads."""
    known = modules()
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = name.split(".")
            is_package = modules()[name].name == "__init__.py"
            anchor = package[: len(package) - node.level + (1 if is_package else 0)]
            base = ".".join([*anchor, base] if base else anchor)
        # `from a.b import c` loads a.b.c when c is a module, else only a.b.
        targets = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
            for alias in node.names
        ]
    for target in targets:
        while target and target not in known:  # `import a.b.c` with c an object
            target = target.rpartition(".")[0]
        if target.startswith(PACKAGE + ".") and target != name:
            yield target


def imports(name: str, *, nested: bool) -> set[str]:
    """The modules ``name`` imports: at module level (``if``/``try`` blocks included),
    and inside functions as well when ``nested``."""
    tree = ast.parse(modules()[name].read_text(), str(modules()[name]))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.update(_imported(name, child))
            elif nested or not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            ):
                visit(child)

    visit(tree)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_domain_imports_nothing_outside_itself() -> None:
    outside = {
        name: sorted(m for m in imports(name, nested=True) if not _in_domain(m))
        for name in modules()
        if _in_domain(name)
    }
    assert {name: found for name, found in outside.items() if found} == {}


def test_no_module_imports_itself_round_a_loop() -> None:
    graph = {name: imports(name, nested=False) for name in modules()}
    assert cycles(graph) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_cycles_finds_loops_and_only_loops(
    graph: dict[str, set[str]], expected: list[list[str]]
) -> None:
    assert cycles(graph) == expected


def _in_domain(name: str) -> bool:
    return name == f"{PACKAGE}.domain" or name.startswith(f"{PACKAGE}.domain.")
