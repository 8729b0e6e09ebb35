"""The download package is one module per concept, and those modules import one another without a cycle.

Read from the source (the imports executed at import time; `if TYPE_CHECKING:` blocks are annotations only),
so the check costs nothing and names the cycle if one appears.
"""

from __future__ import annotations

import ast
from pathlib import Path

import magicanimate_cli.download as download

PACKAGE = Path(download.__file__).parent


def _runtime_imports(path: Path) -> set[str]:
    """Sibling modules that `path` imports at module level, outside `if TYPE_CHECKING:`."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as the path around it, or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        for dep in sorted(graph.get(name, ())):
            cycle = visit(dep, path + [name])
            if cycle:
                return cycle
        done.add(name)
        return None

    return next((c for c in (visit(n, []) for n in sorted(graph)) if c), None)


def test_download_modules_import_one_another_without_a_cycle():
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = {name: _runtime_imports(path) & modules.keys() for name, path in modules.items()}
    assert len(modules) > 1 and any(graph.values())  # the package is split and its parts do import each other
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
