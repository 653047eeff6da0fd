"""What comes from the person at the terminal: signals (Ctrl-C, Ctrl-Z, a hang-up, `fg`) and
what is typed on stdin (``rs`` restarts; the rest goes on to the app).

Built on generations.py: a stop signal stops the tree, a restart request restarts; the
terminal itself is handed to the app whenever reloadd does not read stdin.
"""

from __future__ import annotations

import signal

from ..host.pid1 import (
    CONTINUE_SIGNAL,
    FORWARDED_SIGNALS,
    HANGUP_STOP_SIGNAL,
    RESTART_SIGNAL,
    STOP_SIGNALS,
    SUSPEND_SIGNAL,
)
from ..output import out
from . import console
from .generations import Generations
from .machine import STOPPING, State


class TerminalSide(Generations):
    # -- signals ----------------------------------------------------------------------------
    def on_signal(self, sig: int) -> None:
        if sig in STOP_SIGNALS:
            self.on_stop_signal(sig)
        elif sig == RESTART_SIGNAL and self.terminal.hung_up():
            self.on_hangup()
        elif sig == SUSPEND_SIGNAL or (
            sig == signal.SIGCHLD and self.tree and self.terminal.app_suspended(self.tree.pid)
        ):
            self.suspend()
        elif sig == CONTINUE_SIGNAL:
            self.resume()
        elif sig == RESTART_SIGNAL and self.watching:
            self.restart("SIGHUP received", [])
        elif (sig == RESTART_SIGNAL or sig in FORWARDED_SIGNALS) and self.tree and self.tree.status is None:
            self.system.send_group(self.tree.pgid, sig)

    def on_stop_signal(self, sig: int, reason: str = "") -> None:
        reason = reason or f"{signal.Signals(sig).name} received"
        if self.state is State.EXITING:
            assert self.ladder is not None
            self.ladder.kill_now(f"{reason} again during shutdown")
        elif self.state in STOPPING:
            assert self.ladder is not None
            self.transition(State.EXITING, f"{reason} while stopping")  # the stop under way now ends in exiting
            self.ladder.tree.signal_all(sig, self.ladder.tree.members())
        elif self.state is State.RUNNING:
            self.begin_stop(State.EXITING, sig, reason)
        else:
            out.detail(f"{reason} with no app running: exiting")
            self._exit(0, reason)

    def on_hangup(self) -> None:
        """The terminal went away: stop everything as on Ctrl-C. The shell's own SIGHUP and the one the
        kernel sends when the shell exits are the same hang-up, not a second request to hurry."""
        if self.terminal.nohup:
            out.detail("the terminal hung up; running on (started with nohup)")
            self.terminal.forget()
        elif self.state is not State.EXITING:
            self.on_stop_signal(HANGUP_STOP_SIGNAL, "the terminal hung up")

    def suspend(self) -> None:
        """Ctrl-Z: stop the app's tree, then reloadd itself, so the shell sees the job stopped."""
        if not self.terminal.can_suspend():
            return
        if self.tree and self.tree.status is None:
            self.tree.signal_all(SUSPEND_SIGNAL, self.tree.members())
        self.system.suspend_self()  # returns once `fg`/`bg` continues reloadd's group

    def resume(self) -> None:
        """`fg`/`bg` continued reloadd: continue the app's tree; in front with `-I`, it gets the terminal again."""
        if self.tree and self.tree.status is None:
            if not self.stdin.reads:
                self.terminal.give_to(self.tree.pgid)
            self.tree.signal_all(CONTINUE_SIGNAL, self.tree.members())

    # -- stdin ------------------------------------------------------------------------------
    def handle_stdin(self) -> None:
        self._check_front()
        if not self.stdin.ready:
            return
        self.stdin.ready = False
        data = self.system.read_stdin()
        if data is None:
            return
        if not data and self.terminal.usable and not self.terminal.in_front() and not self.terminal.hung_up():
            self.system.unlisten(0)  # a background job cannot read its terminal (EIO): not the end
            self.stdin.paused = True
            return
        decision = console.decide(data, str(self.plan.settings.restartable))
        if isinstance(decision, console.RestartTyped):
            self.restart(f"`{decision.word}` entered", [])
        elif isinstance(decision, console.ForwardInput):
            self.stdin.app.forward(decision.data)
        else:
            self.system.unlisten(0)
            self.stdin.app.source_ended()

    def _check_front(self) -> None:
        """`fg` sends a running background job no signal: look whether reloadd is in front now, and then
        read `rs` again, or (with -I) hand the terminal on to the app, which holds it whenever it runs."""
        if self.stdin.paused and self.terminal.in_front():
            self.stdin.paused = False
            self.system.listen(0, "stdin")
        if not self.stdin.reads and self.tree and self.tree.status is None and self.terminal.in_front():
            self.terminal.give_to(self.tree.pgid)

    def _waiting_for_front(self) -> bool:
        """_check_front has something to notice: reloadd is a background job that wants the terminal."""
        wants = self.stdin.paused or (not self.stdin.reads and self.tree is not None and self.tree.status is None)
        return wants and self.terminal.in_back()

    def _switch_stdin(self) -> None:
        """`stdin`/`restartable` changed in a config reload: the restart that follows gives the
        new app the matching stdin (a pipe reloadd feeds, or reloadd's own)."""
        if not self.stdin.app.source_open:
            return  # our stdin already ended: nothing to read or to hand over
        if self.stdin.reads:
            self.terminal.take_back()  # reading a terminal needs its foreground group
            self._read_stdin()
        elif self.stdin.paused:
            self.stdin.paused = False  # a background job's stdin is not registered: nothing to undo
        else:
            self.system.unlisten(0)

    def _read_stdin(self) -> None:
        """reloadd reads stdin itself: `rs` restarts, the rest goes to the app through a pipe."""
        self.system.listen(0, "stdin")
        out.info(f"to restart at any time, enter `{self.plan.settings.restartable}`")
