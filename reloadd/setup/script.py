"""The script: which one runs (nodemon's discovery: the command line, config ``script``, package.json
``main``, index.js, then ``scripts.start``) and which extensions it makes reloadd watch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePath
from typing import Any, Optional

from ..errors import ConfigError
from .cli import CliArgs
from .paths import exists, is_file
from .settings import Settings

COFFEE_EXTENSIONS = ("coffee", "litcoffee")  # CoffeeScript's, run with `coffee` (command.py)
JS_EXTENSIONS = ("js", "mjs", "cjs")
DEFAULT_JS_WATCH = ["js", "mjs", "cjs", "json"]  # nodemon.md "Default extensions"
ALL_EXTENSIONS = "*"
INDEX_JS = "index.js"
PACKAGE_JSON = "package.json"
# A scripts.start that runs a watcher would start reloadd inside reloadd.
WATCHER_NAMES = re.compile(r"\b(nodemon|reloadd)\b")

NO_SCRIPT = (
    'no script to run: give one (reloadd server.js), set "script" or "exec" in nodemon.json, '
    'add "main" to package.json, or give the exact command (reloadd -- node server.js)'
)


# -- discovery ----------------------------------------------------------------------------------------------------
def find_script(settings: Settings, cli: CliArgs, cwd: Path) -> tuple[Optional[str], list[str], Optional[str]]:
    """nodemon's discovery: (script, script args, scripts.start command if that is what runs)."""
    positional = list(cli.positional)
    if cli.script_found:
        return expand_script(positional[0], cwd), positional[1:] or list(settings.args), None
    args = positional or list(settings.args)
    if settings.script:
        return expand_script(settings.script, cwd), args, None
    # found relative to a config `cwd`, or completed with the first watched extension (`hello -e py`)
    first = first_extension(settings.ext)
    if positional and _exists_as_script(positional[0], cwd, first):
        return expand_script(positional[0], cwd, first), positional[1:] or list(settings.args), None
    if settings.exec:
        return None, args, None
    return _discover(cwd, args)


def _discover(cwd: Path, args: list[str]) -> tuple[Optional[str], list[str], Optional[str]]:
    """No script and no exec: package.json main, index.js, then scripts.start."""
    package = _package(cwd)
    main = package.get("main")
    if isinstance(main, str) and main:
        return main, args, None
    if is_file(cwd / INDEX_JS):
        return INDEX_JS, args, None
    scripts = package.get("scripts")
    start = scripts.get("start") if isinstance(scripts, dict) else None
    if isinstance(start, str) and start.strip() and not WATCHER_NAMES.search(start):
        return None, args, start
    raise ConfigError(NO_SCRIPT)


def _package(cwd: Path) -> dict[str, Any]:
    path = cwd / PACKAGE_JSON
    if not is_file(path):
        return {}
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"{PACKAGE_JSON}: cannot read it to find the script: {exc}") from None
    return data if isinstance(data, dict) else {}


def _exists_as_script(arg: str, cwd: Path, extension: str = JS_EXTENSIONS[0]) -> bool:
    return arg == "." or exists(cwd / arg) or exists(Path(f"{cwd / arg}.{extension}"))


def expand_script(script: str, cwd: Path, extension: str = JS_EXTENSIONS[0]) -> str:
    """nodemon runs ``server`` as ``server.js`` (or ``hello`` as ``hello.py`` with ``-e py``) when only
    the latter exists."""
    if not exists(cwd / script) and exists(Path(f"{cwd / script}.{extension}")):
        return f"{script}.{extension}"
    return script


def first_extension(ext: Optional[str]) -> str:
    """The extension nodemon completes a script name with: the first one of ``ext``, else js."""
    words = [word.lstrip(".") for word in re.findall(r"[^,*\s]+", ext or "")]
    return next((word for word in words if word), JS_EXTENSIONS[0])


# -- extensions ---------------------------------------------------------------------------------------------------
def script_extension(script: Optional[str]) -> str:
    return PurePath(script).suffix.lstrip(".") if script else ""


def extensions(ext: Optional[str], script: Optional[str]) -> list[str]:
    """``ext`` if set (split on commas, spaces and ``*``, dots stripped; ``*`` or empty = all), else from the script."""
    if ext is not None:
        words = [word.lstrip(".") for word in re.findall(r"[^,*\s]+", ext)]
        unique = list(dict.fromkeys(word for word in words if word))
        return unique or [ALL_EXTENSIONS]
    suffix = script_extension(script)
    if not suffix or suffix in JS_EXTENSIONS:
        return list(DEFAULT_JS_WATCH)
    if suffix in COFFEE_EXTENSIONS:  # either kind of CoffeeScript file may be required by the other
        return [suffix, *(e for e in COFFEE_EXTENSIONS if e != suffix), "json"]
    return [suffix, "json"]
