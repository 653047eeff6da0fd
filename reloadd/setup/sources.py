"""Config sources: find the config files, read them, and merge them with the environment and the flags.

Precedence (nodemon's, plus the environment): command line > environment variables > local
config > global ``$HOME/nodemon.json`` > defaults. Objects in ``DEEP_MERGED_KEYS`` merge key by
key; everything else replaces. Every environment variable reloadd reads is resolved here.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import ConfigError
from .cli import CliArgs
from .config import DEEP_MERGED_KEYS, EVENT_NAMES, KNOWN_KEYS, MAX_CONFIG_DEPTH, validate
from .paths import current_dir, is_file
from .settings import DEFAULT_EXEC_MAP, Settings
from .switches import parse_bool
from .values import parse_log_format, parse_milliseconds, parse_seconds

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9/3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

NODEMON_JSON = "nodemon.json"  # local (working dir) and global ($HOME)
RELOADD_TOML = "reloadd.toml"
PYPROJECT_TOML = "pyproject.toml"
PYPROJECT_TABLE = ("tool", "reloadd")
PACKAGE_JSON = "package.json"
PACKAGE_KEY = "nodemonConfig"
PRODUCTION = "production"  # NODE_ENV value (any case, trimmed) that turns watching off (docs/behaviour.md "Production")
# nodemon keys reloadd accepts and has no use for: no warning for them.
SILENT_KEYS = frozenset({"noUpdateNotifier", "js"})

TOO_DEEP = f"objects or lists nested far more than {MAX_CONFIG_DEPTH} levels deep"
_TOML_POSITION = re.compile(r"^(?P<reason>.*?)\s*\(at line (?P<line>\d+), column (?P<column>\d+)\)$", re.DOTALL)
# The json module's messages (their stable beginnings), in reloadd's words: see _json_problem.
_JSON_REASONS = {
    "Expecting value": "expected a value",
    "Expecting ',' delimiter": "expected a comma between two items",
    "Expecting ':' delimiter": "expected a colon after a key",
    "Expecting property name enclosed in double quotes": "expected a key in double quotes",
    "Extra data": "more text after the end of the settings",
    "Unterminated string": "a string that is never closed",
    "Invalid control character": "a raw control character (a tab or a line break?) inside a string",
    "Invalid \\uXXXX escape": "a bad \\uXXXX escape",
    "Invalid \\escape": "a bad backslash escape",
}
_JSON_TRAILING_COMMA = "Illegal trailing comma"  # Python 3.13 and later
_TOML_AT_END = re.compile(r"^(?P<reason>.*?)\s*\(at end of document\)$", re.DOTALL)


@dataclass
class Loaded:
    """The effective configuration and where it came from."""

    settings: Settings  # effective merged config, validated
    cwd: Path  # absolute working dir (from --cwd / config cwd / os.getcwd())
    files: list[Path] = field(default_factory=list)  # config files in use, global + local: editing one reloads
    warnings: list[str] = field(default_factory=list)  # one line each
    notices: list[str] = field(default_factory=list)  # informational lines
    candidates: list[Path] = field(default_factory=list)  # local config files not in use that would be read


@dataclass
class Layer:
    """One config source: its values (nodemon's key names) and the name its messages use."""

    name: str
    values: dict[str, Any]
    path: Optional[Path] = None  # the file, for config reload; None for the environment and the flags


def load_settings(cli: CliArgs, env: Mapping[str, str]) -> Loaded:
    """Read every config source and merge them.

    Args:
        cli: the parsed command line.
        env: the environment (reloadd's own), for HOME and the RELOADD_* variables.

    Returns:
        The validated settings, the working directory and the files in use. Changes no directory.
    """
    base = _base_dir(cli)
    warnings: list[str] = []
    files = _file_layers(base, cli.config_file, env, warnings)
    layers = [Layer("defaults", {"execMap": dict(DEFAULT_EXEC_MAP)}), *files]
    layers += [Layer("environment", env_options(env)), Layer("command line", dict(cli.options))]
    for layer in layers:
        validate(layer.values, layer.name)
    merged = merge([layer.values for layer in layers])
    warnings += _ignored_options(cli, files, merged)
    warnings += _drop_regex_rules(merged)
    notices = _production_rule(merged, env)
    cwd = _working_dir(base, cli, layers)
    merged["cwd"] = str(cwd)
    settings = validate(merged, "configuration")
    in_use = [layer.path for layer in files if layer.path]
    return Loaded(settings, cwd, in_use, warnings, notices, _candidates(base, cli.config_file, in_use))


def _candidates(base: Path, config_file: Optional[str], in_use: list[Path]) -> list[Path]:
    """The local config files that a later start would read if they appeared (a nodemon.json that
    a sync delivers after reloadd started in an empty pod) or gained a section; none with --config."""
    if config_file:
        return []
    names = (RELOADD_TOML, PYPROJECT_TOML, NODEMON_JSON, PACKAGE_JSON)
    return [base / name for name in names if base / name not in in_use]


# -- working directory --------------------------------------------------------------------------------
def _base_dir(cli: CliArgs) -> Path:
    """Where config files are looked up: --cwd, else the current directory."""
    here = current_dir()
    if cli.cwd is None:
        return here
    path = (here / cli.cwd).resolve()
    problem = _directory_problem(path)
    if problem:
        raise ConfigError(f"--cwd: directory {cli.cwd!r} {problem}")
    return path


def _working_dir(base: Path, cli: CliArgs, layers: list[Layer]) -> Path:
    """--cwd wins; else the last config file that sets ``cwd`` (relative to the base directory)."""
    if cli.cwd is not None:
        return base
    setting = next((layer for layer in reversed(layers) if layer.values.get("cwd")), None)
    if setting is None:
        return base
    value = str(setting.values["cwd"])
    path = (base / value).resolve()
    problem = _directory_problem(path)
    if problem:
        raise ConfigError(f"{setting.name}: key 'cwd': directory {value!r} {problem}")
    return path


def _directory_problem(path: Path) -> Optional[str]:
    """Why reloadd cannot work in ``path`` (read its config files, list it, run the app there), or None."""
    try:
        if not path.is_dir():
            return "does not exist"
    except OSError as exc:
        return f"cannot be looked at: {exc.strerror or exc}"
    if not os.access(path, os.R_OK | os.X_OK):
        return "cannot be read (permission denied)"
    return None


# -- the environment ------------------------------------------------------------------------------------
ENV_OPTIONS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "RELOADD_STOP_TIMEOUT": ("stopTimeout", parse_seconds),
    "RELOADD_POLL": ("legacyWatch", parse_bool),
    "RELOADD_POLL_INTERVAL": ("pollingInterval", parse_milliseconds),
    "RELOADD_LOG_FORMAT": ("logFormat", parse_log_format),
    "RELOADD_WARM": ("warm", parse_bool),
}


