"""The supervisor loop: start the app, wait for something to happen, act, repeat.

One thread runs this loop; signal handlers and the watcher thread only record and wake it.
Everything that changes processes (start, signal, reap, kill) happens here, through the
``System`` object, in this order on every wake-up: signals, reaped processes, stdin, file
changes, timers. The parts it consults (console, changes, policy, hot) return decisions; the
state changes in one method, ``transition``, which checks each change against ``ALLOWED``.

Whatever goes wrong inside reloadd, the app is not left behind: ``run`` stops the app's
whole tree with the usual ladder before the error reaches ``main()`` (exit 70).
"""

from __future__ import annotations

import enum
import os
import selectors
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import ReloaddError, exit_status
from ..host import stdin
from ..host.app_output import AppOutput
from ..host.bursts import Burst
from ..host.control import Committed, ControlServer, Echoes
from ..host.hooks import Hooks
from ..host.hot import HOT_FILE_ENV, SoftReload
from ..host.pid1 import (
    CONTINUE_SIGNAL,
    FORWARDED_SIGNALS,
    HANGUP_STOP_SIGNAL,
    RESTART_SIGNAL,
    STOP_SIGNALS,
    SUSPEND_SIGNAL,
    SignalInbox,
)
from ..host.ports import listens_on_all_interfaces
from ..host.system import System
from ..host.tree import STOP_POLL_INTERVAL, ChildTree, StopLadder
from ..host.warm_launch import launch_for
from ..host.watcher import Watcher, WatchReport
from ..output import out, plural
from ..setup.command import script_missing
from ..setup.plan import Plan
from ..setup.shapes import dump
from . import console, policy
from .delay import Delay
from .feedback import Feedback, Outcome

# `fg` sends a running background job no signal (bash, zsh): while reloadd waits to be brought
# to the front (a paused stdin, or -I started with `&`) it looks this often; otherwise never.
FRONT_CHECK_INTERVAL = 1.0
QUIT_HOOK_WAIT = 2.0  # at exit, how long the `quit` hook may finish before it is killed
ABANDON_SIGNAL = signal.SIGTERM  # sent to the app's tree when reloadd itself fails


class State(enum.Enum):
    IDLE = "idle"  # no app: before the first change (-C), after a crash or a clean exit
    RUNNING = "running"
    RESTARTING = "restarting"  # the tree is stopping; the next generation starts once it is gone
    BETWEEN = "between generations"  # the old tree is gone; the next starts when the burst closes
    CLEANING_UP = "cleaning up"  # the app exited by itself; what it left running is stopping
    EXITING = "exiting"  # the tree is stopping; reloadd exits once it is gone
    BACKOFF = "backoff"  # --restart-on-crash: waiting before the next start
    EXITED = "exited"  # done; exit_code says with what


# Every transition the loop may make; anything else is a bug in reloadd, reported as one.
ALLOWED: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.RUNNING, State.EXITED}),
    State.RUNNING: frozenset({State.RESTARTING, State.CLEANING_UP, State.EXITING}),
    State.RESTARTING: frozenset({State.RUNNING, State.BETWEEN, State.EXITING, State.EXITED}),
    State.BETWEEN: frozenset({State.RUNNING, State.EXITED}),
    State.CLEANING_UP: frozenset({State.RESTARTING, State.EXITING, State.IDLE, State.BACKOFF, State.EXITED}),
    State.EXITING: frozenset({State.EXITED}),
    State.BACKOFF: frozenset({State.RUNNING, State.EXITED}),
    State.EXITED: frozenset(),
}
WITH_TREE = frozenset({State.RUNNING, State.RESTARTING, State.CLEANING_UP, State.EXITING})
STOPPING = frozenset({State.RESTARTING, State.CLEANING_UP, State.EXITING})


class TransitionError(RuntimeError):
    """The loop tried a state change that ALLOWED does not list: a bug in reloadd."""


@dataclass
class Timing:
    """Wall-clock marks of one restart, for the benchmarks (``-V --log-format json``)."""

    first_change: float = 0.0
    group_closed: float = 0.0
    stop_begin: float = 0.0
    stopped: float = 0.0


