"""The command line: nodemon's flags plus reloadd's, split the way nodemon splits them.

``reloadd [options] [node flags] script [script args]`` (nodemon style) or
``reloadd [options] -- COMMAND [ARGS...]`` (exact form). Hand-written rather than argparse:
nodemon's rules (the first argument that exists on disk is the script, unknown flags before it
belong to node, reloadd's flags are recognised anywhere before ``--``) do not fit argparse.
"""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .. import __version__
from ..errors import ConfigError
from .config import (
    MAX_POLL_INTERVAL_MS,
    check_milliseconds,
    check_poll_interval,
    check_seconds,
    format_inspect,
    parse_inspect,
)
from .settings import DEFAULT_EVENT_TIMEOUT, DEFAULT_POLL_INTERVAL_MS, DEFAULT_STOP_TIMEOUT, signal_number

EXACT_MARK = "--"  # everything after it is the command, run exactly as given
MS_PER_SECOND = 1000.0
LOG_FORMATS = ("text", "json")

# Node flags whose value is the next argument (`-r dotenv/config`): the value is not the script.
NODE_FLAGS_WITH_VALUE = frozenset(
    {
        "-r",
        "--require",
        "--import",
        "--loader",
        "--experimental-loader",
        "--env-file",
        "--env-file-if-exists",
        "--conditions",
        "--input-type",
        "--title",
        "--inspect-port",
        "--debug-port",
        "--redirect-warnings",
        "--disable-warning",
        "--unhandled-rejections",
        "--dns-result-order",
        "--diagnostic-dir",
        "--report-dir",
        "--report-directory",
        "--report-filename",
        "--report-signal",
        "--heapsnapshot-signal",
        "--icu-data-dir",
        "--openssl-config",
        "--cpu-prof-dir",
        "--cpu-prof-name",
        "--heap-prof-dir",
        "--heap-prof-name",
        "--watch-path",
        "--stack-trace-limit",
        "--max-old-space-size",
    }
)
# A missing file with one of these suffixes is still the script: in a dev pod the code may not
# have been synced yet, and treating `server.js` as a node flag would be far more confusing.
SCRIPT_SUFFIXES = (".js", ".mjs", ".cjs", ".ts", ".mts", ".cts", ".jsx", ".tsx", ".coffee", ".litcoffee")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$", re.IGNORECASE)
_MILLISECONDS = re.compile(r"^\s*(\d+)\s*(ms)?\s*$", re.IGNORECASE)


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


# -- value parsers, shared with sources.py for the environment variables ---------------------------
def parse_duration_ms(name: str, text: str) -> float:
    """nodemon's CLI delay units: ``2500ms`` -> 2500, ``5s`` -> 5000, bare seconds ``2.5`` -> 2500.

    Checked as config ``delay`` is (check_milliseconds): a flag and a file take the same values.
    """
    match = _DURATION.match(text)
    try:
        if not match:
            raise ValueError("not a duration")
        number = float(match.group(1))
        return check_milliseconds(number if (match.group(2) or "").lower() == "ms" else number * MS_PER_SECOND)
    except ValueError:
        raise ConfigError(
            f"{name}: expected a duration like 2.5, 2500ms or 5s (at most an hour), got {text!r}"
        ) from None


def parse_seconds(name: str, text: str, positive: bool = False) -> float:
    """A duration in seconds (``5``, ``2.5``, ``500ms``, ``5s``), checked as config ``stopTimeout``/``eventTimeout``."""
    match = _DURATION.match(text)
    try:
        if not match:
            raise ValueError("not a duration")
        return check_seconds(parse_duration_ms(name, text) / MS_PER_SECOND, positive)
    except (ValueError, ConfigError):
        wanted = "a positive" if positive else "a"
        raise ConfigError(
            f"{name}: expected {wanted} number of seconds like 5, 2.5 or 500ms (at most an hour), got {text!r}"
        ) from None


