"""The supervisor loop: start the app, wait for something to happen, act, repeat.

One thread runs this loop; signal handlers and the watcher thread only record and wake it.
Everything that changes processes (start, signal, reap, kill) happens in the ``Supervisor``,
through its ``System`` (host/system.py), in this order on every wake-up: signals, reaped
processes, stdin, the warm process, synced batches, file changes, timers. The parts it consults
(machine, policy, delay, console, feedback, and the host's burst rule) return decisions; the
state changes in one method, ``transition`` (core.py), which checks each change against
``ALLOWED`` (machine.py).

The Supervisor is built in floors, each calling only those below it: core.py (its facts and
``transition``), generations.py (start, restart, stop, reap), terminal.py (signals, stdin),
changes.py (bursts, synced batches, config reloads), and this loop on top.

Whatever goes wrong inside reloadd, the app is not left behind: ``run`` stops the app's
whole tree with the usual ladder before the error reaches ``main()`` (exit 70).
"""

from __future__ import annotations

import signal
from typing import Optional

from ..host.tree import STOP_POLL_INTERVAL
from ..output import out
from ..setup.command import script_missing
from ..setup.inspector import listens_on_all_interfaces
from .changes import Changes
from .machine import State

# `fg` sends a running background job no signal (bash, zsh): while reloadd waits to be brought
# to the front (a paused stdin, or -I started with `&`) it looks this often; otherwise never.
FRONT_CHECK_INTERVAL = 1.0
QUIT_HOOK_WAIT = 2.0  # at exit, how long the `quit` hook may finish before it is killed
ABANDON_SIGNAL = signal.SIGTERM  # sent to the app's tree when reloadd itself fails


class Supervisor(Changes):
    def run(self) -> int:
        try:
            self.system.prepare()
            self.startup()
            while self.state is not State.EXITED:
                self.wait(self.timeout())
                self.step()
        except BaseException:
            self.abandon()  # never leave the app running without its supervisor
            raise
        finally:
            self.shutdown()
        assert self.exit_code is not None
        return self.exit_code

    def step(self) -> None:
        self.handle_signals()
        self.handle_reaped()
        self.handle_stdin()
        self.handle_warm()
        self.handle_control()
        self.handle_changes()
        self.handle_timers()

    def startup(self) -> None:
        settings, command = self.plan.settings, self.plan.command
        if self.stdin.reads:
            self._read_stdin()
        if self.watching:
            out.info(f"watching path(s): {' '.join(self.rules.describe_watch())}")
            out.info(f"watching extensions: {self.rules.describe_ext()}")
            self._start_watcher()
            self.control = self.system.open_control(self._control_dirs())
            if self.control is not None:
                self.system.listen(self.control, "control")
                self.output = self.system.app_output(self.control.log_line)
                self.warm.output_fds = self.output.fds
        if command.inspect and listens_on_all_interfaces(command.inspect[0]):
            out.warn(
                f"the inspector listens on {command.inspect[0]}:{command.inspect[1]}, every interface: anyone who "
                "can reach it can run code in the app; prefer 127.0.0.1 with kubectl port-forward"
            )
        if self.watching and settings.run_on_change_only:
            out.info("waiting for the first change before starting (--on-change-only)")
        elif self.watching and script_missing(command, self.plan.cwd):
            pass  # make_plan's warning said it starts when it appears; node would only print its trace
        else:
            self.start("first start")

    def _control_dirs(self) -> list[str]:
        """Where a synced batch concerns this supervisor: its working directory and what it watches."""
        roots = [root if root.is_dir() else root.parent for root in self.rules.roots]
        return [str(path) for path in (self.rules.cwd, *roots)]

    def shutdown(self) -> None:
        if self.watcher:
            self.watcher.stop()
        self.warm.close()
        if self.control is not None:
            self.control.close()
        self.hooks.fire("quit", exit_code=self.exit_code)
        deadline = self.system.now() + min(QUIT_HOOK_WAIT, self.plan.settings.event_timeout)
        while self.hooks.running and self.system.now() < deadline:
            self.system.sleep(STOP_POLL_INTERVAL)
            self.handle_reaped()
        self.hooks.kill_all()
        self.handle_reaped()
        self.terminal.take_back()
        self.soft.cleanup()
        if self.output is not None:
            self.output.close()

    def abandon(self) -> None:
        """reloadd failed: stop the app's whole tree (signal, wait, SIGKILL) before the error goes up."""
        if self.tree is None or self.tree.status is not None and not self.tree.members():
            return
        out.error("reloadd failed: stopping the app before exiting")
        ladder = self.ladder or self.system.stop(
            self.tree, ABANDON_SIGNAL, self.plan.settings.stop_timeout, "reloadd failed", None
        )
        while not ladder.poll():
            self.system.sleep(STOP_POLL_INTERVAL)
            self.system.reap()
        self.system.reap()

    def wait(self, timeout: Optional[float]) -> None:
        for tag in self.system.select(timeout):
            if tag == "stdin":
                self.stdin.ready = True  # signals are drained in handle_signals
            elif tag == "warm":
                self.warm_ready = True

    def timeout(self) -> Optional[float]:
        """Seconds until the next armed timer; None when none is: the loop sleeps until an event.

        No periodic wake-up to reap (tini has one): SIGCHLD writes to the signal wake-up pipe,
        and every wake reaps every exited child, so SIGCHLDs that coalesce still wake us once
        after the last exit."""
        now = self.system.now()
        holding = self.control is not None and self.control.holding  # the batch's commit wakes us instead
        waits = [None if holding else self.burst.wait_time(now)]
        deadlines = [self.delay.until, self.backoff_until, self.hooks.next_deadline(), self.warm.deadline()]
        deadlines.append(self.feedback.deadline())
        waits += [d - now for d in deadlines if d is not None]
        if self.ladder:
            waits.append(self.ladder.next_check())
        if self._waiting_for_front():
            waits.append(FRONT_CHECK_INTERVAL)
        armed = [w for w in waits if w is not None]
        return max(0.0, min(armed)) if armed else None

    # -- the handlers the parts below do not hold -------------------------------------------
    def handle_signals(self) -> None:
        for sig in self.system.signals():
            self.on_signal(sig)

    def handle_warm(self) -> None:
        if not self.warm_ready:
            return
        self.warm_ready = False
        reason = self.warm.handle_reports()
        if reason:
            self.restart(reason, [])  # no changed files: nothing preloaded next time

    def handle_timers(self) -> None:
        now = self.system.now()
        self.hooks.enforce_timeouts(now)
        self.tell(self.feedback.due(now))
        self.warm.tick(now, busy=self.burst.first is not None)
        delayed = self.delay.take(now)
        if delayed is not None:
            self.restart("files changed", delayed)
        if self.state is State.BACKOFF and self.backoff_until is not None and now >= self.backoff_until:
            self.start("the backoff after a crash is over")