class Supervisor:
    def __init__(
        self, plan: Plan, replan: Optional[Callable[[], Plan]] = None, system: Optional[System] = None
    ) -> None:
        self.system = system or System()
        self.replan = replan
        self.inbox = SignalInbox()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.inbox.read_fd, selectors.EVENT_READ, "signals")
        self.state = State.IDLE
        self.tree: Optional[ChildTree] = None  # set exactly in WITH_TREE states
        self.ladder: Optional[StopLadder] = None  # set exactly in STOPPING states
        self.exit_code: Optional[int] = None
        self.last_status = 0
        self.incoming: deque[WatchReport] = deque()  # appended by the watcher thread, taken by the loop
        self.burst = Burst()
        self.delay = Delay(0.0)
        self.backoff_until: Optional[float] = None
        self.crash_policy = policy.CrashPolicy()
        self.timing = Timing()
        self.old_ports: set[int] = set()
        self.watcher: Optional[Watcher] = None
        self.terminal = self.system.terminal()
        self.app_stdin = stdin.AppStdin()
        self.stdin_ready = False
        self.stdin_paused = False  # in the background: reading the terminal waits until we are in front
        self.soft = SoftReload()
        self.hooks = Hooks(plan.settings.events, plan.env, plan.settings.event_timeout)
        self.control: Optional[ControlServer] = None  # `reloadd agent` says "batch committed" here
        self.echoes = Echoes()  # what a committed batch wrote: the watcher's later report of it is no change
        self.feedback = Feedback()  # committed batches waiting to hear what they did to the app
        self.output: Optional[AppOutput] = None  # the apps' output passed on: crash lines and --logs for sync
        self.warm = self.system.warm(self.selector)
        self.warm_ready = False
        self.start_changes: set[str] = set()  # what the next start follows from: decides what the warm process may keep
        self.start_fresh = False  # a restart without changed files (rs, SIGHUP, config): nothing preloaded
        self._apply(plan)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        try:
            self.system.prepare(self.inbox)
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

    def _control_dirs(self) -> list[str]:
        """Where a synced batch concerns this supervisor: its working directory and what it watches."""
        roots = [root if root.is_dir() else root.parent for root in self.rules.roots]
        return [str(path) for path in (self.rules.cwd, *roots)]

    def startup(self) -> None:
        settings, command = self.plan.settings, self.plan.command
        if self.reads_stdin:
            self._read_stdin()
        if self.watching:
            out.info(f"watching path(s): {' '.join(self.rules.describe_watch())}")
            out.info(f"watching extensions: {self.rules.describe_ext()}")
            self._start_watcher()
            self.control = self.system.open_control(self._control_dirs())
            if self.control is not None:
                self.selector.register(self.control, selectors.EVENT_READ, "control")
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
        for key, _ in self.selector.select(timeout):
            if key.data == "stdin":
                self.stdin_ready = True  # signals are drained in handle_signals
            elif key.data == "warm":
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

    # -- the state --------------------------------------------------------------------------
    def transition(
        self,
        new: State,
        why: str,
        tree: Optional[ChildTree] = None,
        ladder: Optional[StopLadder] = None,
    ) -> None:
        """The only writer of the state (and of the tree and ladder that go with it)."""
        if new not in ALLOWED[self.state]:
            raise TransitionError(f"{self.state.value} -> {new.value} is not a state change reloadd makes ({why})")
        out.detail(f"state: {self.state.value} -> {new.value}: {why}")
        self.state = new
        self.tree = (tree or self.tree) if new in WITH_TREE else None
        self.ladder = (ladder or self.ladder) if new in STOPPING else None
        if new is not State.BACKOFF:
            self.backoff_until = None

    def _exit(self, status: int, why: str) -> None:
        self.exit_code = status
        self.transition(State.EXITED, why)

    # -- configuration ----------------------------------------------------------------------
    def _apply(self, plan: Plan) -> None:
        self.plan = plan
        settings = plan.settings
        self.watching = settings.watching
        self.reads_stdin = (
            self.watching and settings.stdin and settings.restartable is not False and self.system.interactive_stdin()
        )
        self.rules = plan.rules
        self.soft.configure(settings.hot, plan.cwd)
        self.delay.seconds = settings.delay / 1000
        self.hooks.commands = dict(settings.events)
        self.hooks.base_env = dict(plan.env)
        self.hooks.timeout = settings.event_timeout
        self.config_files = {str(path) for path in plan.files}
        self.config_candidates = {str(path) for path in plan.candidates}
        self.config_watched = self.config_files | self.config_candidates  # a change to one needs the whole burst
        self.warm.configure(settings.warm and self.watching)

    def _replan(self) -> Optional[Plan]:
        """The plan the config files give now; None (said why) when they cannot give one."""
        if self.replan is None:
            return None
        try:
            return self.replan()
        except ReloaddError as exc:
            out.error(f"config not reloaded: {exc.message}; keeping the running config")
            return None

    def _reloaded_new_config(self, paths: list[str]) -> bool:
        """A config file not in use changed (a nodemon.json synced into a pod after reloadd started,
        a package.json that gained nodemonConfig): reload if it is read now. True when the burst
        is handled so (reloaded, or said why not), False for an ordinary change."""
        if self.replan is None or not self.config_candidates.intersection(paths):
            return False
        plan = self._replan()
        if plan is None:
            return True  # said why; the running config and app stay
        if {str(path) for path in plan.files} == self.config_files:
            return False  # still not read (a package.json without nodemonConfig)
        self.reload_config(plan)
        return True

    def _start_watcher(self) -> None:
        settings = self.plan.settings
        config = self.plan.files + self.plan.candidates  # watched whatever the rules say
        self.watcher = self.system.watch(
            self.rules, settings.legacy_watch, settings.polling_interval, self._report, config
        )

    def _report(self, report: WatchReport) -> None:
        """Called in the watcher thread: record and wake the loop."""
        self.incoming.append(report)
        self.inbox.wake()

    def reload_config(self, plan: Optional[Plan] = None) -> None:
        """Build the whole new plan first: a reload that would fail leaves the running app alone."""
        if plan is None:
            plan = self._replan()
        if plan is None:
            return
        old = dump(self.plan.settings)
        changed = sorted(k for k, v in dump(plan.settings).items() if old.get(k) != v)
        out.status(f"config reloaded: {', '.join(changed) or 'no setting changed'}")
        if self.watcher:
            self.watcher.stop()
            self.watcher = None
            self.burst.busy = False  # the old watcher's last word; the new one reports afresh
        was_reading = self.reads_stdin
        self.warm.discard("config reloaded")
        self._apply(plan)
        if self.watching:
            self._start_watcher()
        if self.reads_stdin != was_reading:
            self._switch_stdin()
        self.hooks.fire("config:update", changed=[str(p) for p in plan.files])
        self.restart("config changed", [])

    # -- signals ----------------------------------------------------------------------------
    def handle_signals(self) -> None:
        for sig in self.inbox.drain():
            self.on_signal(sig)

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
        self.system.send(os.getpid(), signal.SIGSTOP)  # returns once `fg`/`bg` continues reloadd's group

    def resume(self) -> None:
        """`fg`/`bg` continued reloadd: continue the app's tree; in front with `-I`, it gets the terminal again."""
        if self.tree and self.tree.status is None:
            if not self.reads_stdin:
                self.terminal.give_to(self.tree.pgid)
            self.tree.signal_all(CONTINUE_SIGNAL, self.tree.members())

    # -- processes --------------------------------------------------------------------------
    def handle_reaped(self) -> None:
        for pid, status in self.system.reap():
            self.on_reaped(pid, status)
        self._check_ladder()

    def on_reaped(self, pid: int, status: int) -> None:
        if self.tree and pid == self.tree.pid:
            self.tree.status = status
            self.last_status = exit_status(status)
            if self.state is State.RUNNING:
                mark = self.feedback.mark
                lines = self.output.crash_lines(mark) if self.output is not None and mark is not None else []
                self.tell(self.feedback.ended(self.last_status, lines))
                self.begin_stop(State.CLEANING_UP, signal.SIGTERM, "the app exited; stopping what it left running")
        elif self.warm.reaped(pid, status) or self.hooks.reaped(pid, status):
            pass
        else:
            out.detail(f"reaped orphan {pid} (status {exit_status(status)})")

    def _check_ladder(self) -> None:
        if self.ladder and self.ladder.poll():
            for pid, status in self.system.reap():  # the tree's last zombies (the app among them)
                self.on_reaped(pid, status)
            self.on_stopped()

    def begin_stop(self, then: State, sig: int, reason: str, members: Optional[set[int]] = None) -> None:
        assert self.tree is not None
        self.timing.stop_begin = time.time()
        restart = then is State.RESTARTING
        ladder = self.system.stop(self.tree, sig, self.plan.settings.stop_timeout, reason, members, quiet=restart)
        self.transition(then, reason, ladder=ladder)
        self._check_ladder()

    def on_stopped(self) -> None:
        """The tree is gone: go on according to why it was stopped."""
        assert self.tree is not None
        self.timing.stopped = time.time()
        tree = self.tree
        status = self.last_status if tree.status is not None else 0
        self.app_stdin.close()
        if self.state is State.EXITING:
            self._exit(status, "the app's tree is gone")
        elif self.state is State.RESTARTING:
            self.hooks.fire("exit", filename=self.plan.settings.signal, exit_code=status)
            if self.burst.first is None:
                self.start("the old tree is gone")
            else:
                self.transition(State.BETWEEN, "the old tree is gone; the burst of changes is still open")
        else:
            if not self.reads_stdin:
                self.terminal.take_back()  # so that Ctrl-C reaches reloadd while no app runs
            self.after_app_exit(tree, status)

    def after_app_exit(self, tree: ChildTree, status: int) -> None:
        ending = policy.Ending(
            status=status,
            uptime=self.system.now() - tree.started,
            watching=self.watching,
            exitcrash=self.plan.settings.exitcrash,
            restart_on_crash=self.plan.settings.restart_on_crash,
            held_terminal=self.terminal.usable and not self.reads_stdin,
        )
        decision = self.crash_policy.decide(ending)
        if isinstance(decision, policy.ExitWith):
            self._exit(decision.status, decision.reason)
            return
        if isinstance(decision, policy.StartAfter):
            self.transition(State.BACKOFF, decision.message)
            self.backoff_until = self.system.now() + decision.seconds
        else:
            self.transition(State.IDLE, decision.message)
        self.hooks.fire(decision.event, exit_code=status, child_pid=tree.pid if decision.event == "crash" else None)
        (out.status if status == 0 else out.error)(decision.message)

    def start(self, why: str) -> None:
        """Start the next generation (the old tree, if any, is gone)."""
        if self.old_ports:
            self.system.wait_until_free(self.old_ports)
            self.old_ports = set()
        command = self.plan.command
        env = dict(self.plan.env)
        if self.soft.enabled:
            env[HOT_FILE_ENV] = str(self.soft.file)
        changed, fresh = sorted(self.start_changes), self.start_fresh or not self.start_changes
        self.start_changes, self.start_fresh = set(), False
        out.status(f"starting `{command.display}`")
        launch = launch_for(command, env, self.plan.cwd, self.reads_stdin)
        taken = self.warm.take(launch, changed, fresh)
        if taken is not None:
            pid: Optional[int] = taken.pid
            if self.reads_stdin:
                self.app_stdin.adopt(taken.stdin_write)
        else:
            pid = self._spawn_cold(command.argv, env)
        if pid is None:
            return
        self.transition(State.RUNNING, why, tree=self.system.tree(pid, lambda: self.hooks.pids() | self.warm.pids()))
        self.tell(self.feedback.started(self.system.now(), self.output.mark if self.output is not None else 0))
        self.warm.prepare(launch)
        if not self.reads_stdin:
            self.terminal.give_to(pid)
        self._record_timing()
        self.hooks.fire("start", child_pid=pid, filename=command.script or "")

    def _spawn_cold(self, argv: list[str], env: dict[str, str]) -> Optional[int]:
        stdin_fd = self.app_stdin.open_for_child() if self.reads_stdin else None
        try:
            return self.system.spawn(argv, env, stdin_fd, self.output.fds if self.output is not None else (None, None))
        except ReloaddError as exc:
            out.error(exc.message)
            self._exit(exc.exit_code, "the app could not be started")
            return None
        finally:
            if stdin_fd is not None:
                os.close(stdin_fd)

    def _record_timing(self) -> None:
        if self.timing.group_closed:
            t = self.timing
            out.record(
                "timing",
                first_change=t.first_change,
                group_closed=t.group_closed,
                stop_begin=t.stop_begin,
                stopped=t.stopped,
                spawned=time.time(),
            )
        self.timing = Timing()

    # -- restarts ---------------------------------------------------------------------------
    def restart(self, reason: str, changed: list[str]) -> None:
        """A restart was asked for (changes, `rs`, SIGHUP, a config reload): act by state."""
        said = "restarting due to changes..." if changed else f"restarting: {reason}"
        self.start_changes.update(changed)
        self.start_fresh = self.start_fresh or not changed
        if self.state is State.BETWEEN:
            self.start(reason)
        elif self.state in (State.IDLE, State.BACKOFF):
            out.status(said if changed else f"starting: {reason}")
            self.hooks.fire("restart", changed=changed, filename=",".join(changed))  # nodemon: any restart request
            self.start(reason)
        elif self.state is State.RUNNING:
            assert self.tree is not None
            out.status(said)
            self.hooks.fire("restart", child_pid=self.tree.pid, changed=changed, filename=",".join(changed))
            members = self.tree.members()
            self.old_ports = self.system.listening_ports(members)
            if self.plan.command.inspect and self.plan.command.inspect[1]:  # port 0: node picked a free one
                self.old_ports.add(self.plan.command.inspect[1])
            self.begin_stop(State.RESTARTING, self.plan.settings.restart_signal, reason, members)
        elif self.state is State.CLEANING_UP:
            self.transition(State.RESTARTING, f"{reason} while the app was exiting")
        elif self.state is State.RESTARTING:
            out.detail(f"{reason} while restarting: the next start includes it")

    def handle_changes(self) -> None:
        now = self.system.now()
        self._take_reports(now)
        if self.control is not None and self.control.holding:
            return  # a synced batch is being renamed into place: its commit restarts once for all of it
        if self.state is State.RUNNING and self._may_stop_early(self.burst.paths):
            self.restart("files changed", sorted(self.burst.paths))
        if not self.burst.ready(now):
            return
        paths, first = self.burst.take()
        self.timing.first_change, self.timing.group_closed = time.time() - (now - first), time.time()
        self.on_burst(paths)

    def _take_reports(self, now: float) -> None:
        while self.incoming:
            report = self.incoming.popleft()
            self.burst.add(self.echoes.new_changes(set(report.paths)), now, report.busy, report.settle)

    def handle_control(self) -> None:
        """A synced batch is complete: restart once now, for it and whatever the watcher already held."""
        if self.control is None:
            return
        batches = self.control.take_batches()
        stamped = self.control.take_stamped()
        if stamped:  # only mtimes changed: remember them as echoes, and drop what the watcher already held
            self.echoes.remember(stamped)
            self._take_reports(self.system.now())
            self.burst.drop(set(stamped))
            out.detail(f"sync gave {plural(len(stamped), 'file')} the laptop's mtime: no restart")
        kept = self.control.take_kept()
        if kept:  # written, but their dependency install failed: the app keeps running the old code
            self.echoes.remember(kept)
            self._take_reports(self.system.now())
            self.burst.drop(set(kept))
            out.warn(f"a synced dependency install failed: keeping the running app ({plural(len(kept), 'file')} held)")
        for batch in batches:
            self.echoes.remember(batch.paths)
            paths = {p for p in batch.paths if p in self.config_watched or self.rules.matches(p)}
            out.detail(f"sync batch committed: {plural(len(batch.paths), 'path')}, {len(paths)} watched")
            if batch.fresh:
                self.start_fresh = True  # dependencies were installed: the preloaded ones are stale
                self.warm.discard("dependencies were installed")
            if not paths and not batch.fresh:
                self.tell([(batch, {"what": "unchanged"})])
            else:
                now = self.system.now()
                self.feedback.committed(batch, now)
                self._take_reports(now)
                held, first = self.burst.take()
                self.timing.first_change = time.time() - (now - first) if held else time.time()
                self.timing.group_closed = time.time()
                self.on_burst(sorted(paths.union(held)), "dependencies installed" if batch.fresh else "files changed")

    def _may_stop_early(self, paths: set[str]) -> bool:
        """Stopping the old tree may begin with a burst's first change, overlapping the quiet
        window (the next generation still waits for the burst to close), unless the whole
        burst is needed to decide: a config file in it, a soft-reload path, or a delay."""
        return bool(paths) and not self.delay.seconds and not self.soft.enabled and not self.config_watched & paths

    def tell(self, outcomes: list[tuple[Committed, Outcome]]) -> None:
        """What synced batches did to the app, to the agents waiting to hear it (feedback.py)."""
        for batch, outcome in outcomes:
            if self.control is not None:
                self.control.reply(batch, outcome)

    def on_burst(self, paths: list[str], reason: str = "files changed") -> None:
        for path in paths:
            out.detail(f"changed: {self.plan.relative(path)}")
        if self.config_files.intersection(paths):
            self.reload_config()
        elif self._reloaded_new_config(paths):
            pass  # a config file that was not read before is now: reloaded, not restarted
        elif self.state is State.RUNNING and self.soft.applies(paths):
            self.soft_reload(paths)
        elif self.delay.seconds > 0:
            out.detail(f"delaying restart for {self.plan.settings.delay:g}ms")
            self.delay.add(paths, self.system.now())
        else:
            self.restart(reason, paths)

    def soft_reload(self, paths: list[str]) -> None:
        assert self.tree is not None
        self.soft.hand_over(paths)
        self.tell(self.feedback.reloaded())
        name = signal.Signals(self.soft.signal).name
        out.status(f"hot reload: {plural(len(paths), 'file')} changed, sending {name} to pid {self.tree.pid}")
        self.system.send(self.tree.pid, self.soft.signal)

    # -- timers -----------------------------------------------------------------------------
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

    # -- the warm process -------------------------------------------------------------------
    def handle_warm(self) -> None:
        if not self.warm_ready:
            return
        self.warm_ready = False
        reason = self.warm.handle_reports()
        if reason:
            self.restart(reason, [])  # no changed files: nothing preloaded next time

    # -- stdin ------------------------------------------------------------------------------
    def handle_stdin(self) -> None:
        self._check_front()
        if not self.stdin_ready:
            return
        self.stdin_ready = False
        data = stdin.read_input()
        if data is None:
            return
        if not data and self.terminal.usable and not self.terminal.in_front() and not self.terminal.hung_up():
            self.selector.unregister(0)  # a background job cannot read its terminal (EIO): not the end
            self.stdin_paused = True
            return
        decision = console.decide(data, str(self.plan.settings.restartable))
        if isinstance(decision, console.RestartTyped):
            self.restart(f"`{decision.word}` entered", [])
        elif isinstance(decision, console.ForwardInput):
            self.app_stdin.forward(decision.data)
        else:
            self.selector.unregister(0)
            self.app_stdin.source_ended()

    def _check_front(self) -> None:
        """`fg` sends a running background job no signal: look whether reloadd is in front now, and then
        read `rs` again, or (with -I) hand the terminal on to the app, which holds it whenever it runs."""
        if self.stdin_paused and self.terminal.in_front():
            self.stdin_paused = False
            self.selector.register(0, selectors.EVENT_READ, "stdin")
        if not self.reads_stdin and self.tree and self.tree.status is None and self.terminal.in_front():
            self.terminal.give_to(self.tree.pgid)

    def _waiting_for_front(self) -> bool:
        """_check_front has something to notice: reloadd is a background job that wants the terminal."""
        wants = self.stdin_paused or (not self.reads_stdin and self.tree is not None and self.tree.status is None)
        return wants and self.terminal.in_back()

    def _switch_stdin(self) -> None:
        """`stdin`/`restartable` changed in a config reload: the restart that follows gives the
        new app the matching stdin (a pipe reloadd feeds, or reloadd's own)."""
        if not self.app_stdin.source_open:
            return  # our stdin already ended: nothing to read or to hand over
        if self.reads_stdin:
            self.terminal.take_back()  # reading a terminal needs its foreground group
            self._read_stdin()
        elif self.stdin_paused:
            self.stdin_paused = False  # a background job's stdin is not registered: nothing to undo
        else:
            self.selector.unregister(0)

    def _read_stdin(self) -> None:
        """reloadd reads stdin itself: `rs` restarts, the rest goes to the app through a pipe."""
        self.selector.register(0, selectors.EVENT_READ, "stdin")
        out.info(f"to restart at any time, enter `{self.plan.settings.restartable}`")
