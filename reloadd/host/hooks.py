"""Lifecycle event hooks (nodemon's ``events`` key): fire and forget, bounded, reaped, logged.

A hook must never delay or break a restart: it is started with ``sh -c`` in its own process
group, never awaited, SIGKILLed (with its whole group) after ``eventTimeout``, and reaped by
the supervisor's single reaper, which hands its status back here.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import ReloaddError, exit_status
from ..output import out
from .tree import send_group, spawn

HOOK_SHELL = "sh"


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.commands = dict(commands)
        self.base_env = dict(base_env)
        self.timeout = timeout
        # Deadlines: monotonic, the clock of the ``now`` the loop (System.now) passes to enforce_timeouts.
        self.clock = clock
        self.running: dict[int, RunningHook] = {}
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

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
            pid = spawn([HOOK_SHELL, "-c", command], env, stdin_fd=self._devnull)
        except ReloaddError as exc:
            out.error(f"event {event}: {exc.message}")
            return
        self.running[pid] = RunningHook(event, command, self.clock() + self.timeout)
        out.detail(f"event {event}: running `{command}` (pid {pid})")

    def pids(self) -> set[int]:
        return set(self.running)

    def reaped(self, pid: int, wait_status: int) -> bool:
        """Take the status of a reaped process if it was a hook; return whether it was."""
        hook = self.running.pop(pid, None)
        if hook is None:
            return False
        send_group(pid, signal.SIGKILL)  # whatever the hook left running in its group goes with it
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
                send_group(pid, signal.SIGKILL)

    def next_deadline(self) -> Optional[float]:
        pending = [h.deadline for h in self.running.values() if not h.timed_out]
        return min(pending) if pending else None

    def kill_all(self) -> None:
        for pid in self.running:
            send_group(pid, signal.SIGKILL)
