"""The supervisor loop: start the app, wait for something to happen, act, repeat.

One thread runs this loop; signal handlers and the watcher thread only record and wake it.
Everything that changes processes (start, signal, reap, kill) happens here, in this order on
every wake-up: signals, reaped processes, stdin, file changes, timers.
"""

from __future__ import annotations

import enum
import os
import selectors
import shutil
import signal
import stat
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .command import Command
from .config import Settings, signal_number
from .control import ControlServer, Echoes, control_dir, private_dir
from .errors import ReloaddError, exit_status
from .hooks import Hooks
from .matching import GlobSet, Rules
from .output import out
from .pid1 import FORWARDED_SIGNALS, RESTART_SIGNAL, STOP_SIGNALS, SignalInbox, Terminal, become_subreaper, reap
from .ports import listening_ports, wait_until_free
from .sync.guard import refusal
from .tree import ChildTree, StopLadder, send, send_group, spawn
from .watcher import ChangeGroup, Watcher

REAP_INTERVAL = 1.0  # wake at least this often to reap, as tini does, in case a SIGCHLD was coalesced
GROUP_QUIET = 0.02  # seconds without a change that close a burst (interface.md: tens of milliseconds)
GROUP_CAP = 3.0  # a burst never holds a restart back longer than this
BACKOFF_FIRST = 0.5  # --restart-on-crash: first wait, doubled after each crash...
BACKOFF_MAX = 30.0  # ...up to this
BACKOFF_RESET_AFTER = 10.0  # an app that stayed up this long starts the backoff again from the beginning
QUIT_HOOK_WAIT = 2.0  # at exit, how long the `quit` hook may finish before it is killed
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT)  # Ctrl-C / Ctrl-\ typed to an app that owns the terminal
STDIN_CHUNK = 65536


def _stdin_is_interactive() -> bool:
    """A terminal, pipe or socket can carry `rs`; /dev/null or a file (a pod without stdin) cannot."""
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return os.isatty(0) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


@dataclass
class Plan:
    """Everything the loop needs to run the app, derived from the command line and config files."""

    settings: Settings
    command: Command
    env: dict[str, str]
    cwd: Path
    rules: Rules
    files: list[Path] = field(default_factory=list)  # config files in use: editing one reloads it
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


class State(enum.Enum):
    IDLE = "idle"  # no app running: before the first change (-C), after a crash or clean exit
    RUNNING = "running"
    STOPPING = "stopping"
    BACKOFF = "backoff"  # --restart-on-crash waiting before the next start


class Purpose(enum.Enum):
    RESTART = "restart"
    EXIT = "exit"
    CLEANUP = "cleanup"  # the app exited by itself; what it left running is being stopped


@dataclass
class Timing:
    first_change: float = 0.0
    group_closed: float = 0.0
    stop_begin: float = 0.0
    stopped: float = 0.0


