"""``main()``: parse, load, plan, supervise; the one place errors become exit codes."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Optional

from . import __version__
from .errors import EXIT_NOT_FOUND, ReloaddError
from .output import out, use_colour

if TYPE_CHECKING:
    from .setup.cli import CliArgs
    from .setup.plan import Plan

# The modules each command needs are imported when it runs: the pod-side agent, which every sync
# start and reconnect waits for, needs none of the supervisor's (pydantic, watchfiles), and
# importing them cost it most of its start (measured in bench/sync_start.py).

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in reloadd, not in the app or its config
EXIT_OUTPUT = 74  # EX_IOERR: --help, --version or --dump could not be written to stdout (a full disk)
# Subcommands: only as the very first argument, and only these bare words. `reloadd sync.js`
# and `reloadd server.js sync` still run a script, as nodemon would.
SYNC_COMMAND = "sync"
# `reloadd -V` alone is usually someone asking for the version (-V is nodemon's --verbose).
VERBOSE_IS_NOT_VERSION = " (-V is --verbose, as in nodemon; the version is -v)"
AGENT_COMMAND = "agent"


def make_plan(cli: CliArgs, check_program: bool = True) -> Plan:
    """Read every config source and derive the command to run: the same steps at start and on config reload.

    Everything that could make the next start fail is checked here, so that a config edit that
    would break it is reported (a ReloaddError) while the running app is left alone. ``--dump``
    passes ``check_program=False``: what would run matters most when the program is missing.
    """
    from .host.tree import resolve_program
    from .setup.child_env import child_env
    from .setup.command import build_command, missing_script_warning
    from .setup.matching import Rules
    from .setup.plan import Plan
    from .setup.sources import load_settings

    loaded = load_settings(cli, env=os.environ)
    command = build_command(loaded.settings, cli, loaded.cwd)
    env = child_env(loaded.settings, os.environ, loaded.cwd)
    if check_program:
        resolve_program(command.argv[0], env.get("PATH"), str(loaded.cwd))
    rules = Rules(loaded.settings, cwd=loaded.cwd, script=command.script, extensions=command.extensions)
    missing = missing_script_warning(command, loaded.cwd, loaded.settings.watching)
    warnings = [*loaded.warnings, *([missing] if missing else [])]
    files, candidates = list(loaded.files), loaded.candidates
    return Plan(loaded.settings, command, env, loaded.cwd, rules, files, warnings, loaded.notices, candidates)


def configure_output(plan: Plan) -> None:
    settings = plan.settings
    json_lines = settings.log_format == "json"
    out.configure(
        colour=use_colour(sys.stderr, os.environ, settings.colours),
        verbose=settings.verbose,
        quiet=settings.quiet,
        json_lines=json_lines,
    )


def _print(text: str) -> None:
    """Output the user asked for on stdout; a stdout that cannot take it is reported, not a crash."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        raise  # the reader stopped reading (`| head`): not an error, main() says nothing
    except OSError as exc:
        raise ReloaddError(f"cannot write to stdout: {exc.strerror or exc}", EXIT_OUTPUT) from None


def run(argv: list[str]) -> int:
    if argv[:1] == [SYNC_COMMAND]:
        return run_sync(argv[1:])
    if argv[:1] == [AGENT_COMMAND]:
        from .sync.pod.agent import agent_main  # imported only for the subcommand: the supervisor's start pays nothing

        return agent_main(argv[1:], os.environ)
    from .host.system import HostSystem
    from .setup.cli import parse_args
    from .setup.flags import HELP
    from .supervise.loop import Supervisor

    cli = parse_args(argv)
    if cli.help:
        _print(HELP)
        return 0
    if cli.version:
        _print(__version__)
        return 0
    plan = make_plan(cli, check_program=not cli.dump)
    configure_output(plan)
    if cli.dump:
        return dump(plan)
    os.chdir(plan.cwd)
    out.info(__version__)
    for path in plan.files:
        out.detail(f"reading config {path}")
    if plan.settings.watching:
        out.detail(f"ignoring: {' '.join(plan.rules.describe_ignore()) or 'nothing'}")
    for warning in plan.warnings:
        out.warn(warning)
    for notice in plan.notices:
        out.info(notice)
    return Supervisor(plan, HostSystem(), replan=lambda: make_plan(cli)).run()


def dump(plan: Plan) -> int:
    """``--dump``: the resolved config and command on stdout, always (nodemon's does the same); a
    program that could not be started is one line on stderr, not a refusal to answer."""
    from .setup import shapes

    data = {"config": shapes.dump(plan.settings, by_alias=True), "command": plan.command.argv, "cwd": str(plan.cwd)}
    _print(json.dumps(data, indent=2, default=str))
    problem = program_problem(plan)
    if problem:
        out.warn(problem)
    return 0


def program_problem(plan: Plan) -> Optional[str]:
    """Why the plan's program could not be started (not found on PATH, not executable), or None."""
    from .host.tree import START_FAILURE, resolve_program

    program = plan.command.argv[0]
    try:
        resolve_program(program, plan.env.get("PATH"), str(plan.cwd))
    except ReloaddError as exc:
        on_path = exc.exit_code == EXIT_NOT_FOUND and "/" not in program
        reason = f'"{program}" cannot be found on PATH' if on_path else exc.message.removeprefix(START_FAILURE)
        return f"--dump: {reason}; without --dump reloadd would exit {exc.exit_code} here"
    return None


def run_sync(argv: list[str]) -> int:
    from .sync.laptop.options import SYNC_HELP, parse_sync_args, whole_repository_warning
    from .sync.laptop.session import start_first
    from .sync.laptop.transport import check_engine

    options = parse_sync_args(argv)
    if options is None:
        _print(SYNC_HELP)
        return 0
    if options.where is not None:  # else it comes from the config file: checked once read
        check_engine(options.where)
    warning = whole_repository_warning(options.local_dir)
    if warning:
        out.warn(warning)
    first = start_first(options, os.environ)
    # Imported only now, and only for the subcommand: the agent already imports and walks the pod
    # meanwhile, and the supervisor's start pays nothing for the sync's modules.
    from .sync.laptop.loop import sync_main

    return sync_main(options, os.environ, first)


def main(argv: list[str]) -> int:
    options = argv[: argv.index("--")] if "--" in argv else argv  # after `--` the flags are the app's
    verbose = any(arg in ("-V", "--verbose") for arg in options)
    try:
        return run(argv)
    except ReloaddError as exc:
        # An expected failure (a usage or config error, a missing program) is its one line, also
        # with --verbose: a traceback would bury it. Tracebacks are for reloadd's own bugs, below.
        out.error(exc.message + (VERBOSE_IS_NOT_VERSION if argv == ["-V"] else ""))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0  # `reloadd --help | head`: the reader has all it wanted (the app, if any, is already stopped)
    except Exception as exc:  # noqa: BLE001 - the one place a bug becomes a message instead of a traceback
        if verbose:
            out.traceback()
        out.error(f"internal error: {type(exc).__name__}: {exc} (run with --verbose for the traceback)")
        return EXIT_INTERNAL
