"""The package's shape: one-way layers and no import cycles.

Front ends (the command line) use features; features (fuse-long, pose, serve, download, eval, train, prepare-data)
build on the animation job and the embedded demo; those build on the engine, the motion format and media; all of
them on runtime. An import may only reach a lower layer (or stay inside its own package), so features never
import each other, and no module imports another that imports it back, not even inside a function.

Read from the source with `ast`: every import counts, also those inside functions and under `if TYPE_CHECKING:`
(an annotation is a dependency a reader follows too), so the check costs nothing and names the offending line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import magicanimate_cli

ROOT = Path(magicanimate_cli.__file__).parent
PACKAGE = "magicanimate_cli"

LAYERS = {
    "runtime": 0,
    "motion": 1, "engine": 1,
    "media": 2,
    "densepose": 3,
    "animate": 4, "demo": 4,
    "long": 5, "pose": 5, "serve": 5, "download": 5, "evaluation": 5, "train": 5, "dataset": 5,
    "commands": 6,
    "cli": 7, "__init__": 7,
    "__main__": 8,
}
"""Each part of the package and its layer; a part may import only parts of a lower layer. A part is a top-level
package or module, always: no sub-package stands in a layer of its own."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _import_nodes(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _import_nodes(node)


def imports_of(path: Path, modules: set[str]) -> list[tuple[int, str]]:
    """(line, module) for every module of the package that `path` imports, wherever the import stands."""
    here = module_name(path).split(".")
    base = here if is_package(path) else here[:-1]
    found: list[tuple[int, str]] = []
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            origin = base[: len(base) - node.level + 1] if node.level else []
            stem = ".".join(origin + ([node.module] if node.module else []))
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
        found.extend((node.lineno, t) for t in targets if t in modules)
    return found


def part(module: str) -> str:
    """The part (top-level package or module) a module belongs to: `animate` for magicanimate_cli.animate.job,
    `cli` for cli.py, `densepose` for magicanimate_cli.densepose.model."""
    return (module.split(".")[1:] or ["__init__"])[0]


def module_graph() -> tuple[dict[str, Path], dict[str, list[tuple[int, str]]]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    return files, {name: imports_of(path, set(files)) for name, path in files.items()}


def layer_violations(graph: dict[str, list[tuple[int, str]]], layers: dict[str, int]) -> list[str]:
    """Every import that reaches sideways or up: 'module:line imports target (layer a -> layer b)'."""
    bad = []
    for source, targets in sorted(graph.items()):
        for line, target in targets:
            a, b = part(source), part(target)
            if target == PACKAGE or a == b:
                continue
            if layers[b] >= layers[a]:
                bad.append(f"{source}:{line} imports {target} (layer {layers[a]} {a} -> layer {layers[b]} {b})")
    return bad


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
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


def test_every_part_of_the_package_has_a_layer():
    parts = {part(name) for name in module_graph()[0]}
    assert parts <= LAYERS.keys(), f"parts without a layer: {sorted(parts - LAYERS.keys())}"


def test_the_top_of_the_package_holds_only_packages_and_the_entry_points():
    loose = {p.name for p in ROOT.glob("*.py")}
    assert loose == {"__init__.py", "__main__.py", "cli.py"}


def test_imports_only_reach_lower_layers():
    _, graph = module_graph()
    assert any(graph.values())
    assert layer_violations(graph, LAYERS) == []


def test_the_layer_check_catches_a_lower_module_importing_a_higher_one():
    # Mutations of the real graph: the media layer reaching up into the animate job, and one feature importing another.
    _, graph = module_graph()
    up = dict(graph, **{f"{PACKAGE}.media.reader": graph[f"{PACKAGE}.media.reader"]
                        + [(1, f"{PACKAGE}.animate.job")]})
    assert layer_violations(up, LAYERS) == [
        f"{PACKAGE}.media.reader:1 imports {PACKAGE}.animate.job (layer 2 media -> layer 4 animate)"]
    sideways = dict(graph, **{f"{PACKAGE}.long.job": graph[f"{PACKAGE}.long.job"] + [(1, f"{PACKAGE}.pose.job")]})
    assert layer_violations(sideways, LAYERS) == [
        f"{PACKAGE}.long.job:1 imports {PACKAGE}.pose.job (layer 5 long -> layer 5 pose)"]


def test_no_module_imports_another_that_imports_it_back():
    _, graph = module_graph()
    plain = {name: {t for _, t in targets if t != name} for name, targets in graph.items()}
    cycle = find_cycle(plain)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def package_graph(graph: dict[str, list[tuple[int, str]]]) -> dict[str, set[str]]:
    """The imports between top-level parts: `media` -> {`motion`, `runtime`, ...}, a part's own imports left out."""
    parts: dict[str, set[str]] = {}
    for source, targets in graph.items():
        a = part(source)
        parts.setdefault(a, set()).update(part(t) for _, t in targets if t != PACKAGE and part(t) != a)
    return parts


def test_no_two_top_level_packages_import_each_other():
    _, graph = module_graph()
    parts = package_graph(graph)
    assert {"media", "motion", "densepose"} <= parts.keys()
    cycle = find_cycle(parts)
    assert cycle is None, "package cycle: " + " -> ".join(cycle)


def test_the_package_check_finds_two_packages_importing_each_other():
    # A mutation of the real graph: media's reader reaching into the DensePose package, which reads videos through
    # media. No module imports itself back (reader imports only densepose.render, which does not import reader), yet
    # the packages now import each other, as media and motion did while the DensePose model lived in motion/.
    _, graph = module_graph()
    reader = f"{PACKAGE}.media.reader"
    mutated = dict(graph, **{reader: graph[reader] + [(1, f"{PACKAGE}.densepose.render")]})
    plain = {name: {t for _, t in targets if t != name} for name, targets in mutated.items()}
    assert find_cycle(plain) is None
    assert find_cycle(package_graph(mutated)) in (["densepose", "media", "densepose"], ["media", "densepose", "media"])
