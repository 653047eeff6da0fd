"""The command line: nodemon's flags plus reloadd's, split the way nodemon splits them.

``reloadd [options] [node flags] script [script args]`` (nodemon style) or
``reloadd [options] -- COMMAND [ARGS...]`` (exact form). Hand-written rather than argparse:
nodemon's rules (the first argument that exists on disk is the script, unknown flags before it
belong to node, reloadd's flags are recognised anywhere before ``--``) do not fit argparse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError
from .flags import FLAGS, Flag
from .node_argv import NODE_FLAGS_WITH_VALUE
from .paths import current_dir, exists

EXACT_MARK = "--"  # everything after it is the command, run exactly as given
# A missing file with one of these suffixes is still the script: in a dev pod the code may not
# have been synced yet, and treating `server.js` as a node flag would be far more confusing.
SCRIPT_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx", ".coffee", ".litcoffee")


@dataclass
class CliArgs:
    """What the command line asked for, before any config file is read."""

    options: dict[str, Any] = field(default_factory=dict)  # config keys (nodemon names) set by flags
    positional: list[str] = field(default_factory=list)  # script + script args (nodemon style)
    node_flags: list[str] = field(default_factory=list)  # unknown flags before the script: the interpreter's
    exact: Optional[list[str]] = None  # argv after `--` (exact form), else None
    config_file: Optional[str] = None
    cwd: Optional[str] = None
    dump: bool = False
    help: bool = False
    version: bool = False
    verbose: bool = False  # so main() knows to show tracebacks
    script_found: bool = False  # positional[0] is the script (it existed, or looked like one, when parsed)


_BY_NAME: dict[str, Flag] = {name: flag for flag in FLAGS for name in flag.names}


# -- splitting ----------------------------------------------------------------------------------------
def parse_args(argv: list[str], base: Optional[Path] = None) -> CliArgs:
    """Split reloadd's command line.

    Args:
        argv: the arguments after the program name.
        base: where "exists on disk" is checked; default: ``--cwd`` if given, else the current directory.

    Returns:
        The parsed arguments. Raises ConfigError (exit 2) on a usage error.
    """
    cli = CliArgs()
    where = base if base is not None else _base_dir(argv)
    before: list[tuple[str, bool]] = []  # (argument, is a flag or a flag's value) before the script
    after: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == EXACT_MARK:
            _take_rest(cli, argv[index + 1 :], after)
            break
        flag, inline = _lookup(arg)
        if flag is not None:
            index = _apply(cli, flag, arg, inline, argv, index)
        elif cli.script_found:
            after.append(arg)
        else:
            index = _before_script(cli, argv, index, before, where)
        index += 1
    _finish(cli, before, after)
    return cli


def _take_rest(cli: CliArgs, rest: list[str], after: list[str]) -> None:
    """``--`` after the script hands the rest to the script (nodemon); before it, the rest is the command."""
    if cli.script_found:
        after.extend(rest)
    else:
        cli.exact = list(rest)


def _before_script(cli: CliArgs, argv: list[str], index: int, before: list[tuple[str, bool]], where: Path) -> int:
    """Handle one argument seen before the script; return the index of the last argument used."""
    arg = argv[index]
    if arg.startswith("-") and arg != "-":
        before.append((arg, True))
        if arg in NODE_FLAGS_WITH_VALUE and index + 1 < len(argv) and argv[index + 1] != EXACT_MARK:
            before.append((argv[index + 1], True))
            return index + 1
    elif is_script(arg, where):
        cli.positional = [arg]
        cli.script_found = True
        cli.node_flags = [item for item, _ in before]  # everything before the script belongs to node
        before.clear()
    else:
        before.append((arg, False))
    return index


def _finish(cli: CliArgs, before: list[tuple[str, bool]], after: list[str]) -> None:
    if cli.exact is not None:
        _check_exact_prefix(before)
        return
    if cli.script_found:
        cli.positional.extend(after)
        return
    # No script on the command line: flags are node's, other words are arguments for the script
    # that script.py discovers (package.json main, index.js...).
    cli.node_flags = [item for item, is_flag in before if is_flag]
    cli.positional = [item for item, is_flag in before if not is_flag]


def _check_exact_prefix(before: list[tuple[str, bool]]) -> None:
    for item, is_flag in before:
        if is_flag and item.startswith("-"):
            raise ConfigError(
                f"unknown option {item!r}; with `--`, flags for node go in the command: -- node {item} server.js"
            )
        if not is_flag:
            raise ConfigError(f"unexpected argument {item!r} before `--`; the command to run goes after it")


def is_script(arg: str, where: Path) -> bool:
    """nodemon's test: ``.``, a path that exists, or ``<arg>.js`` exists; reloadd adds a script-like suffix."""
    if arg == ".":
        return True
    path = where / arg
    return exists(path) or exists(Path(f"{path}.js")) or arg.lower().endswith(SCRIPT_SUFFIXES)


def _base_dir(argv: list[str]) -> Path:
    """Where to look for the script: --cwd (nodemon chdirs as soon as it sees it), else here."""
    here = current_dir()
    options = argv[: argv.index(EXACT_MARK)] if EXACT_MARK in argv else argv
    for index, arg in enumerate(options):
        if arg == "--cwd" and index + 1 < len(options):
            return here / options[index + 1]
        if arg.startswith("--cwd="):
            return here / arg.split("=", 1)[1]
    return here


# -- applying one flag ----------------------------------------------------------------------------------
def _lookup(arg: str) -> tuple[Optional[Flag], Optional[str]]:
    """The flag ``arg`` names and its ``=value`` if written ``--name=value``."""
    if arg in _BY_NAME:
        return _BY_NAME[arg], None
    if arg.startswith("--") and "=" in arg:
        name, value = arg.split("=", 1)
        if name in _BY_NAME:
            return _BY_NAME[name], value
    return None, None


def _apply(cli: CliArgs, flag: Flag, arg: str, inline: Optional[str], argv: list[str], index: int) -> int:
    """Record one flag; return the index of the last argument it used."""
    name = arg.split("=", 1)[0]
    if flag.parse is None or (flag.optional_value and inline is None):
        if inline is not None:
            raise ConfigError(f"{name}: takes no value, got {arg!r}")
        value = flag.const if flag.parse is None else flag.parse(name, "")
    else:
        if inline is None:
            index += 1
            if index >= len(argv) or argv[index] == EXACT_MARK:
                raise ConfigError(f"{name}: missing value ({flag.metavar or 'VALUE'})")
            inline = argv[index]
        value = flag.parse(name, inline)
    _store(cli, flag, value)
    return index


def _store(cli: CliArgs, flag: Flag, value: Any) -> None:
    if flag.key and flag.append:
        cli.options.setdefault(flag.key, []).append(value)
    elif flag.key:
        cli.options[flag.key] = value
    if flag.attr:
        setattr(cli, flag.attr, value)
