"""The command to run: nodemon's script discovery, execMap and exec strings, or the exact argv after ``--``.

Also the child's environment (config ``env`` as defaults, ``node_modules/.bin`` on PATH).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Optional

from ..errors import ConfigError
from .cli import NODE_FLAGS_WITH_VALUE, CliArgs, exists, is_file
from .config import INSPECT_DEFAULT_HOST, INSPECT_DEFAULT_PORT, format_inspect, inspect_target, parse_inspect
from .settings import Settings

NODE_PROGRAMS = frozenset({"node", "nodejs"})  # `nodejs` is Debian's older name for the binary
DEFAULT_EXEC = "node"
# A CoffeeScript script runs with `coffee` unless exec or execMap say otherwise (nodemon's default);
# node's flags then go to node through coffee's --nodejs option, as one argument.
COFFEE_EXTENSIONS = ("coffee", "litcoffee")
COFFEE = "coffee"
COFFEE_NODE_FLAGS = "--nodejs"
SHELL = ("sh", "-c")
SHELL_PROGRAMS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"})
SHELL_COMMAND_OPTION = re.compile(r"-[a-zA-Z]*c[a-zA-Z]*")  # -c, -lc, -ec: the next word is a command string
JS_EXTENSIONS = ("js", "mjs", "cjs")
DEFAULT_JS_WATCH = ["js", "mjs", "cjs", "json"]  # nodemon.md "Default extensions"
ALL_EXTENSIONS = "*"
INDEX_JS = "index.js"
PACKAGE_JSON = "package.json"
LOCAL_BIN = Path("node_modules") / ".bin"  # nodemon puts the project's tools first on PATH
# A scripts.start that runs a watcher would start reloadd inside reloadd.
WATCHER_NAMES = re.compile(r"\b(nodemon|reloadd)\b")
FILENAME = "{{filename}}"
PWD = "{{pwd}}"
# Characters that mean the exec string needs a shell: pipes, lists, redirections, subshells,
# expansions, globs, comments, `VAR=value cmd`. Quotes alone do not: shlex handles them.
SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?\[\]{}~!#\n]|^\s*[A-Za-z_][A-Za-z0-9_]*=")
# Node flags that make it run code without a script file.
NODE_EVAL_FLAGS = frozenset({"-e", "--eval", "-p", "--print"})
INSPECT_FLAGS = ("--inspect", "--inspect-brk", "--inspect-wait")
_SINGLE_QUOTED = re.compile(r"'[^']*'")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LEADING_WORDS = re.compile(r"^\s*((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)(\S+)")

NO_SCRIPT = (
    'no script to run: give one (reloadd server.js), set "script" or "exec" in nodemon.json, '
    'add "main" to package.json, or give the exact command (reloadd -- node server.js)'
)
INSPECT_NOT_NODE = (
    "--inspect needs node as the program; put --inspect in your command instead, "
    "e.g. NODE_OPTIONS=--inspect=127.0.0.1:9229"
)


@dataclass
class Command:
    """What to exec, and what the supervisor needs to know about it."""

    argv: list[str]  # exactly what to exec, program first
    shell: bool  # argv is ['sh', '-c', '<string>']
    script: Optional[str]  # script path as given (default extensions, FILENAME, "the script always restarts")
    is_node: bool  # the program is node
    extensions: list[str]  # extensions to watch, without dots; ['*'] = all
    display: str  # for the log line: starting `node server.js`
    inspect: Optional[tuple[str, int]]  # (host, port) of node's inspector, if enabled


def build_command(settings: Settings, cli: CliArgs, cwd: Path) -> Command:
    """Derive the command to run.

    Args:
        settings: the effective configuration.
        cli: the command line (script, node flags, exact argv).
        cwd: the working directory the app will run in.

    Returns:
        The command. Raises ConfigError when there is nothing to run or --inspect cannot apply.
    """
    if cli.exact is not None:
        return exact_command(cli.exact, settings)
    script, script_args, start = find_script(settings, cli, cwd)
    if start is not None:
        return _shell_command(start, [*cli.node_flags, *script_args], None, settings)
    chosen = settings.exec or settings.exec_map.get(script_extension(script))
    if not chosen and script_extension(script) in COFFEE_EXTENSIONS:
        return _coffee_command(settings, cli, script, script_args)
    exec_value = chosen or DEFAULT_EXEC
    if isinstance(exec_value, list):
        return _word_command(list(exec_value), settings, cli, script, script_args, cwd)
    if needs_shell(exec_value):
        substituted = _substitute(exec_value, script, cwd, quote=True)
        extra = _interpreter_args(settings, cli, is_node=False) + _script_part(exec_value, script, script_args)
        return _shell_command(substituted, extra, script, settings)
    return _word_command(_split(exec_value), settings, cli, script, script_args, cwd)


# -- exact form ---------------------------------------------------------------------------------------------
def exact_command(argv: list[str], settings: Settings) -> Command:
    """``reloadd -- COMMAND...``: run argv as given; --inspect goes right after node."""
    if not argv:
        raise ConfigError("--: expected the command to run after --, e.g. reloadd -- node server.js")
    argv = list(argv)
    is_node = is_node_program(argv[0])
    script = node_script(argv) if is_node else None
    inspect = _insert_inspect(argv, settings, is_node)
    return Command(argv, False, script, is_node, extensions(settings.ext, script), shlex.join(argv), inspect)


def node_script(argv: list[str]) -> Optional[str]:
    """The script of a ``node [flags] script [args]`` argv: its first argument that is not a flag."""
    index = _script_index(argv)
    return argv[index] if index is not None else None


def _script_index(argv: list[str]) -> Optional[int]:
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg in NODE_EVAL_FLAGS or arg.split("=", 1)[0] in NODE_EVAL_FLAGS:
            return None
        if arg == "--":
            return index + 1 if index + 1 < len(argv) else None
        if not arg.startswith("-") or arg == "-":
            return index
        index += 2 if arg in NODE_FLAGS_WITH_VALUE else 1
    return None


# -- nodemon form ---------------------------------------------------------------------------------------------
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


def _word_command(
    words: list[str], settings: Settings, cli: CliArgs, script: Optional[str], script_args: list[str], cwd: Path
) -> Command:
    """exec as separate words: program, its args, execArgs, nodeArgs (node only), node flags, script, args."""
    if not words:
        raise ConfigError("exec: expected a program to run, got an empty command")
    uses_filename = any(FILENAME in word for word in words)
    for_shell = _shell_strings(words)
    argv = [_substitute(word, script, cwd, quote=index in for_shell) for index, word in enumerate(words)]
    is_node = is_node_program(argv[0])
    argv += _interpreter_args(settings, cli, is_node)
    argv += ([script] if script and not uses_filename else []) + list(script_args)
    inspect = _insert_inspect(argv, settings, is_node)
    return Command(argv, False, script, is_node, extensions(settings.ext, script), shlex.join(argv), inspect)


def _coffee_command(settings: Settings, cli: CliArgs, script: Optional[str], script_args: list[str]) -> Command:
    """``coffee [--nodejs "NODE FLAGS"] script args``: execArgs, nodeArgs and the flags before the script
    are node's, so they travel in coffee's one --nodejs argument."""
    node_flags = _interpreter_args(settings, cli, is_node=True)
    inspect = None
    if settings.inspect:
        flag, inspect = _inspect_flag(settings.inspect, is_node=True)
        node_flags.insert(0, flag)
    argv = [COFFEE, *([COFFEE_NODE_FLAGS, " ".join(node_flags)] if node_flags else []), *([script] if script else [])]
    argv += script_args
    return Command(argv, False, script, False, extensions(settings.ext, script), shlex.join(argv), inspect)


def _shell_command(string: str, extra: list[str], script: Optional[str], settings: Settings) -> Command:
    """A command with shell syntax (or scripts.start) runs as ``sh -c``; extra words are quoted onto its end."""
    leading = _LEADING_WORDS.match(string)
    is_node = bool(leading) and is_node_program(leading.group(2) if leading else "")
    inspect = None
    if settings.inspect and leading:
        flag, inspect = _inspect_flag(settings.inspect, is_node)
        string = f"{string[: leading.end()]} {flag}{string[leading.end() :]}"
    elif settings.inspect:
        raise ConfigError(INSPECT_NOT_NODE)
    full = " ".join([string.strip(), *map(shlex.quote, extra)])
    return Command([*SHELL, full], True, script, is_node, extensions(settings.ext, script), full, inspect)


def _interpreter_args(settings: Settings, cli: CliArgs, is_node: bool) -> list[str]:
    """execArgs, then nodeArgs when the program is node, then the flags given before the script."""
    return list(settings.exec_args) + (list(settings.node_args) if is_node else []) + list(cli.node_flags)


def _script_part(exec_value: str, script: Optional[str], script_args: list[str]) -> list[str]:
    """With ``{{filename}}`` in exec the script is already placed; else it goes after the interpreter args."""
    return ([script] if script and FILENAME not in exec_value else []) + list(script_args)


def _shell_strings(words: list[str]) -> set[int]:
    """Indexes of the words a shell will parse as a command: the one after ``-c`` (``-lc``, ``-ec``...)
    of sh, bash and the like. A placeholder there is substituted shell-quoted, or a script named
    ``a;touch x;.js`` would run ``touch x``; anywhere else the word is one argv entry, taken as is."""
    found: set[int] = set()
    shell_seen = False
    for index, word in enumerate(words):
        if PurePath(word).name in SHELL_PROGRAMS:
            shell_seen = True
        elif shell_seen and SHELL_COMMAND_OPTION.fullmatch(word):
            found.add(index + 1)
    return found


def _substitute(text: str, script: Optional[str], cwd: Path, quote: bool = False) -> str:
    """nodemon's ``{{filename}}`` and ``{{pwd}}``; quoted when the text goes to a shell."""
    filename, pwd = script or "", str(cwd)
    if quote:
        filename, pwd = shlex.quote(filename), shlex.quote(pwd)
    return text.replace(FILENAME, filename).replace(PWD, pwd)


