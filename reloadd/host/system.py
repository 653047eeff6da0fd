"""The operating-system side of the supervisor, behind one small object.

The loop asks this object for the time, to start a program, to signal, to reap, to look at
and stop a process tree and to check ports; it never calls the OS for these itself. That is
what lets unit tests replay a history of events ("change at 0.00 s, app exits 1 at 0.30 s")
against the real state machine with a fake clock and fake processes, while the
integration and PID-1 tests prove this real implementation.
"""

from __future__ import annotations

import os
import selectors
import time
from pathlib import Path
from typing import Callable, Optional

from ..output import out
from ..setup.matching import Rules
from ..setup.production import refusal
from . import pid1, ports, tree
from .app_output import AppOutput, Listener
from .control import ControlServer
from .control_wire import control_dir, private_dir
from .stdin import stdin_is_interactive
from .tree import ChildTree, StopLadder
from .warm import Warm
from .watcher import Watcher, WatchReport

Outputs = tuple[Optional[int], Optional[int]]  # an app's stdout and stderr (None: reloadd's own)


class System:
    def now(self) -> float:
        """The one clock of the loop: monotonic, immune to the wall clock being set."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Wait outside the loop (only while stopping for good, when nothing else is to be done)."""
        time.sleep(seconds)

    def spawn(self, argv: list[str], env: dict[str, str], stdin_fd: Optional[int], outputs: Outputs) -> int:
        return tree.spawn(argv, env, stdin_fd=stdin_fd, stdout_fd=outputs[0], stderr_fd=outputs[1])

    def reap(self) -> list[tuple[int, int]]:
        return pid1.reap()

    def send(self, pid: int, sig: int) -> bool:
        return tree.send(pid, sig)

    def send_group(self, pgid: int, sig: int) -> bool:
        return tree.send_group(pgid, sig)

    def tree(self, pid: int, exclude: Callable[[], set[int]]) -> ChildTree:
        return ChildTree(pid, started=self.now(), exclude=exclude)

    def stop(
        self, child: ChildTree, sig: int, timeout: float, reason: str, members: Optional[set[int]], quiet: bool = False
    ) -> StopLadder:
        return StopLadder(child, sig, timeout, reason, members, quiet)

    def listening_ports(self, pids: set[int]) -> set[int]:
        return ports.listening_ports(pids)

    def wait_until_free(self, held: set[int]) -> None:
        ports.wait_until_free(held)

    def prepare(self, inbox: pid1.SignalInbox) -> None:
        """Take over the signals reloadd handles and adopt orphans, as an init does."""
        inbox.install()
        pid1.become_subreaper()

    def terminal(self) -> pid1.Terminal:
        return pid1.Terminal()

    def interactive_stdin(self) -> bool:
        return stdin_is_interactive()

    def watch(
        self,
        rules: Rules,
        legacy_watch: Optional[bool],
        poll_interval_ms: int,
        report: Callable[[WatchReport], None],
        extra_files: list[Path],
    ) -> Watcher:
        watcher = Watcher(rules, legacy_watch, poll_interval_ms, report, extra_files=extra_files)
        watcher.start()
        return watcher

    def warm(self, selector: selectors.BaseSelector) -> Warm:
        """The pre-started node for the next generation; it registers its report pipes on ``selector``."""
        return Warm(selector)

    def app_output(self, listener: Listener) -> AppOutput:
        """Pipes for the apps' output that reloadd copies on to its own, keeping the last lines and
        handing each to ``listener``, wherever reloadd's own output is not a terminal."""
        return AppOutput(listener)

    def open_control(self, watched: list[str]) -> Optional[ControlServer]:
        """The local channel on which `reloadd agent` says a synced batch is in (for a batch written
        into one of the ``watched`` directories or below), or None: never where the agent would refuse
        to sync (production), and not if it cannot be made private."""
        reason = refusal(os.environ)
        if reason is not None:
            out.detail(f"no sync channel: {reason}")
            return None
        directory = control_dir(os.environ)
        problem = private_dir(directory, create=True)
        try:
            if problem is None:
                return ControlServer(directory, watched)
        except OSError as exc:
            problem = f"{directory}: {exc.strerror}"
        out.warn(f"no sync channel ({problem}): synced files are seen by the watcher only")
        return None
