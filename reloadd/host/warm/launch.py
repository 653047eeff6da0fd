"""Whether a command is one a warm process can run, and the environment that makes it one.

A pure decision, no process: ``launch_for`` turns the command reloadd would spawn into a
``Launch`` (everything that makes two starts the same start) or a phrase saying why it must start
cold; ``launch_difference`` says why a waiting process no longer matches; ``preload_env`` adds the
bootstrap (and the ES module gate) to the app's NODE_OPTIONS.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ...setup.command import Command
from ...setup.node_argv import node_script

BOOTSTRAP = Path(__file__).with_name("warm_boot.cjs")  # shipped as package data
# For an ES module entry: node awaits it before the entry, so the warm process can build the ES
# module wrappers of the packages it preloaded (see warm_gate.mjs). Package data too.
GATE = Path(__file__).with_name("warm_gate.mjs")

# Node flags that run code or read files before the entry point, change how the entry is
# found, or start something at process start: the warm process would do it at the wrong time.
COLD_FLAGS = frozenset(
    {
        "-r", "--require", "--import", "--loader", "--experimental-loader",  # code before the entry
        "--env-file", "--env-file-if-exists",  # read at process start: a changed .env would be missed
        "--inspect-brk", "--inspect-wait", "--inspect-port", "--debug-port", "--inspect-brk-node",
        "--watch", "--watch-path", "--test", "--test-only", "-i", "--interactive", "-c", "--check",
        "--prof", "--cpu-prof", "--heap-prof",  # profiles would include the wait
        "--experimental-default-type", "--preserve-symlinks-main", "--experimental-policy",
        "--experimental-permission", "--snapshot-blob", "--build-snapshot", "--experimental-sea-config",
    }
)  # fmt: skip
INSPECT_FLAGS = frozenset({"--inspect"})


@dataclass(frozen=True)
class Launch:
    """Everything that makes two starts of the app the same start."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    stdin_pipe: bool  # the app reads a pipe reloadd feeds (True) or shares reloadd's stdin
    flags: tuple[str, ...]  # node flags the warm process starts with (the inspector's removed)
    script: str
    args: tuple[str, ...]
    inspect: Optional[tuple[str, int]]
    inspect_flag: str = ""
    inspect_index: int = 0


def launch_for(command: Command, env: dict[str, str], cwd: Path, stdin_pipe: bool) -> Union[Launch, str]:
    """The warm-startable form of ``command``, or why it must start cold.

    Args:
        command: the command reloadd would spawn.
        env: the app's complete environment.
        cwd: the app's working directory.
        stdin_pipe: True when reloadd feeds the app's stdin through a pipe.

    Returns:
        A Launch, or a reason (one phrase) for a cold start.
    """
    if not BOOTSTRAP.is_file():
        return f"{BOOTSTRAP.name} is missing from reloadd's installation"
    if command.shell or not command.is_node:
        return f"`{command.display}` is not node running a script"
    script = node_script(command.argv)
    if script is None or script == "-":
        return "node runs no script file"
    index = command.argv.index(script, 1)
    flags = command.argv[1:index]
    reason = _flag_reason(flags, "node flag") or _flag_reason(_node_options(env), "NODE_OPTIONS flag")
    if reason:
        return reason
    if "--" in flags:
        return "the node flags end with `--`"
    if not stdin_pipe and os.isatty(0):
        return "the app shares reloadd's terminal (node records its mode at start)"
    inspect_at = [i for i, flag in enumerate(flags) if flag.split("=", 1)[0] in INSPECT_FLAGS]
    if len(inspect_at) > 1 or (inspect_at and command.inspect is None):
        return "more than one --inspect flag"
    flag = flags[inspect_at[0]] if inspect_at else ""
    kept = [f for i, f in enumerate(flags) if not inspect_at or i != inspect_at[0]]
    return Launch(
        argv=tuple(command.argv),
        env=tuple(sorted(env.items())),
        cwd=str(cwd),
        stdin_pipe=stdin_pipe,
        flags=tuple(kept),
        script=script,
        args=tuple(command.argv[index + 1 :]),
        inspect=command.inspect,
        inspect_flag=flag,
        inspect_index=inspect_at[0] if inspect_at else 0,
    )


def _node_options(env: dict[str, str]) -> list[str]:
    try:
        return shlex.split(env.get("NODE_OPTIONS", ""))
    except ValueError:
        return ["--unparsable-NODE_OPTIONS"]


def _flag_reason(flags: list[str], what: str) -> Optional[str]:
    for flag in flags:
        name = flag.split("=", 1)[0]
        if name in COLD_FLAGS or (what.startswith("NODE_OPTIONS") and name.startswith("--inspect")):
            return f"{what} {name}"
        if name == "--unparsable-NODE_OPTIONS":
            return "NODE_OPTIONS cannot be split into flags"
    return None


def launch_difference(old: Launch, new: Launch) -> Optional[str]:
    """What differs between two launches, in a phrase; None when they are the same start."""
    if old == new:
        return None
    if old.argv != new.argv:
        return "the command or node flags changed"
    changed = sorted({k for k, _ in set(old.env) ^ set(new.env)})
    if changed:
        return f"the environment changed ({', '.join(changed[:5])})"
    return "the working directory or stdin arrangement changed"


def preload_env(env: dict[str, str], gate: bool = False) -> dict[str, str]:
    """The app's environment with the bootstrap (and, for an ES module entry, the gate) added to
    NODE_OPTIONS (node's quoting: \\ and \" escaped)."""
    flags = [("--require", str(BOOTSTRAP))] + ([("--import", GATE.as_uri())] if gate else [])
    own = env.get("NODE_OPTIONS", "")
    added = " ".join(f'{flag} "{_node_quoted(value)}"' for flag, value in flags)
    return {**env, "NODE_OPTIONS": f"{own} {added}".lstrip()}


def _node_quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