def needs_shell(exec_value: str) -> bool:
    """Whether the exec string uses shell syntax outside quotes (inside double quotes only $ and ` count)."""
    text = exec_value.replace(FILENAME, "").replace(PWD, "")
    text = _SINGLE_QUOTED.sub("''", text)
    text = _DOUBLE_QUOTED.sub(lambda match: '"' + re.sub(r"[^$`]", "", match.group(1)) + '"', text)
    return bool(SHELL_SYNTAX.search(text))


def _split(exec_value: str) -> list[str]:
    try:
        return shlex.split(exec_value)
    except ValueError as exc:
        raise ConfigError(f"exec: cannot split {exec_value!r} into words: {exc}") from None


# -- inspector -------------------------------------------------------------------------------------------------
def _insert_inspect(argv: list[str], settings: Settings, is_node: bool) -> Optional[tuple[str, int]]:
    """Put ``--inspect=HOST:PORT`` right after node; without reloadd's flag, report node's own one."""
    if not settings.inspect:
        return _own_inspect(argv) if is_node else None
    flag, target = _inspect_flag(settings.inspect, is_node)
    argv.insert(1, flag)
    return target


def _inspect_flag(value: str, is_node: bool) -> tuple[str, tuple[str, int]]:
    if not is_node:
        raise ConfigError(INSPECT_NOT_NODE)
    brk, host, port = inspect_target(value)
    name = "--inspect-brk" if brk else "--inspect"
    return f"{name}={format_inspect(host, port)}", (host, port)


