"""``main()``: parse, load, plan, supervise; the one place errors become exit codes."""

from __future__ import annotations

import json
import os
import sys
import traceback

from . import __version__
from .cli import HELP, CliArgs, parse_args
from .command import build_command, child_env
from .errors import ReloaddError
from .matching import Rules
from .output import out, use_colour
from .sources import load_settings
from .supervisor import Plan, Supervisor
from .sync.agent import agent_main
from .sync.laptop import sync_main
from .sync.options import SYNC_HELP, parse_sync_args

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in reloadd, not in the app or its config
# Subcommands: only as the very first argument, and only these bare words. `reloadd sync.js`
# and `reloadd server.js sync` still run a script, as nodemon would.
SYNC_COMMAND = "sync"
AGENT_COMMAND = "agent"


def make_plan(cli: CliArgs) -> Plan:
    """Read every config source and derive the command to run: the same steps at start and on config reload."""
    loaded = load_settings(cli, env=os.environ)
    command = build_command(loaded.settings, cli, loaded.cwd)
    env = child_env(loaded.settings, os.environ, loaded.cwd)
    rules = Rules(loaded.settings, cwd=loaded.cwd, script=command.script, extensions=command.extensions)
    return Plan(loaded.settings, command, env, loaded.cwd, rules, list(loaded.files), loaded.warnings, loaded.notices)


def configure_output(plan: Plan) -> None:
    settings = plan.settings
    json_lines = settings.log_format == "json"
    out.configure(
        colour=use_colour(sys.stderr, os.environ, settings.colours),
        verbose=settings.verbose,
        quiet=settings.quiet,
        json_lines=json_lines,
    )


def run(argv: list[str]) -> int:
    if argv[:1] == [SYNC_COMMAND]:
        return run_sync(argv[1:])
    if argv[:1] == [AGENT_COMMAND]:
        return agent_main(argv[1:], os.environ)
    cli = parse_args(argv)
    if cli.help:
        print(HELP)
        return 0
    if cli.version:
        print(__version__)
        return 0
    plan = make_plan(cli)
    configure_output(plan)
    if cli.dump:
        dump = {"config": plan.settings.model_dump(by_alias=True), "command": plan.command.argv, "cwd": str(plan.cwd)}
        print(json.dumps(dump, indent=2, default=str))
        return 0
    os.chdir(plan.cwd)
    out.info(__version__)
    for warning in plan.warnings:
        out.warn(warning)
    for notice in plan.notices:
        out.info(notice)
    return Supervisor(plan, replan=lambda: make_plan(cli)).run()


def run_sync(argv: list[str]) -> int:
    options = parse_sync_args(argv)
    if options is None:
        print(SYNC_HELP)
        return 0
    return sync_main(options, os.environ)


def main(argv: list[str]) -> int:
    options = argv[: argv.index("--")] if "--" in argv else argv  # after `--` the flags are the app's
    verbose = any(arg in ("-V", "--verbose") for arg in options)
    try:
        return run(argv)
    except ReloaddError as exc:
        out.error(exc.message)
        if verbose:
            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place a bug becomes a message instead of a traceback
        if verbose:
            traceback.print_exc()
        out.error(f"internal error: {type(exc).__name__}: {exc} (run with --verbose for the traceback)")
        return EXIT_INTERNAL
