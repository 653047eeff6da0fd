"""One warm process: its phase, and the pipes reloadd talks to it through.

A warm process is the app's own command line started with two more pipes: reloadd writes its
orders (one JSON line, later "go") to CONTROL_FD, and it reports ("ready", later what the app's
code required) on REPORT_FD. Its phase changes in one method, ``WarmProcess.transition``, which
checks each change against ``ALLOWED`` (docs/design.md shows that table; a test keeps the two the same).
"""

from __future__ import annotations

import enum
import fcntl
import json
import os
import selectors
import signal
from dataclasses import dataclass, field
from typing import Callable, Optional

from ...errors import ReloaddError
from ..tree import send, spawn
from .launch import Launch, preload_env

CONTROL_FD = 3  # in the warm process: reloadd writes its orders here (see warm_boot.cjs)
REPORT_FD = 4  # in the warm process: it reports "ready" and what the app loaded here
FD_FLOOR = 10  # our ends of the pipes are moved above 3 and 4 so posix_spawn's dup2 always copies
KILL_SIGNAL = signal.SIGKILL  # a waiting warm process runs no app code: nothing to shut down gracefully
READ_CHUNK = 65536


class Phase(enum.Enum):
    SPAWNED = "spawned"  # started; its orders are not written yet (or could not be)
    PRELOADING = "preloading"  # has its orders: requiring the packages they name
    READY = "ready"  # said so: blocks until "go"
    ADOPTED = "adopted"  # told "go": node runs the entry point; it is the next generation now
    DIED = "died"  # ended by itself while waiting (the reaper said how)
    DISCARDED = "discarded"  # killed by reloadd: stale, incompatible, unsafe, or reloadd is exiting
    LOST = "lost"  # stopped reading its orders: given up at "go"


# Every phase change reloadd makes; anything else is a bug in reloadd, reported as one.
ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.SPAWNED: frozenset({Phase.PRELOADING, Phase.DIED, Phase.DISCARDED, Phase.LOST}),
    Phase.PRELOADING: frozenset({Phase.READY, Phase.ADOPTED, Phase.DIED, Phase.DISCARDED, Phase.LOST}),
    Phase.READY: frozenset({Phase.ADOPTED, Phase.DIED, Phase.DISCARDED, Phase.LOST}),
    Phase.ADOPTED: frozenset(),  # the app's now: the supervisor's tree, no longer a warm process
    Phase.DIED: frozenset(),
    Phase.DISCARDED: frozenset(),  # the reaper collects it (Warm.discarded)
    Phase.LOST: frozenset(),
}
WAITING = frozenset({Phase.SPAWNED, Phase.PRELOADING, Phase.READY})  # alive, waiting for "go"


class PhaseError(RuntimeError):
    """A phase change that ALLOWED does not list: a bug in reloadd."""


@dataclass
class Channel:
    """Our end of one warm process's report pipe, registered with the loop's selector."""

    pid: int
    report: int
    selector: selectors.BaseSelector
    buffer: bytes = b""
    closed: bool = False

    def messages(self) -> list[dict[str, object]]:
        """The complete JSON lines that have arrived (closes the channel at end of file)."""
        while not self.closed:
            try:
                chunk = os.read(self.report, READ_CHUNK)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                break
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        messages = []
        for line in lines:
            try:
                message = json.loads(line.decode(errors="replace"))
            except ValueError:
                continue
            if isinstance(message, dict):
                messages.append(message)
        return messages

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.selector.unregister(self.report)
        except (KeyError, ValueError):
            pass
        _close(self.report)


@dataclass
class WarmProcess:
    """A started warm process, from its spawn until it is adopted or gone."""

    launch: Launch
    channel: Channel
    control: int
    stdin_write: Optional[int]  # write end of the app's stdin pipe, when reloadd feeds it
    gate: bool  # started with warm_gate.mjs
    started: float  # monotonic, for the -V line that says how long preloading took
    phase: Phase = Phase.SPAWNED
    preload: list[str] = field(default_factory=list)  # the files its orders name
    preloaded: int = 0  # how many it required, as it said when ready
    fingerprint: tuple[object, ...] = ()  # warm_preload.fingerprint when the orders were written
    status: Optional[int] = None  # exit status, once it died while waiting

    @property
    def pid(self) -> int:
        return self.channel.pid

    def transition(self, new: Phase) -> None:
        """The only writer of the phase."""
        if new not in ALLOWED[self.phase]:
            raise PhaseError(
                f"warm process {self.pid}: {self.phase.value} -> {new.value} is not a change reloadd makes"
            )
        self.phase = new

    def write(self, message: dict[str, object]) -> bool:
        """Send one order line; False if the process no longer reads them."""
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.control, data) :]
        except OSError:
            return False  # EPIPE: it died; the reaper will say how
        return True

    def kill(self) -> None:
        send(self.pid, KILL_SIGNAL)

    def close_control(self) -> None:
        """No more orders: adopted (its stdin and report pipes go on with it) or given up."""
        _close(self.control)

    def release(self) -> None:
        """Close every descriptor of ours that still leads to it."""
        self.close_control()
        _close(self.stdin_write)
        self.channel.close()


def start(
    launch: Launch,
    gate: bool,
    output_fds: tuple[Optional[int], Optional[int]],
    selector: selectors.BaseSelector,
    clock: Callable[[], float],
) -> WarmProcess:
    """Spawn a warm process for ``launch`` with its control, report (and stdin) pipes.

    Args:
        launch: the app's command line, environment and stdin arrangement.
        gate: add warm_gate.mjs (an ES module entry on a node that takes it).
        output_fds: the app's stdout and stderr (None: reloadd's own).
        selector: the loop's selector; the report pipe is registered with it as "warm".
        clock: the monotonic clock, read once it is spawned (its start, for the -V line).

    Returns:
        The process, spawned, its orders not yet written.
    """
    control_read, control_write = os.pipe()
    report_read, report_write = os.pipe()
    control_read, report_write = _high(control_read), _high(report_write)
    stdin_read, stdin_write = os.pipe() if launch.stdin_pipe else (None, None)
    fds = [(control_read, CONTROL_FD), (report_write, REPORT_FD)]
    argv = [launch.argv[0], *launch.flags, launch.script, *launch.args]
    try:
        pid = spawn(
            argv,
            preload_env(dict(launch.env), gate=gate),
            stdin_fd=stdin_read,
            extra_fds=fds,
            stdout_fd=output_fds[0],
            stderr_fd=output_fds[1],
        )
    except ReloaddError:
        for fd in (control_write, report_read, stdin_write):
            _close(fd)
        raise
    finally:
        for fd in (control_read, report_write, stdin_read):
            _close(fd)
    os.set_blocking(report_read, False)
    channel = Channel(pid, report_read, selector)
    selector.register(report_read, selectors.EVENT_READ, "warm")
    return WarmProcess(launch, channel, control_write, stdin_write, gate=gate, started=clock())


def _high(fd: int) -> int:
    """Move a descriptor above FD_FLOOR (close-on-exec), so dup2 onto 3 or 4 never hits itself."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FD_FLOOR)
    os.close(fd)
    return moved


def _close(fd: Optional[int]) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
