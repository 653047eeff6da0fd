"""Config files' formats: JSON and TOML text to values, with errors that name the file, line and
column in reloadd's words (not the parser's, which change between Python versions)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import MAX_CONFIG_DEPTH

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


def read_text(path: Path, name: str) -> str:
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
        return json.loads(read_text(path, name))
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
    # Imported only here: most projects have no TOML config, and every start would load the parser.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.9/3.10 only
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

    try:
        data: dict[str, Any] = tomllib.loads(read_text(path, name))
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
