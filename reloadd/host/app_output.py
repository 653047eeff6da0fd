"""The apps' output, passed through reloadd, so the laptop can be told why a start crashed and see the logs.

In a container nobody reads the app's output but the log collector, so the laptop cannot see
why the new code crashed, nor follow the app's log. When reloadd takes synced batches
(control.py), each app gets a pipe as its stdout and one as its stderr, instead of reloadd's own,
wherever reloadd's own is not a terminal. A thread per stream copies every byte on to reloadd's
own stdout or stderr at once (the container's logs read as before), keeps the last lines of
stderr, so the first lines an app wrote before it crashed can go back with the batch's outcome
(feedback.py), and hands each line to the log listeners (``reloadd sync --logs``), never
waiting for them. A terminal is never replaced by a pipe: the app would lose its colours and
its isatty().

The copy runs in threads so that a slow reader of reloadd's output slows the app (the pipe
fills, as it would without reloadd), never the supervisor's loop; and an app that makes its
output non-blocking now changes its own pipe, not reloadd's.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import threading
import time
from collections import deque
from typing import Callable, Optional

READ_CHUNK = 65536
KEPT_LINES = 200  # the last lines kept; a crash report uses the first CRASH_LINES of its own
CRASH_LINES = 12
LINE_MAX = 400  # characters kept of one line: a minified bundle's one-line stack stays bounded
CATCH_UP_WAIT = 0.5  # seconds since() waits for the copy to take in what an app wrote before it ended
CATCH_UP_STEP = 0.005
STDOUT, STDERR = "stdout", "stderr"

Listener = Callable[[str, str], None]  # (stream, line): called in a copying thread; must not block


class Tee:
    """One stream: the pipe the apps write to, and the thread that copies it on to ``out_fd``."""

    def __init__(self, stream: str, out_fd: int, listener: Listener) -> None:
        self.stream = stream
        self.read_fd, self.write_fd = os.pipe()
        os.set_inheritable(self.write_fd, False)  # handed over by spawn's dup2 only
        self.out_fd = out_fd
        self.listener = listener
        self.lines: deque[str] = deque(maxlen=KEPT_LINES)
        self.count = 0  # lines ever completed: a mark to read an app's own lines from
        self.partial = b""
        self.lock = threading.Lock()  # held while a chunk is copied and its lines kept
        self.thread = threading.Thread(target=self._copy, name=f"{stream}-tee", daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        while True:
            try:
                data = os.read(self.read_fd, READ_CHUNK)
            except OSError:
                return  # closed
            if not data:
                return
            with self.lock:
                _write_all(self.out_fd, data)
                lines = self._keep(data)
            for line in lines:
                self.listener(self.stream, line)

    def _keep(self, data: bytes) -> list[str]:
        *complete, partial = (self.partial + data).split(b"\n")
        lines = [line.decode(errors="replace")[:LINE_MAX] for line in complete]
        self.lines.extend(lines)
        self.count += len(lines)
        self.partial = partial[: LINE_MAX * 4]
        return lines

    def since(self, mark: int) -> list[str]:
        """The first CRASH_LINES lines completed after ``mark`` (and an unfinished last one), once what
        is in the pipe now has been copied (briefly: a stuck reader of our output must not stall us)."""
        deadline = time.monotonic() + CATCH_UP_WAIT
        while _unread(self.read_fd) and time.monotonic() < deadline:
            time.sleep(CATCH_UP_STEP)
        if not self.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return []
        try:
            new = min(self.count - mark, len(self.lines))
            lines = list(self.lines)[len(self.lines) - new :] if new > 0 else []
            if self.partial:
                lines.append(self.partial.decode(errors="replace")[:LINE_MAX])
            return lines[:CRASH_LINES]
        finally:
            self.lock.release()

    def close(self) -> None:
        """After the last app is gone: copy what is left, then stop."""
        os.close(self.write_fd)  # the thread reads to the end of what the apps wrote, then stops
        self.thread.join(CATCH_UP_WAIT)
        if not self.thread.is_alive():
            os.close(self.read_fd)


class AppOutput:
    """The apps' stdout and stderr, each passed through a Tee where reloadd's own is not a terminal."""

    def __init__(self, listener: Listener, out_fd: int = 1, err_fd: int = 2) -> None:
        self.out = None if os.isatty(out_fd) else Tee(STDOUT, out_fd, listener)
        self.err = None if os.isatty(err_fd) else Tee(STDERR, err_fd, listener)

    @property
    def fds(self) -> tuple[Optional[int], Optional[int]]:
        """What an app gets as its stdout and stderr (None: reloadd's own)."""
        return (self.out.write_fd if self.out else None, self.err.write_fd if self.err else None)

    @property
    def mark(self) -> int:
        return self.err.count if self.err else 0

    def crash_lines(self, mark: int) -> list[str]:
        """What the app wrote on stderr since ``mark`` (empty when its stderr is reloadd's terminal)."""
        return self.err.since(mark) if self.err else []

    def close(self) -> None:
        for tee in (self.out, self.err):
            if tee is not None:
                tee.close()


def _unread(fd: int) -> int:
    """Bytes waiting in the pipe (FIONREAD)."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
    except OSError:
        return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])  # a non-blocking output shared with someone: wait for room
        except OSError:
            return  # reloadd's output is gone: the app's has nowhere to go either
