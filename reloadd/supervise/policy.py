"""What to do when the app has ended by itself: a pure decision, acted on by the supervisor.

Given the exit status and the settings, the answer is to exit with that status, to wait for
changes (nodemon's "app crashed - waiting for file changes"), or to start again after a wait
(``--restart-on-crash``, with a backoff that doubles while the app keeps crashing).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Union

from ..errors import SIGNAL_EXIT_BASE

BACKOFF_FIRST = 0.5  # --restart-on-crash: first wait, doubled after each crash...
BACKOFF_MAX = 30.0  # ...up to this
BACKOFF_RESET_AFTER = 10.0  # an app that stayed up this long starts the backoff again from the beginning
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT)  # Ctrl-C / Ctrl-\ typed to an app that owns the terminal


@dataclass(frozen=True)
class ExitWith:
    status: int
    reason: str


@dataclass(frozen=True)
class WaitForChanges:
    event: str  # the hook to fire: "exit" for a clean exit, "crash" otherwise
    message: str


@dataclass(frozen=True)
class StartAfter:
    seconds: float
    message: str
    event: str = "crash"


Decision = Union[ExitWith, WaitForChanges, StartAfter]


@dataclass(frozen=True)
class Ending:
    """What happened: how the app ended and under which settings."""

    status: int  # shell-style: exit code, or 128 + signal
    uptime: float  # seconds the app ran
    watching: bool
    exitcrash: bool
    restart_on_crash: bool
    held_terminal: bool  # the app had the terminal: a Ctrl-C there was meant for everything


class CrashPolicy:
    """Decides after each ending; remembers only the current backoff."""

    def __init__(self) -> None:
        self.backoff = BACKOFF_FIRST

    def decide(self, ending: Ending) -> Decision:
        status = ending.status
        killed_by = status - SIGNAL_EXIT_BASE if status > SIGNAL_EXIT_BASE else 0
        if not ending.watching:
            return ExitWith(status, "the app ended and nothing is watched")
        if status != 0 and ending.exitcrash:
            return ExitWith(status, "the app crashed and --exitcrash is set")
        if ending.held_terminal and killed_by in TERMINAL_SIGNALS:
            return ExitWith(status, "Ctrl-C in the app's terminal")
        if status == 0:
            return WaitForChanges("exit", "clean exit - waiting for changes before restart")
        if not ending.restart_on_crash:
            return WaitForChanges("crash", "app crashed - waiting for file changes before starting...")
        if ending.uptime >= BACKOFF_RESET_AFTER:
            self.backoff = BACKOFF_FIRST
        wait, self.backoff = self.backoff, min(BACKOFF_MAX, self.backoff * 2)
        return StartAfter(wait, f"app crashed - restarting in {wait:g}s (--restart-on-crash)")