def _own_inspect(argv: list[str]) -> Optional[tuple[str, int]]:
    """The inspector node will open because of an --inspect flag already in argv (before the script)."""
    end = _script_index(argv) or len(argv)
    found: Optional[tuple[str, int]] = None
    for arg in argv[1:end]:
        name, _, value = arg.partition("=")
        if name in INSPECT_FLAGS:
            try:
                found = parse_inspect(value) if value else (INSPECT_DEFAULT_HOST, INSPECT_DEFAULT_PORT)
            except ValueError:
                continue  # node will complain about it itself
    return found


def script_missing(command: Command, cwd: Path) -> bool:
    """The script is named (``server.js``) but not on disk: in a dev pod the code may arrive after the start."""
    return command.script is not None and not exists(cwd / command.script)


def missing_script_warning(command: Command, cwd: Path, watching: bool) -> Optional[str]:
    """Say why the app does not start yet, rather than leave node's 15-line "Cannot find module" to explain it."""
    if not script_missing(command, cwd):
        return None
    if watching:
        return f"{command.script} does not exist (yet): it starts when it appears"
    return f"{command.script} does not exist: starting it anyway (not watching, so nothing would start it later)"


def is_node_program(program: str) -> bool:
    return PurePath(program).name in NODE_PROGRAMS


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


# -- the child's environment -------------------------------------------------------------------------------------
def child_env(settings: Settings, base_env: Mapping[str, str], cwd: Path) -> dict[str, str]:
    """The app's environment.

    Args:
        settings: config ``env`` supplies defaults; the caller's environment wins
            (docs/behaviour.md "Deliberate differences").
        base_env: reloadd's own environment.
        cwd: the app's working directory, whose ``node_modules/.bin`` goes first on PATH.

    Returns:
        A new mapping of strings.
    """
    env = {key: env_value(value) for key, value in settings.env.items()}
    env.update(base_env)
    local_bin = str(cwd / LOCAL_BIN)
    parts = (env.get("PATH") or os.defpath).split(os.pathsep)
    env["PATH"] = os.pathsep.join([local_bin, *(part for part in parts if part != local_bin)])
    return env


def env_value(value: Any) -> str:
    """Stringify as JavaScript would: true -> "true", 8000.0 -> "8000"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