class Supervisor:
    def __init__(self, plan: Plan, replan: Optional[Callable[[], Plan]] = None) -> None:
        self.plan = plan
        self.replan = replan
        self.inbox = SignalInbox()
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.inbox.read_fd, selectors.EVENT_READ, "signals")
        self.state = State.IDLE
        self.tree: Optional[ChildTree] = None
        self.ladder: Optional[StopLadder] = None
        self.purpose = Purpose.RESTART
        self.exit_code: Optional[int] = None
        self.last_status = 0
        self.restart_pending = False
        self.changed: list[str] = []
        self.incoming: deque[set[str]] = deque()
        self.group = ChangeGroup(GROUP_QUIET, GROUP_CAP)
        self.delay_until: Optional[float] = None
        self.backoff = BACKOFF_FIRST
        self.backoff_until: Optional[float] = None
        self.timing = Timing()
        self.old_ports: set[int] = set()
        self.watcher: Optional[Watcher] = None
        self.terminal = Terminal()
        self.stdin_pipe: Optional[int] = None  # write end of the app's stdin when reloadd forwards it
        self.stdin_open = True
        self.hot_file: Optional[Path] = None
        self.control: Optional[ControlServer] = None  # `reloadd agent` says "batch committed" here
        self.echoes = Echoes()
        self.hooks = Hooks(plan.settings.events, plan.env, plan.settings.event_timeout)
        self._apply(plan)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        self.startup()
        while self.exit_code is None:
            self.wait(self.timeout())
            self.handle_signals()
            self.handle_reaped()
            self.handle_stdin_events()
            self.handle_control()
            self.handle_changes()
            self.handle_timers()
        self.shutdown()
        return self.exit_code

    def startup(self) -> None:
        self.inbox.install()
        become_subreaper()
        settings, command = self.plan.settings, self.plan.command
        if self.reads_stdin:
            self._read_stdin()
        if self.watching:
            out.info(f"watching path(s): {' '.join(self.rules.describe_watch())}")
            out.info(f"watching extensions: {self.rules.describe_ext()}")
            self._start_watcher()
            self._open_control()
        if command.inspect and command.inspect[0] in ("0.0.0.0", "::"):
            out.warn(
                f"the inspector listens on {command.inspect[0]}:{command.inspect[1]}: anyone who can reach it can "
                "run code in the app; prefer 127.0.0.1 with kubectl port-forward"
            )
        if self.watching and settings.run_on_change_only:
            out.info("waiting for the first change before starting (--on-change-only)")
        else:
            self.start_child()

    def shutdown(self) -> None:
        if self.watcher:
            self.watcher.stop()
        if self.control:
            self.control.close()
        self.hooks.fire("quit", exit_code=self.exit_code)
        deadline = time.monotonic() + min(QUIT_HOOK_WAIT, self.plan.settings.event_timeout)
        while self.hooks.running and time.monotonic() < deadline:
            time.sleep(0.01)
            self.handle_reaped()
        self.hooks.kill_all()
        self.handle_reaped()
        self.terminal.take_back()
        if self.hot_file is not None:
            shutil.rmtree(self.hot_file.parent, ignore_errors=True)

    def wait(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            if key.data in ("signals", "control"):
                continue  # drained in handle_signals / handle_control
            self._pending_stdin = True

    def timeout(self) -> float:
        now = time.monotonic()
        deadlines = [now + REAP_INTERVAL, self.delay_until, self.backoff_until, self.hooks.next_deadline()]
        if self.ladder:
            deadlines.append(now + self.ladder.next_check())
        wait = self.group.wait_time(time.time())
        if wait is not None and not (self.control and self.control.holding):  # the commit wakes us instead
            deadlines.append(now + wait)
        return max(0.0, min(d for d in deadlines if d is not None) - now)

    # -- configuration ----------------------------------------------------------------------
    def _apply(self, plan: Plan) -> None:
        self.plan = plan
        settings = plan.settings
        self.watching = settings.watching
        self.reads_stdin = (
            self.watching and settings.stdin and settings.restartable is not False and _stdin_is_interactive()
        )
        self.rules = plan.rules
        self.hot = GlobSet(settings.hot.paths, plan.cwd) if settings.hot and settings.hot.paths else None
        self.hooks.commands = dict(settings.events)
        self.hooks.base_env = dict(plan.env)
        self.hooks.timeout = settings.event_timeout
        self.config_files = {str(path) for path in plan.files}

    def _start_watcher(self) -> None:
        settings = self.plan.settings
        self.watcher = Watcher(
            self.rules, settings.legacy_watch, settings.polling_interval, self._report, extra_files=self.plan.files
        )
        self.watcher.start()

    def _report(self, paths: set[str]) -> None:
        """Called in the watcher thread: record and wake the loop."""
        self.incoming.append(paths)
        self.inbox.wake()

    # -- signals ----------------------------------------------------------------------------
    def handle_signals(self) -> None:
        for sig in self.inbox.drain():
            if sig in STOP_SIGNALS:
                self.request_exit(sig)
            elif sig == RESTART_SIGNAL and self.watching:
                self.request_restart("SIGHUP received", [])
            elif sig == RESTART_SIGNAL or sig in FORWARDED_SIGNALS:
                if self.tree and self.tree.status is None:
                    send_group(self.tree.pgid, sig)

    def request_exit(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.ladder and self.purpose is Purpose.EXIT:
            self.ladder.kill_now(f"{name} received again during shutdown")
        elif self.ladder:
            self.purpose = Purpose.EXIT  # a restart or clean-up under way now ends in exiting
            self.ladder.tree.signal_all(sig, self.ladder.tree.members())
        elif self.tree is None:
            out.detail(f"{name} received with no app running: exiting")
            self.exit_code = 0
        else:
            self.purpose = Purpose.EXIT
            self.begin_stop(sig, f"{name} received")

    # -- processes --------------------------------------------------------------------------
    def handle_reaped(self) -> None:
        self._dispatch(reap())
        self._check_ladder()

    def _check_ladder(self) -> None:
        if self.ladder and self.ladder.poll():
            self._dispatch(reap())  # the tree's last zombies (the app among them) are reapable now
            self.on_stopped()

    def _dispatch(self, reaped: list[tuple[int, int]]) -> None:
        for pid, status in reaped:
            if self.tree and pid == self.tree.pid:
                self.tree.status = status
                self.last_status = exit_status(status)
                if not self.ladder:
                    self.on_app_exit()
            elif not self.hooks.reaped(pid, status):
                out.detail(f"reaped orphan {pid} (status {exit_status(status)})")

    def on_app_exit(self) -> None:
        """The app ended by itself: stop what it left behind, then decide (on_stopped)."""
        self.purpose = Purpose.CLEANUP
        self.begin_stop(signal.SIGTERM, "the app exited; stopping what it left running")

    def begin_stop(self, sig: int, reason: str, members: Optional[set[int]] = None) -> None:
        assert self.tree is not None
        self.state = State.STOPPING
        self.timing.stop_begin = time.time()
        self.ladder = StopLadder(self.tree, sig, self.plan.settings.stop_timeout, reason, members)
        self._check_ladder()

    def on_stopped(self) -> None:
        self.ladder = None
        self.timing.stopped = time.time()
        tree, self.tree = self.tree, None
        self._close_stdin_pipe()
        status = self.last_status if tree and tree.status is not None else 0
        if self.purpose is Purpose.EXIT:
            self.exit_code = status
        elif self.purpose is Purpose.RESTART:
            self.hooks.fire("exit", filename=self.plan.settings.signal, exit_code=status)
            self.start_child()
        else:
            if not self.reads_stdin:
                self.terminal.take_back()  # so that Ctrl-C reaches reloadd while no app runs
            self.after_app_exit(tree, status)
            if self.exit_code is None and self.restart_pending:
                self.restart_pending = False
                self.request_restart("changes arrived while the app was exiting", self.changed)

    def after_app_exit(self, tree: Optional[ChildTree], status: int) -> None:
        held_terminal = self.terminal.usable and not self.reads_stdin
        killed_by = status - 128 if status > 128 else 0
        if not self.watching or (status != 0 and self.plan.settings.exitcrash):
            self.exit_code = status
        elif held_terminal and killed_by in TERMINAL_SIGNALS:
            self.exit_code = status  # the user pressed Ctrl-C in the app's terminal: they want out
        elif status == 0:
            self.state = State.IDLE
            self.hooks.fire("exit", exit_code=status)
            out.status("clean exit - waiting for changes before restart")
        else:
            self.state = State.IDLE
            self.hooks.fire("crash", exit_code=status, child_pid=tree.pid if tree else None)
            if self.plan.settings.restart_on_crash:
                self.schedule_backoff(tree)
            else:
                out.error("app crashed - waiting for file changes before starting...")

    def schedule_backoff(self, tree: Optional[ChildTree]) -> None:
        if tree and time.monotonic() - tree.started >= BACKOFF_RESET_AFTER:
            self.backoff = BACKOFF_FIRST
        out.error(f"app crashed - restarting in {self.backoff:g}s (--restart-on-crash)")
        self.state = State.BACKOFF
        self.backoff_until = time.monotonic() + self.backoff
        self.backoff = min(BACKOFF_MAX, self.backoff * 2)

    def start_child(self) -> None:
        if self.old_ports:
            wait_until_free(self.old_ports)
            self.old_ports = set()
        command = self.plan.command
        env = dict(self.plan.env)
        if self.hot:
            env["RELOADD_HOT_FILE"] = str(self._hot_file())
        stdin_fd = self._open_stdin_pipe()
        out.status(f"starting `{command.display}`")
        try:
            pid = spawn(command.argv, env, stdin_fd=stdin_fd)
        except ReloaddError as exc:
            out.error(exc.message)
            self.exit_code = exc.exit_code
            return
        finally:
            if stdin_fd is not None:
                os.close(stdin_fd)
        self.tree = ChildTree(pid, exclude=self.hooks.pids)
        self.state = State.RUNNING
        if not self.reads_stdin:
            self.terminal.give_to(pid)
        self._record_timing()
        self.hooks.fire("start", child_pid=pid, filename=command.script or "")
        if self.restart_pending:
            self.restart_pending = False
            self.request_restart("changes arrived during the restart", self.changed)

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
    def request_restart(self, reason: str, changed: list[str]) -> None:
        self.changed = changed
        if self.state is State.STOPPING:
            if self.purpose is not Purpose.EXIT:
                self.restart_pending = True
            return
        if self.state is not State.RUNNING or self.tree is None:
            self.backoff_until = None
            out.status("restarting due to changes..." if changed else f"starting: {reason}")
            self.start_child()
            return
        out.status("restarting due to changes..." if changed else f"restarting: {reason}")
        self.hooks.fire("restart", child_pid=self.tree.pid, changed=changed, filename=",".join(changed))
        self.purpose = Purpose.RESTART
        members = self.tree.members()
        self.old_ports = listening_ports(members)
        if self.plan.command.inspect:
            self.old_ports.add(self.plan.command.inspect[1])
        self.begin_stop(self.plan.settings.restart_signal, reason, members)

    def _open_control(self) -> None:
        """The sync agent's channel: only while watching, and never where the agent would refuse to sync."""
        reason = refusal(os.environ)
        if reason is not None:
            out.detail(f"no sync channel: {reason}")
            return
        directory = control_dir(os.environ)
        problem = private_dir(directory, create=True)
        try:
            if problem is None:
                self.control = ControlServer(directory)
        except OSError as exc:
            problem = f"{directory}: {exc.strerror}"
        if problem is not None:
            out.warn(f"no sync channel ({problem}): synced files are seen by the watcher only")
            return
        assert self.control is not None
        self.selector.register(self.control, selectors.EVENT_READ, "control")

    def handle_control(self) -> None:
        """A synced batch is complete: restart once now, with what the watcher already held."""
        if self.control is None:
            return
        now = time.time()
        for batch in self.control.take_batches():
            self.echoes.remember(batch)
            paths = {p for p in batch if p in self.config_files or self.rules.matches(p)}
            out.detail(f"sync batch committed: {len(batch)} path(s), {len(paths)} watched")
            if paths:
                while self.incoming:
                    self.group.add(self.echoes.new_changes(self.incoming.popleft()), now)
                held, first = self.group.take()
                self.timing.first_change, self.timing.group_closed = min(first, now), now
                self.on_changes(sorted(paths | held))

    def handle_changes(self) -> None:
        now = time.time()
        while self.incoming:
            self.group.add(self.echoes.new_changes(self.incoming.popleft()), now)
        busy = bool(self.watcher and self.watcher.busy)
        self.group.quiet = max(GROUP_QUIET, self.watcher.settle if self.watcher else 0.0)
        if self.control is not None and self.control.holding:
            return  # a synced batch is being renamed into place: its commit restarts once for all of it
        if not self.group.ready(now, busy):
            return
        paths, first = self.group.take()
        self.timing.first_change, self.timing.group_closed = first, now
        self.on_changes(sorted(paths))

    def on_changes(self, paths: list[str]) -> None:
        for path in paths:
            out.detail(f"changed: {os.path.relpath(path, self.plan.cwd)}")
        if self.config_files.intersection(paths):
            self.reload_config()
            return
        if self.hot and self.state is State.RUNNING and all(self.hot.matches(p) for p in paths):
            self.soft_reload(paths)
            return
        delay = self.plan.settings.delay / 1000
        if delay > 0:
            self.changed = sorted(set(self.changed) | set(paths)) if self.delay_until else paths
            self.delay_until = time.monotonic() + delay  # nodemon's delay restarts its timer on each change
            return
        self.request_restart("files changed", paths)

    def soft_reload(self, paths: list[str]) -> None:
        assert self.tree is not None and self.plan.settings.hot is not None
        hot_file = self._hot_file()
        partial = hot_file.with_name(hot_file.name + ".new")
        partial.write_text("".join(path + "\n" for path in paths))
        partial.replace(hot_file)  # the app never reads a half-written list
        sig = signal_number(self.plan.settings.hot.signal)
        out.status(
            f"hot reload: {len(paths)} file(s) changed, sending {signal.Signals(sig).name} to pid {self.tree.pid}"
        )
        send(self.tree.pid, sig)

    def _hot_file(self) -> Path:
        if self.hot_file is None:
            directory = Path(tempfile.mkdtemp(prefix="reloadd-"))
            self.hot_file = directory / "hot-changes"
            self.hot_file.write_text("")
        return self.hot_file

    def reload_config(self) -> None:
        if self.replan is None:
            return
        try:
            plan = self.replan()
        except ReloaddError as exc:
            out.error(f"config not reloaded: {exc.message}; keeping the running config")
            return
        old = self.plan.settings.model_dump()
        changed = sorted(k for k, v in plan.settings.model_dump().items() if old.get(k) != v)
        out.status(f"config reloaded: {', '.join(changed) or 'no setting changed'}")
        if self.watcher:
            self.watcher.stop()
        was_reading = self.reads_stdin
        self._apply(plan)
        if self.watching:
            self._start_watcher()
        if self.reads_stdin != was_reading:
            self._switch_stdin()
        self.hooks.fire("config:update", changed=[str(p) for p in plan.files])
        self.request_restart("config changed", [])

    # -- timers -----------------------------------------------------------------------------
    def handle_timers(self) -> None:
        now = time.monotonic()
        self.hooks.enforce_timeouts(now)
        if self.delay_until is not None and now >= self.delay_until:
            self.delay_until = None
            self.request_restart("files changed", self.changed)
        if self.backoff_until is not None and now >= self.backoff_until:
            self.backoff_until = None
            if self.state is State.BACKOFF:
                self.start_child()

    # -- stdin ------------------------------------------------------------------------------
    _pending_stdin = False

    def handle_stdin_events(self) -> None:
        if not self._pending_stdin:
            return
        self._pending_stdin = False
        try:
            data = os.read(0, STDIN_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(0)
            self.stdin_open = False
            self._close_stdin_pipe()
            return
        restartable = str(self.plan.settings.restartable).lower()
        if data.decode(errors="replace").strip().lower() == restartable:
            self.request_restart(f"`{restartable}` entered", [])
            return
        self._forward_stdin(data)

    def _switch_stdin(self) -> None:
        """`stdin`/`restartable` changed in a config reload: the restart that follows gives the
        new app the matching stdin (a pipe reloadd feeds, or reloadd's own)."""
        if not self.stdin_open:
            return  # our stdin already ended: nothing to read or to hand over
        if self.reads_stdin:
            self.terminal.take_back()  # reading a terminal needs its foreground group
            self._read_stdin()
        else:
            self.selector.unregister(0)

    def _read_stdin(self) -> None:
        """reloadd reads stdin itself: `rs` restarts, the rest goes to the app through a pipe."""
        self.selector.register(0, selectors.EVENT_READ, "stdin")
        out.info(f"to restart at any time, enter `{self.plan.settings.restartable}`")

    def _open_stdin_pipe(self) -> Optional[int]:
        """The app's stdin: a pipe reloadd feeds when it reads `rs` itself, else reloadd's own stdin."""
        if not self.reads_stdin:
            return None
        read_end, write_end = os.pipe()
        if self.stdin_open:
            os.set_blocking(write_end, False)
            self.stdin_pipe = write_end
        else:
            os.close(write_end)  # our stdin already ended: so does the app's
        return read_end

    def _forward_stdin(self, data: bytes) -> None:
        if self.stdin_pipe is None:
            return
        try:
            os.write(self.stdin_pipe, data)
        except BlockingIOError:
            out.detail("the app is not reading its stdin; input dropped")
        except BrokenPipeError:
            self._close_stdin_pipe()

    def _close_stdin_pipe(self) -> None:
        if self.stdin_pipe is not None:
            os.close(self.stdin_pipe)
            self.stdin_pipe = None