def env_options(env: Mapping[str, str]) -> dict[str, Any]:
    """Config keys set by environment variables (empty variables count as unset)."""
    options: dict[str, Any] = {}
    for name, (key, parse) in ENV_OPTIONS.items():
        text = env.get(name, "").strip()
        if text:
            options[key] = parse(name, text)
    if "legacyWatch" not in options and _chokidar_polling(env):
        options["legacyWatch"] = True
    if _watch_switch(env) is False:
        options["watch"] = False
    return options


def _chokidar_polling(env: Mapping[str, str]) -> bool:
    """nodemon's (chokidar's) switch: anything but empty, 0 or false means poll. Never an error: not ours."""
    text = env.get("CHOKIDAR_USEPOLLING", "").strip().lower()
    return text not in ("", "0", "false")


def _watch_switch(env: Mapping[str, str]) -> Optional[bool]:
    """RELOADD_WATCH: 0 = never watch, 1 = watch even in production, unset = decide."""
    text = env.get("RELOADD_WATCH", "").strip()
    return parse_bool("RELOADD_WATCH", text) if text else None


def _production_rule(merged: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """The same image must be safe in production: with NODE_ENV=production, supervise without watching."""
    if env.get("NODE_ENV", "").strip().lower() != PRODUCTION or _watch_switch(env) or merged.get("watch") is False:
        return []
    merged["watch"] = False
    return ["NODE_ENV=production: running as an init, not watching files (RELOADD_WATCH=1 watches anyway)"]


# Config keys that shape the command, which the exact form (`reloadd -- CMD`) does not use.
COMMAND_KEYS = ("exec", "script", "args", "execArgs", "nodeArgs")


def _ignored_options(cli: CliArgs, files: list[Layer], merged: dict[str, Any]) -> list[str]:
    """Say so when a setting has no effect, rather than leave the user wondering."""
    warnings = []
    if cli.exact is not None:
        for layer in files:
            unused = [key for key in COMMAND_KEYS if key in layer.values]
            if unused:
                keys = ", ".join(unused)
                warnings.append(f"{layer.name}: {keys} ignored: the command after `--` runs exactly as given")
    if merged.get("exitcrash") and merged.get("restartOnCrash"):
        warnings.append("exitcrash and restartOnCrash are both set: reloadd exits when the app crashes")
    return warnings


# Old nodemon configs wrote regular expressions as rules starting with ":" (`:(\d)*\.js`). nodemon 2 and
# later drop such a rule with an error; kept as a glob it would match nothing, silently.
REGEX_RULE_MARK = ":"
RULE_KEYS = ("watch", "ignore", "ignoreRoot")


def _drop_regex_rules(merged: dict[str, Any]) -> list[str]:
    """Remove old-style regular-expression rules from ``merged``; one warning each."""
    warnings = []
    for key in RULE_KEYS:
        value = merged.get(key)
        rules = [value] if isinstance(value, str) else value if isinstance(value, list) else None
        if rules is None:
            continue
        regexes = [rule for rule in rules if isinstance(rule, str) and rule.strip().startswith(REGEX_RULE_MARK)]
        if regexes:
            merged[key] = [rule for rule in rules if rule not in regexes]
        if regexes and key == "watch" and not merged[key]:
            del merged[key]  # nothing left to watch: the default (the working directory) applies
        warnings += [
            f"{key}: {rule!r} is a regular expression (old nodemon syntax), which neither reloadd nor nodemon "
            "reads any more: rule dropped; write it as a glob, e.g. **/*.test.js"
            for rule in regexes
        ]
    return warnings


# -- merging -----------------------------------------------------------------------------------------------
def merge(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge layers, later ones winning: objects in DEEP_MERGED_KEYS key by key, everything else replaced."""
    merged: dict[str, Any] = {}
    for values in layers:
        for key, value in values.items():
            if key in DEEP_MERGED_KEYS and isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = _deep_merge(merged[key], value)
            else:
                merged[key] = value
    return merged


def _deep_merge(lower: dict[str, Any], upper: dict[str, Any]) -> dict[str, Any]:
    result = dict(lower)
    for key, value in upper.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = value
    return result


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


# -- config files -----------------------------------------------------------------------------------------
def _file_layers(base: Path, config_file: Optional[str], env: Mapping[str, str], warnings: list[str]) -> list[Layer]:
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
    if not required and "reloadd" not in _read_text(path, shown):
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


# -- reading ------------------------------------------------------------------------------------------------
def _read_text(path: Path, name: str) -> str:
    """The file's text; a UTF-8 byte order mark (Windows editors write one) is dropped."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None


def read_json(path: Path, name: str) -> Any:
    """Parse a JSON file; errors name the file, line and column."""
    try:
        return json.loads(_read_text(path, name))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}: invalid JSON {_json_problem(exc)}") from None
    except RecursionError:  # the parser recurses once per level
        raise ConfigError(f"{name}: {TOO_DEEP}") from None


def _json_problem(exc: json.JSONDecodeError) -> str:
    """Where and what, in reloadd's words: the json module's own change between Python versions
    (3.13 says "Illegal trailing comma before end of object" where 3.12 said "Expecting property
    name enclosed in double quotes", one column further on), and a config error should not."""
    text, index = exc.doc, exc.pos
    before = text[:index].rstrip()
    if before and not text[index:].strip() and not exc.msg.startswith(("Unterminated string", "Extra data")):
        return "at the end of the file: the settings end too early (a closing bracket or a value is missing)"
    if exc.msg.startswith(_JSON_TRAILING_COMMA) or (text[index : index + 1] in ("}", "]") and before.endswith(",")):
        index = index if text[index : index + 1] == "," else len(before) - 1
        reason = "a comma before the closing bracket (JSON allows no trailing comma)"
    else:
        reason = next((ours for theirs, ours in _JSON_REASONS.items() if exc.msg.startswith(theirs)), exc.msg)
    line = text.count("\n", 0, index) + 1
    column = index - text.rfind("\n", 0, index)
    return f"at line {line} column {column}: {reason}"


def read_toml(path: Path, name: str) -> dict[str, Any]:
    """Parse a TOML file; errors name the file, line and column."""
    try:
        data: dict[str, Any] = tomllib.loads(_read_text(path, name))
        return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: invalid TOML{_toml_where(exc)}") from None
    except RecursionError:  # the parser recurses once per level
        raise ConfigError(f"{name}: {TOO_DEEP}") from None


def _toml_where(exc: Exception) -> str:
    """tomllib puts the position at the end of its message: "Invalid value (at line 3, column 5)"."""
    text = str(exc)
    match = _TOML_POSITION.match(text)
    if match:
        return f" at line {match['line']} column {match['column']}: {match['reason']}"
    match = _TOML_AT_END.match(text)
    if match:
        return f" at the end of the file: {match['reason']}"
    return f": {text}"