def parse_milliseconds(name: str, text: str) -> int:
    """A whole number of milliseconds (``100`` or ``100ms``), checked as config ``pollingInterval``."""
    match = _MILLISECONDS.match(text)
    try:
        if not match:
            raise ValueError("not a number of milliseconds")
        return check_poll_interval(int(match.group(1)))
    except ValueError:
        raise ConfigError(
            f"{name}: expected a whole number of milliseconds like 100 (1 to {MAX_POLL_INTERVAL_MS}, an hour), "
            f"got {text!r}"
        ) from None


def parse_log_format(name: str, text: str) -> str:
    word = text.strip().lower()
    if word not in LOG_FORMATS:
        raise ConfigError(f"{name}: expected text or json, got {text!r}")
    return word


def parse_signal(name: str, text: str) -> str:
    """Check a signal name or number and return its canonical name (``usr2`` -> ``SIGUSR2``)."""
    try:
        return signal.Signals(signal_number(text)).name
    except ValueError:
        raise ConfigError(f"{name}: unknown signal {text!r}; use a name such as SIGTERM or SIGUSR2") from None


def _parse_inspect_flag(brk: bool) -> Callable[[str, str], str]:
    def parse(name: str, text: str) -> str:
        try:
            return format_inspect(*parse_inspect(text), brk=brk)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}, got {text!r}") from None

    return parse


def _text(name: str, text: str) -> str:
    return text


# -- the option table: parsing and HELP both come from it ------------------------------------------
@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    help: str
    key: str = ""  # config key set in CliArgs.options
    attr: str = ""  # CliArgs attribute set instead (or as well)
    parse: Optional[Callable[[str, str], Any]] = None  # takes a value, converted by this; None = a switch
    const: Any = True  # what a switch sets
    append: bool = False  # repeatable: the values collect into a list
    optional_value: bool = False  # `--inspect` or `--inspect=VALUE` (never the next argument)
    metavar: str = ""
    env: str = ""
    section: str = ""
    config_note: str = ""  # the config key in HELP when the flag does not set CliArgs.options


WATCH, RUN, STOP, OUTPUT, CONFIG = "Watching", "Running", "Stopping and crashing", "Output", "Config and info"

