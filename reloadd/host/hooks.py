"""Lifecycle event hooks (nodemon's ``events`` key): fire and forget, bounded, reaped, logged.

A hook must never delay or break a restart: it is started with ``sh -c`` in its own process
group, never awaited, SIGKILLed (with its whole group) after ``eventTimeout``, and reaped by
the supervisor's single reaper, which hands its status back here. It spawns, signals and reads
the clock through the supervisor's ``System`` (any ``HookHost``), so replayed histories drive
hooks on their fake clock and processes too.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional, Protocol

from ..errors import ReloaddError, exit_status
from ..output import out
from .tree import Outputs

HOOK_SHELL = "sh"
INHERITED: Outputs = (None, None)  # a hook writes where reloadd writes


class HookHost(Protocol):
    """What hooks need of the system: the loop's clock, spawning and signalling a process group."""

    def now(self) -> float: ...

    def spawn(self, argv: list[str], env: dict[str, str], stdin_fd: Optional[int], outputs: Outputs) -> int:
        """Start ``argv`` in a process group of its own; takes ``stdin_fd`` (closes it)."""
        ...

    def send_group(self, pgid: int, sig: int) -> bool: ...


@dataclass
class RunningHook:
    event: str
    command: str
    deadline: float  # on the monotonic clock, as the loop's ``now``
    timed_out: bool = False


class Hooks:
    """Starts the command configured for an event and tracks it until it is reaped."""

    def __init__(
        self,
        commands: Mapping[str, str],
        base_env: Mapping[str, str],
        timeout: float,
        host: HookHost,
    ) -> None:
        self.commands = dict(commands)
        self.base_env = dict(base_env)
        self.timeout = timeout
        self.host = host  # its now() is the loop's clock, which enforce_timeouts is given too
        self.running: dict[int, RunningHook] = {}

    def fire(
        self,
        event: str,
        child_pid: Optional[int] = None,
        changed: Optional[list[str]] = None,
        exit_code: Optional[int] = None,
        filename: str = "",
    ) -> None:
        command = self.commands.get(event)
        if not command:
            return
        env = dict(self.base_env)
        env.update(
            {
                "FILENAME": filename,
                "RELOADD_EVENT": event,
                "RELOADD_CHILD_PID": "" if child_pid is None else str(child_pid),
                "RELOADD_CHANGED": "\n".join(changed or []),
                "RELOADD_EXIT_CODE": "" if exit_code is None else str(exit_code),
            }
        )
        try:
            # A hook reads nothing: its stdin is /dev/null, opened for it (spawn closes it once the hook has it).
            stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            pid = self.host.spawn([HOOK_SHELL, "-c", command], env, stdin, INHERITED)
        except ReloaddError as exc:
            out.error(f"event {event}: {exc.message}")
            return
        except OSError as exc:  # no descriptor left for its stdin: this hook is skipped, not the restart
            out.error(f"event {event}: {exc.strerror}")
            return
        self.running[pid] = RunningHook(event, command, self.host.now() + self.timeout)
        out.detail(f"event {event}: running `{command}` (pid {pid})")

    def pids(self) -> set[int]:
        return set(self.running)

    def reaped(self, pid: int, wait_status: int) -> bool:
        """Take the status of a reaped process if it was a hook; return whether it was."""
        hook = self.running.pop(pid, None)
        if hook is None:
            return False
        self.host.send_group(pid, signal.SIGKILL)  # whatever the hook left running in its group goes with it
        code = exit_status(wait_status)
        if hook.timed_out:
            out.error(f"event {hook.event}: `{hook.command}` killed after {self.timeout:g}s timeout")
        elif code != 0:
            out.error(f"event {hook.event}: `{hook.command}` failed with status {code}")
        return True

    def enforce_timeouts(self, now: float) -> None:
        for pid, hook in self.running.items():
            if not hook.timed_out and now >= hook.deadline:
                hook.timed_out = True
                self.host.send_group(pid, signal.SIGKILL)

    def next_deadline(self) -> Optional[float]:
        pending = [h.deadline for h in self.running.values() if not h.timed_out]
        return min(pending) if pending else None

    def kill_all(self) -> None:
        for pid in self.running:
            self.host.send_group(pid, signal.SIGKILL)
