"""The package's layout holds: every import goes down a floor (or stays on its own), never up, never round.

Floors, top to bottom (docs/design.md "Map"): the entry point; ``supervise/`` and ``sync/`` side by
side, neither importing the other; ``host/``; ``setup/``; the error type, log output and version.
Imports inside functions and under ``TYPE_CHECKING`` count too: a deferred import is still a
dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "reloadd"

# floor of each top-level room; a higher number may import a lower one
FLOORS = {
    "reloadd": 0,  # __init__: the version only
    "reloadd.errors": 0,
    "reloadd.output": 0,
    "reloadd.setup": 1,
    "reloadd.host": 2,
    "reloadd.supervise": 3,
    "reloadd.sync": 3,
    "reloadd.app": 4,
    "reloadd.__main__": 5,  # runs app
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The modules of ours that ``path`` imports, as absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            modules = [f"{target}.{alias.name}" for alias in node.names]
            found.update(m if is_module(m) else target for m in modules)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "reloadd" or m.startswith("reloadd.")}


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def room(name: str) -> str:
    """The floor entry a module belongs to: its folder under reloadd/, or itself at the top."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_every_room_has_a_floor() -> None:
    assert {room(m) for m in graph()} <= set(FLOORS)


def test_no_module_imports_a_floor_above_it_or_its_neighbour() -> None:
    upward = []
    for module, imported in sorted(graph().items()):
        for target in sorted(imported):
            mine, theirs = room(module), room(target)
            if mine != theirs and FLOORS[theirs] >= FLOORS[mine]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that go up or sideways:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    edges = graph()
    cycles = []
    state: dict[str, int] = {}  # 1 on the current path, 2 finished

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    ("module", "target", "allowed"),
    [
        ("reloadd.host.watcher", "reloadd.setup.matching", True),
        ("reloadd.setup.config", "reloadd.host.tree", False),
        ("reloadd.sync.laptop", "reloadd.supervise.loop", False),
        ("reloadd.supervise.loop", "reloadd.sync.agent", False),
        ("reloadd.app", "reloadd.supervise.loop", True),
    ],
)
def test_the_floor_rule_itself(module: str, target: str, allowed: bool) -> None:
    mine, theirs = room(module), room(target)
    assert (mine == theirs or FLOORS[theirs] < FLOORS[mine]) is allowed