FLAGS: tuple[Flag, ...] = (
    Flag(("-w", "--watch"), "watch this directory, file or glob (repeat for more; default: the working dir)",
         key="watch", parse=_text, append=True, metavar="PATH", section=WATCH),
    Flag(("-i", "--ignore"), "ignore this file, directory or glob (repeatable)",
         key="ignore", parse=_text, append=True, metavar="GLOB", section=WATCH),
    Flag(("-e", "--ext"), "extensions to watch, e.g. js,mjs,json; * or '' = all (default: from the script)",
         key="ext", parse=_text, metavar="LIST", section=WATCH),
    Flag(("-d", "--delay"), "wait for this much quiet after a change before restarting: 2.5 (seconds), 2500ms, 5s",
         key="delay", parse=parse_duration_ms, metavar="TIME", section=WATCH),
    Flag(("-L", "--legacy-watch"), "poll instead of OS notifications (default: decided per mount)",
         key="legacyWatch", env="RELOADD_POLL=1, CHOKIDAR_USEPOLLING", section=WATCH),
    Flag(("-P", "--polling-interval"),
         "poll period in milliseconds; a change is seen within this + 100 ms (on huge trees later, "
         f"and the log says so) (default {DEFAULT_POLL_INTERVAL_MS})",
         key="pollingInterval", parse=parse_milliseconds, metavar="MS", env="RELOADD_POLL_INTERVAL", section=WATCH),
    Flag(("--no-watch",), "do not watch: supervise only, as an init (automatic with NODE_ENV=production)",
         key="watch", const=False, env="RELOADD_WATCH=0", section=WATCH),
    Flag(("-C", "--on-change-only"), "do not start the app until the first change",
         key="runOnChangeOnly", section=WATCH),
    Flag(("-x", "--exec"), "run the script with this program, e.g. 'ts-node' or 'python -u' (default: node)",
         key="exec", parse=_text, metavar="CMD", section=RUN),
    Flag(("--inspect",), "start node with its inspector on [HOST:]PORT (default 127.0.0.1:9229)",
         key="inspect", parse=_parse_inspect_flag(False), optional_value=True, metavar="[=[HOST:]PORT]",
         section=RUN),
    Flag(("--inspect-brk",), "as --inspect, and stop before the first line of the app",
         key="inspect", parse=_parse_inspect_flag(True), optional_value=True, metavar="[=[HOST:]PORT]",
         section=RUN),
    Flag(("--no-warm",), "start every generation cold: no node waiting with the app's dependencies loaded "
         "(see README, Warm restarts)", key="warm", const=False, env="RELOADD_WARM=0", section=RUN),
    Flag(("-I", "--no-stdin"), "do not pass stdin to the app (and do not read `rs` from it)",
         key="stdin", const=False, section=RUN),
    Flag(("--spawn",), "accepted and ignored, for nodemon compatibility: reloadd always spawns (--dump shows "
         "the value given)", key="spawn", section=RUN),
    Flag(("--cwd",), "run in this directory (config files are looked up there too)",
         attr="cwd", parse=_text, metavar="DIR", section=RUN, config_note="cwd"),
    Flag(("-s", "--signal"), "signal that stops the app on restart (default SIGUSR2, as nodemon)",
         key="signal", parse=parse_signal, metavar="SIGNAL", section=STOP),
    Flag(("--stop-timeout",), f"seconds the app's tree gets to exit before SIGKILL (default {DEFAULT_STOP_TIMEOUT:g})",
         key="stopTimeout", parse=parse_seconds, metavar="SECONDS", env="RELOADD_STOP_TIMEOUT", section=STOP),
    Flag(("--exitcrash",), "exit with the app's status when it crashes, instead of waiting for a change",
         key="exitcrash", section=STOP),
    Flag(("--restart-on-crash",), "restart a crashed app after a growing pause, instead of waiting for a change",
         key="restartOnCrash", section=STOP),
    Flag(("--event-timeout",), f"seconds an event hook may run before it is killed (default {DEFAULT_EVENT_TIMEOUT:g})",
         key="eventTimeout", parse=lambda name, text: parse_seconds(name, text, positive=True),
         metavar="SECONDS", section=STOP),
    Flag(("-V", "--verbose"),
         "say more: config files read, ignore rules, each change and why it restarts or not, delays, "
         "tracebacks of internal errors",
         key="verbose", attr="verbose", section=OUTPUT),
    Flag(("-q", "--quiet"), "only errors and warnings", key="quiet", section=OUTPUT),
    Flag(("--no-colours", "--no-colors"), "no colour (also NO_COLOR=1; FORCE_COLOR=1 forces it)",
         key="colours", const=False, section=OUTPUT),
    Flag(("--log-format",), "text, or json for one JSON object per line",
         key="logFormat", parse=parse_log_format, metavar="FORMAT", env="RELOADD_LOG_FORMAT", section=OUTPUT),
    Flag(("--config",), "read this .json or .toml file instead of reloadd.toml / nodemon.json (it must exist)",
         attr="config_file", parse=_text, metavar="FILE", section=CONFIG),
    Flag(("--dump",), "print the effective config and the command as JSON, then exit 0 (also when the program "
         "is missing)", attr="dump", section=CONFIG),
    Flag(("--no-update-notifier",), "accepted for nodemon compatibility (reloadd never checks)", section=CONFIG),
    Flag(("-v", "--version"), "print the version and exit", attr="version", section=CONFIG),
    Flag(("-h", "--help"), "print this help and exit", attr="help", section=CONFIG),
)  # fmt: skip

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
    # that command.py discovers (package.json main, index.js...).
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


def exists(path: Path) -> bool:
    """Path.exists that says no to names the OS rejects (too long, NUL byte) instead of raising."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def is_file(path: Path) -> bool:
    """Path.is_file that says no when the path cannot even be looked at (a $HOME reloadd may not
    search, a name too long) instead of raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def current_dir() -> Path:
    """os.getcwd(), or a usage error when the directory reloadd was started in has been removed."""
    try:
        return Path(os.getcwd())
    except OSError as exc:
        raise ConfigError(f"the current directory cannot be used ({exc.strerror}): cd to one that exists") from None


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


