"""The package's layers point down only, and no modules import each other in a cycle.

Layers, lowest first (a module may import its own layer and the ones below):
labels / utils / card / config → data, faces → models → distill → train → evaluate → deploy → inference → serve →
experiments → commands → cli. Lazy imports inside functions count too: they reach up all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dfkd

PACKAGE = Path(dfkd.__file__).parent
LAYERS: tuple[tuple[str, ...], ...] = (
    ("labels", "utils", "card", "config", "thresholds", "__init__"),
    ("data", "faces", "configs"),
    ("models", "pretrained"),
    ("distill",),
    ("train",),
    ("evaluate",),
    ("deploy",),
    ("inference",),
    ("serve",),
    ("experiments",),
    ("commands",),
    ("cli", "__main__"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(tree: ast.AST, *, top_level_only: bool) -> list[str]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [name for name in names if name == "dfkd" or name.startswith("dfkd.")]


def _modules() -> dict[str, ast.AST]:
    return {_module_name(path): ast.parse(path.read_text(encoding="utf-8")) for path in PACKAGE.rglob("*.py")}


def test_every_area_of_the_package_has_a_layer() -> None:
    areas = {_area(name) for name in _modules()}
    assert areas <= set(RANK), f"give these a layer in tests/test_layers.py: {sorted(areas - set(RANK))}"


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = []
    for module, tree in _modules().items():
        if module == "dfkd":  # the package's lazy Detector export is its public face, not a dependency
            continue
        for name in _imports(tree, top_level_only=False):
            target = _area(name)
            if target != _area(module) and RANK.get(target, -1) > RANK[_area(module)]:
                upward.append(f"{module} → {name}")
    assert not upward, "imports reaching up a layer:\n" + "\n".join(sorted(set(upward)))


def test_no_import_cycles() -> None:
    modules = _modules()
    # A submodule importing from its own package's other submodules is the ordinary package pattern, not a cycle.
    graph = {
        module: {
            name
            for name in _imports(tree, top_level_only=True)
            if name in modules and name != module and not module.startswith(f"{name}.")
        }
        for module, tree in modules.items()
    }
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" → ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
