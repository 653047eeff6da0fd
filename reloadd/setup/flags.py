"""reloadd's options: the one table that the command-line parser (cli.py) and ``--help`` both read.

Each flag says what it sets (a config key in nodemon's name, or a CliArgs attribute), how its
value is parsed (values.py), the environment variable the help names for it (environment.py
reads those) and its section of the help text.
"""

from __future__ import annotations

import json
import signal
import textwrap
from typing import Any, Callable, NamedTuple, Optional

from .. import __version__
from ..errors import ConfigError
from .inspector import format_inspect, parse_inspect
from .settings import DEFAULT_EVENT_TIMEOUT, DEFAULT_POLL_INTERVAL_MS, DEFAULT_STOP_TIMEOUT, signal_number
from .values import parse_duration_ms, parse_log_format, parse_milliseconds, parse_seconds


def _text(name: str, text: str) -> str:
    """A value taken as given (a path, a glob, a command)."""
    return text


def parse_signal(name: str, text: str) -> str:
    """Check a signal name or number and return its canonical name (``usr2`` -> ``SIGUSR2``)."""
    try:
        return signal.Signals(signal_number(text)).name
    except ValueError:
        raise ConfigError(f"{name}: unknown signal {text!r}; use a name such as SIGTERM or SIGUSR2") from None


def inspect_parser(brk: bool) -> Callable[[str, str], str]:
    """The parser of --inspect (``brk=False``) or --inspect-brk: ``[HOST:]PORT`` to the canonical value."""

    def parse(name: str, text: str) -> str:
        try:
            return format_inspect(*parse_inspect(text), brk=brk)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}, got {text!r}") from None

    return parse


class Flag(NamedTuple):
    """One option: its names, what it sets and how, and its line in HELP."""

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
         key="inspect", parse=inspect_parser(False), optional_value=True, metavar="[=[HOST:]PORT]",
         section=RUN),
    Flag(("--inspect-brk",), "as --inspect, and stop before the first line of the app",
         key="inspect", parse=inspect_parser(True), optional_value=True, metavar="[=[HOST:]PORT]",
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
