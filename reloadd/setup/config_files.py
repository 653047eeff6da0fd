"""Config files: which ones are read (``--config FILE``, else the first local one of reloadd.toml,
pyproject.toml [tool.reloadd], nodemon.json, package.json nodemonConfig; plus $HOME/nodemon.json),
each as one Layer of settings, with a warning for every key reloadd does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import ConfigError
from .config import EVENT_NAMES, KNOWN_KEYS
from .formats import read_json, read_text, read_toml
from .paths import is_file

NODEMON_JSON = "nodemon.json"  # local (working dir) and global ($HOME)
RELOADD_TOML = "reloadd.toml"
PYPROJECT_TOML = "pyproject.toml"
PYPROJECT_TABLE = ("tool", "reloadd")
PACKAGE_JSON = "package.json"
PACKAGE_KEY = "nodemonConfig"
# nodemon keys reloadd accepts and has no use for: no warning for them.
SILENT_KEYS = frozenset({"noUpdateNotifier", "js"})


@dataclass
class Layer:
    """One config source: its values (nodemon's key names) and the name its messages use."""

    name: str
    values: dict[str, Any]
    path: Optional[Path] = None  # the file, for config reload; None for the environment and the flags


def file_layers(base: Path, config_file: Optional[str], env: Mapping[str, str], warnings: list[str]) -> list[Layer]:
    """The global layer (if any) then the local one (if any), each checked for unknown keys."""
    local = _explicit_layer(base, config_file) if config_file else _local_layer(base, warnings)
    layers = [layer for layer in (_global_layer(env, local), local) if layer is not None]
    for layer in layers:
        warnings.extend(unknown_keys(layer.values, layer.name))
    return layers


def _global_layer(env: Mapping[str, str], local: Optional[Layer]) -> Optional[Layer]:
    home = env.get("HOME", "")
    if not home:
        return None
    path = Path(home) / NODEMON_JSON
    if not is_file(path) or (local is not None and local.path is not None and _same_file(path, local.path)):
        return None  # in $HOME itself the local file is the global one: read it once
    return Layer(str(path), _object(read_json(path, str(path)), str(path)), path)


def _explicit_layer(base: Path, config_file: str) -> Layer:
    """--config FILE: .toml or JSON; a pyproject.toml or package.json is read for its reloadd section."""
    path = base / config_file
    if not is_file(path):
        raise ConfigError(f"--config: file {config_file!r} does not exist")
    if path.name == PYPROJECT_TOML:
        return _pyproject_layer(path, config_file, required=True) or Layer(config_file, {}, path)
    if path.name == PACKAGE_JSON:
        return _package_layer(path, config_file) or Layer(config_file, {}, path)
    data = read_toml(path, config_file) if path.suffix.lower() == ".toml" else read_json(path, config_file)
    return Layer(config_file, _object(data, config_file), path)


def _local_layer(base: Path, warnings: list[str]) -> Optional[Layer]:
    """The first of reloadd.toml, [tool.reloadd], nodemon.json, package.json nodemonConfig; warn about the rest."""
    finders: list[Callable[[], Optional[Layer]]] = [
        lambda: _toml_layer(base / RELOADD_TOML),
        lambda: _pyproject_layer(base / PYPROJECT_TOML, PYPROJECT_TOML),
        lambda: _json_layer(base / NODEMON_JSON),
        lambda: _package_layer(base / PACKAGE_JSON, PACKAGE_JSON),
    ]
    for index, find in enumerate(finders):
        layer = find()
        if layer is not None:
            shadowed = _existing_sources(base, index + 1)
            if shadowed:
                warnings.append(f"{layer.name} is the config in use; ignoring {' and '.join(shadowed)}")
            return layer
    return None


def _existing_sources(base: Path, start: int) -> list[str]:
    """Names of lower-priority config sources that exist (for the shadowing warning); never raises."""
    checks: list[tuple[str, Callable[[], bool]]] = [
        (RELOADD_TOML, lambda: is_file(base / RELOADD_TOML)),
        (f"{PYPROJECT_TOML} [tool.reloadd]", lambda: _quietly(lambda: _pyproject_layer(base / PYPROJECT_TOML, ""))),
        (NODEMON_JSON, lambda: is_file(base / NODEMON_JSON)),
        (f"{PACKAGE_JSON} {PACKAGE_KEY}", lambda: _quietly(lambda: _package_layer(base / PACKAGE_JSON, ""))),
    ]
    return [name for name, exists in checks[start:] if exists()]


def _quietly(find: Callable[[], Optional[Layer]]) -> bool:
    try:
        return find() is not None
    except ConfigError:
        return False


def _toml_layer(path: Path) -> Optional[Layer]:
    if not is_file(path):
        return None
    return Layer(path.name, _object(read_toml(path, path.name), path.name), path)


def _json_layer(path: Path) -> Optional[Layer]:
    if not is_file(path):
        return None
    return Layer(path.name, _object(read_json(path, path.name), path.name), path)


def _pyproject_layer(path: Path, shown: str, required: bool = False) -> Optional[Layer]:
    """``[tool.reloadd]``. A broken pyproject.toml that does not mention it is none of our business."""
    if not is_file(path):
        return None
    if not required and "reloadd" not in read_text(path, shown):
        return None
    table: Any = read_toml(path, shown)
    for part in PYPROJECT_TABLE:
        table = table.get(part) if isinstance(table, dict) else None
    if table is None:
        return None
    name = f"{shown} [tool.reloadd]"
    return Layer(name, _object(table, name), path)


def _package_layer(path: Path, shown: str) -> Optional[Layer]:
    if not is_file(path):
        return None
    package = read_json(path, shown)
    if not isinstance(package, dict) or package.get(PACKAGE_KEY) is None:
        return None
    name = f"{shown} {PACKAGE_KEY}"
    return Layer(name, _object(package[PACKAGE_KEY], name), path)


def _object(data: Any, name: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f'{name}: expected an object of settings such as {{"watch": ["src"]}}, got {data!r}')
    return _normalise(data)


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.samefile(other)
    except OSError:
        return False


def _normalise(values: dict[str, Any]) -> dict[str, Any]:
    """``null`` means "not set" (the lower layer or the default applies); ``exitCrash`` is ``exitcrash``."""
    cleaned = {key: value for key, value in values.items() if value is not None}
    if "exitCrash" in cleaned:
        cleaned.setdefault("exitcrash", cleaned.pop("exitCrash"))
    return cleaned


def unknown_keys(values: dict[str, Any], name: str) -> list[str]:
    """Warnings for keys and event names reloadd does not know (typos, mostly)."""
    warnings = [
        f"{name}: unknown key {key!r} ignored" for key in values if key not in KNOWN_KEYS and key not in SILENT_KEYS
    ]
    events = values.get("events")
    if isinstance(events, dict):
        known = ", ".join(EVENT_NAMES)
        warnings += [
            f"{name}: unknown event {event!r} ignored (known: {known})" for event in events if event not in EVENT_NAMES
        ]
    return warnings


def candidates(base: Path, config_file: Optional[str], in_use: list[Path]) -> list[Path]:
    """The local config files that a later start would read if they appeared (a nodemon.json that
    a sync delivers after reloadd started in an empty pod) or gained a section; none with --config."""
    if config_file:
        return []
    names = (RELOADD_TOML, PYPROJECT_TOML, NODEMON_JSON, PACKAGE_JSON)
    return [base / name for name in names if base / name not in in_use]
