"""The package's layout holds: every import goes down to a room it may use, never up, never sideways, never round.

The rooms, top to bottom (docs/design.md "Map"): the entry point; ``supervise/`` and ``sync/``
side by side, neither importing the other, and inside ``sync/`` the laptop's side and the pod's
side, neither importing the other, over what both share; ``host/``; ``setup/``; the error type,
log output and version. Imports inside functions and under ``TYPE_CHECKING`` count too: a
deferred import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "reloadd"

BASE = {"reloadd", "reloadd.errors", "reloadd.output"}  # __init__ (the version), the error type, log lines
SETUP = {"reloadd.setup", *BASE}
HOST = {"reloadd.host", *SETUP}
SYNC_SHARED = {"reloadd.sync.shared", *HOST}
# each room, and the rooms it may import besides itself
MAY_IMPORT = {
    **{name: BASE - {name} for name in BASE},
    "reloadd.setup": BASE,
    "reloadd.host": SETUP,
    "reloadd.supervise": HOST,
    "reloadd.sync": set(),  # the package itself holds only its docstring
    "reloadd.sync.shared": HOST,
    "reloadd.sync.laptop": SYNC_SHARED,
    "reloadd.sync.pod": SYNC_SHARED,
    "reloadd.app": {"reloadd.supervise", "reloadd.sync.laptop", "reloadd.sync.pod", *SYNC_SHARED},
    "reloadd.__main__": {"reloadd.app"},
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
    """The room a module belongs to: its folder under reloadd/ (under reloadd/sync/ for the sync's), or
    itself at the top."""
    parts = name.split(".")
    depth = 3 if parts[:2] == ["reloadd", "sync"] and len(parts) > 3 else 2
    return ".".join(parts[:depth])


def allowed(module: str, target: str) -> bool:
    mine, theirs = room(module), room(target)
    return mine == theirs or theirs in MAY_IMPORT[mine]


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_every_room_is_known() -> None:
    assert {room(m) for m in graph()} <= set(MAY_IMPORT)


def test_no_module_imports_a_room_above_it_or_beside_it() -> None:
    upward = []
    for module, imported in sorted(graph().items()):
        for target in sorted(imported):
            if not allowed(module, target):
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
    ("module", "target", "expected"),
    [
        ("reloadd.host.watcher", "reloadd.setup.matching", True),
        ("reloadd.setup.config", "reloadd.host.tree", False),
        ("reloadd.sync.laptop.loop", "reloadd.supervise.loop", False),
        ("reloadd.supervise.loop", "reloadd.sync.pod.agent", False),
        ("reloadd.sync.laptop.session", "reloadd.sync.shared.protocol", True),
        ("reloadd.sync.pod.batch", "reloadd.sync.laptop.local", False),
        ("reloadd.sync.shared.manifest", "reloadd.sync.pod.tree", False),
        ("reloadd.app", "reloadd.supervise.loop", True),
        ("reloadd.output", "reloadd.errors", True),
    ],
)
def test_the_room_rule_itself(module: str, target: str, expected: bool) -> None:
    assert allowed(module, target) is expected
