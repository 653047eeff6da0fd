"""The command to run: nodemon's execMap and exec strings around the script, or the exact argv after ``--``.

Which script runs is script.py's to find; node's inspector flag is inspector.py's to place.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Optional

from ..errors import ConfigError
from .cli import CliArgs
from .inspector import INSPECT_NOT_NODE, insert_inspect, inspect_flag
from .node_argv import is_node_program, node_script
from .paths import exists
from .script import COFFEE_EXTENSIONS, extensions, find_script, script_extension
from .settings import Settings

DEFAULT_EXEC = "node"
# A CoffeeScript script runs with `coffee` unless exec or execMap say otherwise (nodemon's default);
# node's flags then go to node through coffee's --nodejs option, as one argument.
COFFEE = "coffee"
COFFEE_NODE_FLAGS = "--nodejs"
SHELL = ("sh", "-c")
SHELL_PROGRAMS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"})
SHELL_COMMAND_OPTION = re.compile(r"-[a-zA-Z]*c[a-zA-Z]*")  # -c, -lc, -ec: the next word is a command string
FILENAME = "{{filename}}"
PWD = "{{pwd}}"
# Characters that mean the exec string needs a shell: pipes, lists, redirections, subshells,
# expansions, globs, comments, `VAR=value cmd`. Quotes alone do not: shlex handles them.
SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?\[\]{}~!#\n]|^\s*[A-Za-z_][A-Za-z0-9_]*=")
_SINGLE_QUOTED = re.compile(r"'[^']*'")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LEADING_WORDS = re.compile(r"^\s*((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)(\S+)")


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
    inspect = insert_inspect(argv, settings, is_node)
    return Command(argv, False, script, is_node, extensions(settings.ext, script), shlex.join(argv), inspect)


# -- nodemon form ---------------------------------------------------------------------------------------------
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
    inspect = insert_inspect(argv, settings, is_node)
    return Command(argv, False, script, is_node, extensions(settings.ext, script), shlex.join(argv), inspect)


def _coffee_command(settings: Settings, cli: CliArgs, script: Optional[str], script_args: list[str]) -> Command:
    """``coffee [--nodejs "NODE FLAGS"] script args``: execArgs, nodeArgs and the flags before the script
    are node's, so they travel in coffee's one --nodejs argument."""
    node_flags = _interpreter_args(settings, cli, is_node=True)
    inspect = None
    if settings.inspect:
        flag, inspect = inspect_flag(settings.inspect, is_node=True)
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
        flag, inspect = inspect_flag(settings.inspect, is_node)
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


# -- the script on disk ---------------------------------------------------------------------------------------
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
