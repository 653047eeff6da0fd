"""The operating-system side of the supervisor: the ``System`` seam and its real implementation.

The loop asks a ``System`` for the time, the signals received, to start a program, to signal, to
reap, to wait for its file descriptors, to look at and stop a process tree, to check ports, for
the terminal and stdin, the watcher, the warm process, the apps' output pipes and the control
channel (hooks spawn and signal through it too); it never calls the OS for these itself.
``System`` and the small objects it hands out are Protocols, so that unit tests replay a history
of events ("change at 0.00 s, app exits 1 at 0.30 s") against the real state machine with a fake
clock and fake processes (tests/fakes.py), while the integration and PID-1 tests prove
``HostSystem``, the real one.
"""

from __future__ import annotations

import os
import selectors
import signal
import time
from pathlib import Path
from typing import Callable, Optional, Protocol, Union

from ..output import out
from ..setup.production import refusal
from . import pid1, ports, stdin, tree
from .app_output import AppOutput, Listener
from .control import ControlServer
from .control_wire import control_dir, private_dir
from .tree import ChildTree, Outputs, StopLadder
from .warm.launch import Launch
from .warm.manager import Taken, Warm
from .watch.change_filter import WatchRules
from .watch.watcher import Watcher, WatchReport

Reporter = Callable[[WatchReport], None]  # called in the watcher's thread


class HasFileno(Protocol):
    def fileno(self) -> int: ...


Source = Union[int, HasFileno]  # what the loop waits on: a descriptor, or an object that has one


class Tree(Protocol):
    """One generation of the app (host/tree.py ``ChildTree``)."""

    status: Optional[int]  # the app's wait status, set by the loop once it is reaped

    @property
    def pid(self) -> int: ...
    @property
    def pgid(self) -> int: ...
    @property
    def started(self) -> float: ...
    def members(self) -> set[int]: ...
    def signal_all(self, sig: int, pids: set[int]) -> None: ...


class Ladder(Protocol):
    """Stopping a tree: signal, wait, SIGKILL, wait (host/tree.py ``StopLadder``)."""

    @property
    def tree(self) -> Tree: ...
    def poll(self) -> bool: ...
    def kill_now(self, reason: str) -> None: ...
    def next_check(self) -> float: ...


class Tty(Protocol):
    """The controlling terminal, as the loop uses it (host/pid1.py ``Terminal``)."""

    @property
    def usable(self) -> bool: ...
    @property
    def nohup(self) -> bool: ...
    def hung_up(self) -> bool: ...
    def in_front(self) -> bool: ...
    def in_back(self) -> bool: ...
    def app_suspended(self, pid: int) -> bool: ...
    def can_suspend(self) -> bool: ...
    def forget(self) -> None: ...
    def give_to(self, pgid: int) -> bool: ...
    def take_back(self) -> None: ...


class Prestart(Protocol):
    """The warm process for the next generation (host/warm/manager.py ``Warm``)."""

    output_fds: Outputs

    def configure(self, enabled: bool) -> None: ...
    def pids(self) -> set[int]: ...
    def prepare(self, launch: Union[Launch, str]) -> None: ...
    def deadline(self) -> Optional[float]: ...
    def tick(self, now: float, busy: bool) -> None: ...
    def take(self, launch: Union[Launch, str], changed: list[str], fresh: bool) -> Optional[Taken]: ...
    def reaped(self, pid: int, status: int) -> bool: ...
    def discard(self, reason: str) -> None: ...
    def close(self) -> None: ...
    def handle_reports(self) -> Optional[str]: ...


class Watching(Protocol):
    """A running watcher (host/watch/watcher.py ``Watcher``)."""

    def stop(self) -> None: ...


class System(Protocol):
    """Everything the loop asks of the OS: ``HostSystem`` here, tests/fakes.py's ``FakeSystem`` in replays."""

    def now(self) -> float:
        """The one clock of the loop, for every duration and deadline: monotonic."""
        ...

    def wall_time(self) -> float:
        """The wall clock, only for the timing marks reloadd reports (never to measure a wait)."""
        ...

    def sleep(self, seconds: float) -> None: ...
    def listen(self, source: Source, tag: str) -> None: ...
    def unlisten(self, source: Source) -> None: ...
    def select(self, timeout: Optional[float]) -> list[str]: ...
    def read_stdin(self) -> Optional[bytes]: ...
    def spawn(self, argv: list[str], env: dict[str, str], stdin_fd: Optional[int], outputs: Outputs) -> int:
        """Start the app in a process group of its own; takes ``stdin_fd`` (closes it)."""
        ...

    def reap(self) -> list[tuple[int, int]]: ...
    def send(self, pid: int, sig: int) -> bool: ...
    def send_group(self, pgid: int, sig: int) -> bool: ...
    def suspend_self(self) -> None: ...
    def tree(self, pid: int, exclude: Callable[[], set[int]]) -> Tree: ...
    def stop(
        self, child: Tree, sig: int, timeout: float, reason: str, members: Optional[set[int]], quiet: bool = False
    ) -> Ladder: ...
    def listening_ports(self, pids: set[int]) -> set[int]: ...
    def wait_until_free(self, held: set[int]) -> None: ...
    def prepare(self) -> None: ...
    def signals(self) -> list[int]: ...
    def wake(self) -> None: ...
    def terminal(self) -> Tty: ...
    def interactive_stdin(self) -> bool: ...
    def watch(
        self, rules: WatchRules, legacy_watch: Optional[bool], poll_ms: int, report: Reporter, extra: list[Path]
    ) -> Watching: ...
    def warm(self) -> Prestart: ...
    def app_output(self, listener: Listener) -> AppOutput: ...
    def open_control(self, watched: list[str]) -> Optional[ControlServer]: ...


