"""Checking a configuration: every nodemon.json key reloadd understands, against settings.py's shape.

Config files, package.json and the command line all produce plain dicts keyed by nodemon's
names (``legacyWatch``, ``execMap``...). ``sources.py`` merges them; this module validates a
layer or the merged result (shapes.py) and turns an error into one line naming file and key.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from ..errors import ConfigError
from .forwards import check_forwards  # -p and sync.ports: one place says what a port is
from .globs import check_glob
from .inspector import normalise_inspect
from .settings import HotConfig, OnChangeRule, ScalarEnv, Settings, SyncConfig, signal_number
from .shapes import Catalogue, Checks, Invalid, keys, load
from .values import MAX_DURATION_MS, MAX_DURATION_SECONDS, check_milliseconds, check_poll_interval, check_seconds

# Deeper than this, a config file is a mistake (or an attack on the parser): nodemon's keys nest
# three levels at most. Python's JSON and TOML parsers recurse and fail near 1,000 levels.
MAX_CONFIG_DEPTH = 32
SHOWN_VALUE_CHARS = 80  # an error line shows at most this much of the bad value

# Keys whose values are objects merged key by key across layers; everything else replaces.
DEEP_MERGED_KEYS = ("env", "execMap", "events", "watchOptions")

EVENT_NAMES = ("start", "restart", "crash", "exit", "quit", "config:update")


# -- checks besides the type, each for one field (the bounds of numbers are values.py's) ---------------
def _whole_number(value: Any) -> Any:
    """JSON has one number type: 100.0 is 100. A boolean is not a number, whatever Python says."""
    if isinstance(value, bool):
        raise ValueError("expected a whole number of milliseconds, not true/false")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _as_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    return value


def _ext_string(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    return value


def _not_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


def _check_signal(value: str) -> str:
    signal_number(value)
    return value


def _check_run(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a shell command, not only spaces")
    return value


def _check_positive_seconds(value: float) -> float:
    return check_seconds(value, positive=True)


def _check_ports(value: Any) -> Any:
    values = _as_list(value) if not isinstance(value, int) else [value]
    if isinstance(values, list):
        check_forwards(values)
    return values


# Each field's checks besides its type: `before` sees the raw value (and may reshape it), `after`
# the typed one. Unknown keys at the top level belong to nodemon (warned about by config_files.py);
# inside reloadd's own objects they are errors.
CHECKS: Catalogue = {
    Settings: Checks(
        before={
            **dict.fromkeys(("watch", "ignore", "ignore_root", "args", "node_args", "exec_args"), _as_list),
            "ext": _ext_string,
            **dict.fromkeys(("delay", "stop_timeout", "event_timeout"), _not_boolean),
            "polling_interval": _whole_number,
            "inspect": normalise_inspect,
        },
        after={
            "signal": _check_signal,
            "delay": check_milliseconds,
            "stop_timeout": check_seconds,
            "event_timeout": _check_positive_seconds,
            "polling_interval": check_poll_interval,
        },
        open=True,
    ),
    HotConfig: Checks(before={"paths": _as_list}, after={"signal": _check_signal}),
    OnChangeRule: Checks(before={"paths": _as_list}, after={"run": _check_run, "timeout": _check_positive_seconds}),
    SyncConfig: Checks(before={"exclude": _as_list, "include": _as_list, "ports": _check_ports}),
}

KNOWN_KEYS = keys(Settings) | {"exitCrash", "dump", "version", "help"}

# What each key expects, in words, for error messages (pydantic's own are too technical).
EXPECTED = {
    "watch": "a path or glob, a list of them, or false",
    "ignore": "a glob or a list of globs",
    "ignoreRoot": "a list of globs",
    "ext": 'a comma-separated list of extensions such as "js,json"',
    "delay": f"a number of milliseconds from 0 to {MAX_DURATION_MS} (an hour)",
    "exec": "a command string",
    "execMap": 'an object mapping extensions to programs, e.g. { "ts": "ts-node" }',
    "env": 'an object of environment values, e.g. { "PORT": 8000 }',
    "events": 'an object mapping event names to shell commands, e.g. { "restart": "echo hi" }',
    "pollingInterval": f"a whole number of milliseconds from 1 to {MAX_DURATION_MS} (an hour)",
    "restartable": 'a string such as "rs", or false',
    "signal": "a signal name such as SIGUSR2 or SIGTERM",
    "stopTimeout": f"a number of seconds from 0 to {MAX_DURATION_SECONDS} (an hour)",
    "eventTimeout": f"a number of seconds above 0 to {MAX_DURATION_SECONDS} (an hour)",
    "logFormat": '"text" or "json"',
    "inspect": "HOST:PORT, PORT, or true",
    "hot": '{ "paths": ["routes/**"], "signal": "SIGHUP" }',
    "warm": "true or false",
    "sync": '{ "to": "deploy/api:/app", "exclude": ["*.log"], "delete": false }',
    "sync.to": 'TARGET[:DIR] as for --to, e.g. "deploy/api:/app"',
    "sync.namespace": "a namespace name",
    "sync.container": "a container name",
    "sync.selector": 'a label selector, e.g. "app=api"',
    "sync.exclude": "a glob or a list of globs",
    "sync.include": '"node_modules", ".git" or a list of them',
    "sync.delete": "true or false",
    "sync.logs": "true or false",
    "sync.onChange": '[{ "paths": ["package.json"], "run": "npm install" }]',
    "sync.onChange.paths": "a glob or a non-empty list of globs",
    "sync.onChange.run": "a shell command",
    "sync.onChange.timeout": f"a number of seconds above 0 to {MAX_DURATION_SECONDS} (an hour)",
}


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    """Return (dotted key, what was expected) for one pydantic error."""
    loc = [str(part) for part in error.get("loc", ()) if not str(part).startswith(("list[", "literal[", "function"))]
    loc = [part for part in loc if part not in {"str", "int", "float", "bool", "dict[str,str]"}]
    key = ".".join(loc) or "(top level)"
    message = str(error.get("msg", "invalid value"))
    if error.get("type") == "value_error":
        message = message.removeprefix("Value error, ") if hasattr(message, "removeprefix") else message
        return key, message
    named = [part for part in loc if not part.isdigit()]  # sync.onChange.0.run -> sync.onChange.run
    if error.get("type") == "extra_forbidden":
        return key, f"not a key reloadd knows there (expected {_expected(named[:-1], message)})"
    if error.get("type") == "missing":
        return key, f"missing (expected {_expected(named, message)})"
    return key, f"expected {_expected(named, message)}"


def _expected(named: list[str], message: str) -> str:
    """What the nearest documented key expects: sync.onChange.run, else sync.onChange, else sync..."""
    for end in range(len(named), 0, -1):
        found = EXPECTED.get(".".join(named[:end]))
        if found is not None:
            return found
    return message[0].lower() + message[1:]


def validate(raw: dict[str, Any], source: str) -> Settings:
    """Validate one layer or the merged config.

    Args:
        raw: keys as in nodemon.json.
        source: the file (or "command line") the values came from, for the error message.

    Returns:
        The validated settings. Raises ConfigError naming ``source`` and the key for anything
        that would fail later: when the app is spawned, a glob compiled, a file looked up.
    """
    data = dict(raw)
    if "exitCrash" in data:
        data.setdefault("exitcrash", data.pop("exitCrash"))
    known = {key: value for key, value in data.items() if key in KNOWN_KEYS}
    problem = _nesting_problem(known) or _text_problem(known)
    if problem:
        raise ConfigError(f"{source}: key '{problem[0]}': {problem[1]}")
    try:
        settings = load(Settings, data, CHECKS)
    except Invalid as exc:
        first = exc.errors[0]
        key, expected = _describe(first)
        got = first.get("input")
        whole_object = isinstance(got, dict) and key.count(".") == 0 and key not in {"env", "hot", "sync"}
        no_value = first.get("type") == "missing"
        said = whole_object or no_value or _shown(got) in expected  # "unknown signal name 'SIGFOO'" names it
        shown = "" if said else f", got {_shown(got)}"
        raise ConfigError(f"{source}: key '{key}': {expected}{shown}") from None
    problem = _env_problem(settings.env) or _glob_problem(settings)
    if problem:
        raise ConfigError(f"{source}: key '{problem[0]}': {problem[1]}")
    return settings


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."


def _key_part(part: Any) -> str:
    text = str(part)
    return text if text.isprintable() else repr(text)[1:-1]


Problem = Optional[tuple[str, str]]  # (dotted key, what is wrong)


def _nesting_problem(values: dict[str, Any]) -> Problem:
    """The first key whose value nests deeper than MAX_CONFIG_DEPTH (checked without recursion)."""
    for key, value in values.items():
        stack = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            if depth > MAX_CONFIG_DEPTH:
                return _key_part(key), f"nested more than {MAX_CONFIG_DEPTH} levels deep"
            children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
            stack.extend((child, depth + 1) for child in children)
    return None


def _text_problem(value: Any, path: tuple[str, ...] = ()) -> Problem:
    """The first string (value or object key) the OS cannot take. Paths, argv and the environment
    all end up as C strings: a NUL byte cuts them, a lone surrogate (a JSON "\\ud800" escape) has
    no bytes at all. Called after the nesting check, so the recursion is shallow."""
    if isinstance(value, str):
        return _bad_text(value, path)
    children: list[tuple[tuple[str, ...], Any]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            where = (*path, _key_part(key))
            found = _bad_text(str(key), where)
            if found:
                return found
            children.append((where, child))
    elif isinstance(value, list):
        children = [((*path, str(index)), child) for index, child in enumerate(value)]
    for where, child in children:
        found = _text_problem(child, where)
        if found:
            return found
    return None


def _bad_text(text: str, path: tuple[str, ...]) -> Problem:
    if "\0" in text:
        return ".".join(path), f"contains a NUL byte, got {_shown(text)}"
    try:
        os.fsencode(text)
    except UnicodeError:
        return ".".join(path), f"is not valid text (a lone surrogate such as \\ud800), got {_shown(text)}"
    return None


def _env_problem(env: dict[str, ScalarEnv]) -> Problem:
    """Names the kernel takes for an environment variable: not empty, no ``=`` (it ends the name)."""
    for name in env:
        if not name:
            return "env", "an environment variable name must not be empty"
        if "=" in name:
            return f"env.{_key_part(name)}", "an environment variable name cannot contain '='"
    return None


def _glob_problem(settings: Settings) -> Problem:
    """Every glob compiled now, so that a bad one is a config error before anything else happens."""
    lists = {"watch": settings.watch or [], "ignore": settings.ignore, "ignoreRoot": settings.ignore_root}
    if settings.hot is not None:
        lists["hot.paths"] = settings.hot.paths
    for number, rule in enumerate(settings.sync.on_change or []):
        lists[f"sync.onChange.{number}.paths"] = rule.paths
    for key, patterns in lists.items():
        for index, pattern in enumerate(patterns):
            try:
                check_glob(pattern)
            except ValueError as exc:
                return f"{key}.{index}", str(exc)
    return None
