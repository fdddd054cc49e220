"""The package's import layers, as its docstring states them: no upward import, no circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import ratchet

PACKAGE = Path(ratchet.__file__).parent


def stated_layers() -> dict[str, int]:
    layers = {}
    for number, names in re.findall(r"^\s+(\d+)\. (.+)$", ratchet.__doc__ or "", re.MULTILINE):
        for name in names.split(", "):
            layers[name.strip()] = int(number)
    return layers


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def unit_of(module: str) -> str:
    """The layer unit of a module: its top-level module or package below `ratchet`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ratchet"


def imports() -> dict[str, set[str]]:
    """Every module's imports of ratchet modules, wherever they are (lazy ones included)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "ratchet":
                    targets = [f"ratchet.{a.name}" for a in node.names]
                elif node.module.startswith("ratchet."):
                    targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("ratchet.")]
            graph[module] |= {t for t in targets if t in modules and t != module}
    return graph


def test_every_module_belongs_to_a_stated_layer() -> None:
    layers = stated_layers()
    assert len(layers) > 10, "the package docstring lost its layers"
    units = {unit_of(m) for m in imports()} - {"migrations"}
    assert units <= set(layers), f"not in any layer: {sorted(units - set(layers))}"


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    return [f"{m} (layer {layers[unit_of(m)]}) imports {t} (layer {layers[unit_of(t)]})"
            for m, targets in graph.items() for t in targets
            if unit_of(m) in layers and layers[unit_of(t)] > layers[unit_of(m)]]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if target.startswith(module + "."):
                continue  # a package re-exporting its own modules
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = upward_imports(imports(), stated_layers())
    assert not upward, "\n".join(upward)


def test_no_import_circle() -> None:
    cycle = find_cycle(imports())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_checks_catch_a_circle_and_an_upward_import() -> None:
    """A store module importing the engine breaks both rules, and both checks say so."""
    graph = imports()
    graph["ratchet.store.database"].add("ratchet.engine")
    assert upward_imports(graph, stated_layers()) == [
        "ratchet.store.database (layer 3) imports ratchet.engine (layer 7)"]
    cycle = find_cycle(graph)
    assert cycle is not None and "ratchet.engine" in cycle \
        and "ratchet.store.database" in cycle