class HostSystem:
    """The real ``System``: the OS itself."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()  # everything the loop waits on
        self.inbox = pid1.SignalInbox()
        self.listen(self.inbox.read_fd, "signals")

    def now(self) -> float:
        return time.monotonic()  # immune to the wall clock being set

    def wall_time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Wait outside the loop (only while stopping for good, when nothing else is to be done)."""
        time.sleep(seconds)

    def listen(self, source: Source, tag: str) -> None:
        """``select`` reports ``tag`` while ``source`` has something to read."""
        self.selector.register(source, selectors.EVENT_READ, tag)

    def unlisten(self, source: Source) -> None:
        self.selector.unregister(source)

    def select(self, timeout: Optional[float]) -> list[str]:
        """Wait up to ``timeout`` seconds (None: until something is ready); the tags of what is."""
        return [key.data for key, _ in self.selector.select(timeout)]

    def read_stdin(self) -> Optional[bytes]:
        return stdin.read_input()

    def spawn(self, argv: list[str], env: dict[str, str], stdin_fd: Optional[int], outputs: Outputs) -> int:
        """Start the app; ``stdin_fd`` (the child's end of a pipe) is closed here once the child has it."""
        try:
            return tree.spawn(argv, env, stdin_fd=stdin_fd, stdout_fd=outputs[0], stderr_fd=outputs[1])
        finally:
            if stdin_fd is not None:
                os.close(stdin_fd)

    def reap(self) -> list[tuple[int, int]]:
        return pid1.reap()

    def send(self, pid: int, sig: int) -> bool:
        return tree.send(pid, sig)

    def send_group(self, pgid: int, sig: int) -> bool:
        return tree.send_group(pgid, sig)

    def suspend_self(self) -> None:
        """SIGSTOP to reloadd itself: returns once `fg`/`bg` continues reloadd's group."""
        tree.send(os.getpid(), signal.SIGSTOP)

    def tree(self, pid: int, exclude: Callable[[], set[int]]) -> ChildTree:
        return ChildTree(pid, started=self.now(), exclude=exclude)

    def stop(
        self, child: Tree, sig: int, timeout: float, reason: str, members: Optional[set[int]], quiet: bool = False
    ) -> StopLadder:
        assert isinstance(child, ChildTree)  # a System stops only the trees it made
        return StopLadder(child, sig, timeout, reason, members, quiet)

    def listening_ports(self, pids: set[int]) -> set[int]:
        return ports.listening_ports(pids)

    def wait_until_free(self, held: set[int]) -> None:
        ports.wait_until_free(held)

    def prepare(self) -> None:
        """Take over the signals reloadd handles and adopt orphans, as an init does."""
        self.inbox.install()
        pid1.become_subreaper()

    def signals(self) -> list[int]:
        """The signals received since the last call, in order (their handlers only record them)."""
        return self.inbox.drain()

    def wake(self) -> None:
        """Wake the loop from another thread (the watcher's)."""
        self.inbox.wake()

    def terminal(self) -> pid1.Terminal:
        return pid1.Terminal()

    def interactive_stdin(self) -> bool:
        return stdin.stdin_is_interactive()

    def watch(
        self, rules: WatchRules, legacy_watch: Optional[bool], poll_ms: int, report: Reporter, extra: list[Path]
    ) -> Watcher:
        """Start watching in a thread of its own; ``report`` is called there (``extra``: files watched besides)."""
        watcher = Watcher(rules, legacy_watch, poll_ms, report, extra_files=extra)
        watcher.start()
        return watcher

    def warm(self) -> Warm:
        """The pre-started node for the next generation; it registers its report pipes with the loop's selector."""
        return Warm(self.selector, clock=self.now)

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