# -- help ---------------------------------------------------------------------------------------------------
HELP_WIDTH = 100
HELP_COLUMN = 30


def _config_note(flag: Flag) -> str:
    if flag.config_note:
        return flag.config_note
    return f"{flag.key}: {json.dumps(flag.const)}" if flag.parse is None else flag.key


def _help_line(flag: Flag) -> str:
    """One option: names in the first column, then its help; the config key and variable stay on one line."""
    names = ", ".join(flag.names)
    if flag.metavar:
        names += flag.metavar if flag.optional_value else f" {flag.metavar}"
    where = [
        f"config: {_config_note(flag)}" if flag.key or flag.config_note else "",
        f"env: {flag.env}" if flag.env else "",
    ]
    extra = "; ".join(item for item in where if item)
    width = HELP_WIDTH - HELP_COLUMN
    lines = textwrap.wrap(flag.help, width)
    if extra and len(lines[-1]) + len(extra) + 3 <= width:
        lines[-1] += f" [{extra}]"
    elif extra:
        lines.append(f"[{extra}]")
    head = f"  {names} ".ljust(HELP_COLUMN)
    if len(head) > HELP_COLUMN:
        head = f"  {names}\n" + " " * HELP_COLUMN
    return head + ("\n" + " " * HELP_COLUMN).join(lines)


def _help_text() -> str:
    parts = [
        f"reloadd {__version__}: restart a Node.js app when its files change; safe as PID 1 in a container.",
        "",
        "Usage:",
        "  reloadd [options] [node flags] [script] [script args...]   nodemon style",
        "  reloadd [options] -- COMMAND [ARGS...]                       run exactly this command",
        "  reloadd sync [LOCAL_DIR] --to TARGET[:DIR]                   send code into a dev pod (sync --help)",
        "  reloadd agent [DIR]                                          the pod side of sync (started by it)",
        "`sync` and `agent` are subcommands only as the bare first argument (`reloadd sync.js` runs a script).",
        "",
        "Without a script: package.json main, then index.js, then scripts.start. Unknown flags before the",
        "script go to node (reloadd --trace-warnings server.js). `hello -e py` runs hello.py (the first ext);",
        "A missing server.js is still the script (a dev pod's code may come later): it starts once it exists.",
        'execMap picks the program (.py python, .ts ts-node); .coffee runs with coffee --nodejs "NODE FLAGS".',
        "Config: --config FILE, else reloadd.toml, [tool.reloadd] in pyproject.toml, nodemon.json,",
        "package.json nodemonConfig; plus $HOME/nodemon.json.",
        "Precedence: command line > environment > local config > global config > defaults.",
    ]
    for section in (WATCH, RUN, STOP, OUTPUT, CONFIG):
        parts += ["", f"{section}:"] + [_help_line(flag) for flag in FLAGS if flag.section == section]
    parts += [
        "",
        "Environment: RELOADD_WATCH=1 watches even with NODE_ENV=production; NO_COLOR, FORCE_COLOR.",
        "While watching, reloadd listens for `reloadd sync` batches on a Unix socket in /tmp/reloadd-UID",
        "(RELOADD_CONTROL_DIR); RELOADD_SYNC=0 turns that off and makes `reloadd agent` refuse.",
        "Type rs and Enter to restart (SIGHUP restarts too); SIGTERM/SIGINT stop the app and exit with its status.",
        "On a terminal: Ctrl-Z suspends the app and reloadd (fg resumes both); `reloadd ... &` leaves the",
        "terminal to the shell; closing the terminal stops the app and reloadd, as Ctrl-C does (not with nohup).",
        "Examples:",
        "  reloadd server.js 8080",
        "  reloadd -w src -e js,json --inspect server.js",
        "  reloadd --stop-timeout 10 -- node --enable-source-maps dist/server.js",
    ]
    return "\n".join(parts)


HELP = _help_text()
