"""A fake ``System`` for replaying histories against the real supervisor state machine.

The clock only moves when a test says so; processes are entries in a table that exit when
told to, or when signalled (after a delay the test chooses). Every OS call the loop makes is
recorded in ``actions``, so a test asserts what the supervisor did, in order. No node, no
signals, no sleeping: this proves decisions; the integration tests prove the OS side.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

from reloadd.app import make_plan
from reloadd.host.system import Source, Tree
from reloadd.host.watch.watcher import WatchReport
from reloadd.setup.cli import parse_args
from reloadd.setup.plan import Plan
from reloadd.supervise.loop import Supervisor

STEP = 0.001  # the smallest step the replay clock takes, so that "at once" still moves time
IDLE_STEP = 1.0  # with no timer armed the replay still moves on, so that scheduled fake events happen


def wait_status(code: int = 0, killed_by: int = 0) -> int:
    """A waitpid status as the kernel gives it: exit code in the high byte, or the signal."""
    return killed_by if killed_by else code << 8


@dataclass
class FakeProcess:
    pid: int
    argv: list[str]
    alive: bool = True
    exit_at: Optional[float] = None
    exit_status: int = 0
    reaped: bool = False
    parent: Optional[int] = None  # for a process the app started


class FakeTree:
    def __init__(self, system: FakeSystem, pid: int, started: float) -> None:
        self.system, self.pid, self.started = system, pid, started
        self.status: Optional[int] = None

    @property
    def pgid(self) -> int:
        return self.pid

    def members(self) -> set[int]:
        ours = [p for p in self.system.processes.values() if self.pid in (p.pid, p.parent)]
        return {p.pid for p in ours if p.alive or not p.reaped}

    def signal_all(self, sig: int, pids: set[int]) -> None:
        for pid in pids:
            self.system.send(pid, sig)


class FakeLadder:
    def __init__(self, system: FakeSystem, tree: FakeTree, sig: int, timeout: float) -> None:
        self.system, self.tree, self.sig = system, tree, sig
        self.deadline = system.now() + timeout
        self.killed = False
        self.done = False
        tree.signal_all(sig, tree.members())

    def poll(self) -> bool:
        if not self.done and not self.tree.members():
            self.done = True
        elif not self.done and not self.killed and self.system.now() >= self.deadline:
            self.kill_now("stop-timeout")
        return self.done

    def kill_now(self, reason: str) -> None:
        self.killed = True
        self.tree.signal_all(signal.SIGKILL, self.tree.members())

    def next_check(self) -> float:
        return 0.0 if self.done else 0.01


class FakeWatcher:
    def stop(self) -> None:
        pass


class FakeWarm:
    """No warm process: every start is cold (the real one is proven by the integration tests)."""

    output_fds: tuple[Optional[int], Optional[int]] = (None, None)

    def configure(self, enabled: bool) -> None:
        pass

    def pids(self) -> set[int]:
        return set()

    def prepare(self, launch: object) -> None:
        pass

    def deadline(self) -> None:
        return None

    def tick(self, now: float, busy: bool) -> None:
        pass

    def take(self, launch: object, changed: list[str], fresh: bool) -> None:
        return None

    def reaped(self, pid: int, status: int) -> bool:
        return False

    def discard(self, reason: str) -> None:
        pass

    def close(self) -> None:
        pass

    def handle_reports(self) -> None:
        return None


class FakeTerminal:
    usable = False
    nohup = False

    def hung_up(self) -> bool:
        return False

    def in_front(self) -> bool:
        return False

    def in_back(self) -> bool:
        return False

    def app_suspended(self, pid: int) -> bool:
        return False

    def can_suspend(self) -> bool:
        return True

    def forget(self) -> None:
        pass

    def give_to(self, pgid: int) -> bool:
        return False

    def take_back(self) -> None:
        pass


@dataclass
class FakeSystem:
    clock: float = 0.0
    actions: list[tuple[Any, ...]] = field(default_factory=list)
    processes: dict[int, FakeProcess] = field(default_factory=dict)
    next_pid: int = 100
    # how a process answers a signal: seconds until it exits (None: it ignores the signal)
    answers: dict[int, Optional[float]] = field(
        default_factory=lambda: {signal.SIGTERM: 0.05, signal.SIGUSR2: 0.05, signal.SIGINT: 0.05}
    )

    # -- what the supervisor calls ---------------------------------------------------------
    def now(self) -> float:
        return self.clock

    def wall_time(self) -> float:
        return self.clock

    def sleep(self, seconds: float) -> None:
        self.clock += seconds

    def listen(self, source: Source, tag: str) -> None:
        pass

    def unlisten(self, source: Source) -> None:
        pass

    def select(self, timeout: Optional[float]) -> list[str]:
        return []  # the replay moves the clock itself and calls step()

    def read_stdin(self) -> Optional[bytes]:
        return None

    def spawn(self, argv: list[str], env: dict[str, str], stdin_fd: Optional[int], outputs: object) -> int:
        pid, self.next_pid = self.next_pid, self.next_pid + 1
        self.processes[pid] = FakeProcess(pid, argv)
        self.actions.append(("spawn", pid))
        return pid

    def reap(self) -> list[tuple[int, int]]:
        self._exit_due()
        found = [p for p in self.processes.values() if not p.alive and not p.reaped]
        for proc in found:
            proc.reaped = True
        return [(p.pid, p.exit_status) for p in found]

    def send(self, pid: int, sig: int) -> bool:
        self.actions.append(("signal", pid, signal.Signals(sig).name))
        proc = self.processes.get(pid)
        if proc is None or not proc.alive:
            return False
        if sig == signal.SIGKILL:
            self._end(proc, wait_status(killed_by=signal.SIGKILL))
        elif self.answers.get(sig) is not None and proc.exit_at is None:
            proc.exit_at = self.clock + float(self.answers[sig] or 0.0)
            proc.exit_status = wait_status(killed_by=sig)
        return True

    def send_group(self, pgid: int, sig: int) -> bool:
        return self.send(pgid, sig)

    def suspend_self(self) -> None:
        self.send(os.getpid(), signal.SIGSTOP)

    def tree(self, pid: int, exclude: Callable[[], set[int]]) -> FakeTree:
        return FakeTree(self, pid, self.clock)

    def stop(
        self, child: Tree, sig: int, timeout: float, reason: str, members: Optional[set[int]], quiet: bool = False
    ) -> FakeLadder:
        assert isinstance(child, FakeTree)  # a System stops only the trees it made
        return FakeLadder(self, child, sig, timeout)

    def listening_ports(self, pids: set[int]) -> set[int]:
        return set()

    def wait_until_free(self, held: set[int]) -> None:
        pass

    def prepare(self) -> None:
        pass

    def signals(self) -> list[int]:
        return []  # a test hands the supervisor its signals itself (Replay.signal)

    def wake(self) -> None:
        pass

    def terminal(self) -> FakeTerminal:
        return FakeTerminal()

    def interactive_stdin(self) -> bool:
        return False

    def warm(self) -> FakeWarm:
        return FakeWarm()

    def app_output(self, listener: object) -> NoReturn:
        raise AssertionError("no app output without a sync channel, and the fake opens none")

    def open_control(self, watched: list[str]) -> None:
        return None

    def watch(self, *args: Any) -> FakeWatcher:
        return FakeWatcher()

    # -- what the test does ----------------------------------------------------------------
    def child_of(self, parent: int) -> int:
        """A process the app started (it stays when the app exits, as a real orphan does)."""
        pid, self.next_pid = self.next_pid, self.next_pid + 1
        self.processes[pid] = FakeProcess(pid, ["child"], parent=parent)
        return pid

    def exit(self, pid: int, code: int = 0) -> None:
        """The process ends by itself now with exit ``code``."""
        self._end(self.processes[pid], wait_status(code))

    def _end(self, proc: FakeProcess, status: int) -> None:
        proc.alive, proc.exit_status, proc.exit_at = False, status, None

    def _exit_due(self) -> None:
        for proc in self.processes.values():
            if proc.alive and proc.exit_at is not None and proc.exit_at <= self.clock:
                self._end(proc, proc.exit_status)

    def spawned(self) -> list[int]:
        return [action[1] for action in self.actions if action[0] == "spawn"]


class Replay:
    """The real Supervisor on a FakeSystem, driven by a test's history of events."""

    def __init__(self, tmp: Path, args: list[str], files: Optional[dict[str, str]] = None) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        for name, text in {"server.js": "", **(files or {})}.items():
            (tmp / name).write_text(text)
        self.system = FakeSystem()
        self.cwd = tmp
        self.supervisor = Supervisor(self.plan(args), system=self.system)

    def plan(self, args: list[str]) -> Plan:
        return make_plan(parse_args(["--cwd", str(self.cwd), *args], base=self.cwd))

    def start(self) -> Replay:
        self.supervisor.startup()
        self.supervisor.step()
        return self

    def until(self, when: float) -> None:
        """Run the loop as it would run, waking when it asks to, until the clock reads ``when``."""
        while self.system.clock < when:
            armed = self.supervisor.timeout()  # None: only an event would wake the real loop
            wait = max(STEP, IDLE_STEP if armed is None else armed)
            self.system.clock = min(when, self.system.clock + wait)
            self.supervisor.step()

    def change(self, *names: str) -> None:
        paths = frozenset(os.path.join(self.cwd, n) for n in names)
        self.supervisor.incoming.append(WatchReport(paths, busy=False, settle=0.0))
        self.supervisor.step()

    def signal(self, sig: int) -> None:
        self.supervisor.on_signal(sig)
        self.supervisor.step()

    @property
    def app(self) -> int:
        tree = self.supervisor.tree
        assert tree is not None, f"no app running (state {self.supervisor.state})"
        return tree.pid
