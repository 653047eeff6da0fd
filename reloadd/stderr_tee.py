"""The app's stderr, passed through reloadd, so that a crash at start can be told to the laptop.

In a container nobody reads the app's stderr but the log collector, so the laptop cannot see
why the new code crashed. When reloadd takes synced batches (control.py) and its own stderr is
not a terminal, each app gets a pipe as its stderr instead of reloadd's; a thread of reloadd's
copies every byte on to reloadd's own stderr at once (the logs read as before) and keeps the
last lines, so the first lines an app wrote before it crashed can go back with the batch's
outcome (feedback.py). A terminal is never replaced by a pipe: the app would lose its colours
and its isatty().

The copy runs in a thread so that a slow reader of reloadd's stderr slows the app (the pipe
fills, as it would without reloadd), never the supervisor's loop; and an app that makes its
stderr non-blocking now changes its own pipe, not reloadd's stderr.
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

READ_CHUNK = 65536
KEPT_LINES = 200  # the last lines kept; a crash report uses the first CRASH_LINES of its own
CRASH_LINES = 12
LINE_MAX = 400  # characters kept of one line: a minified bundle's one-line stack stays bounded
CATCH_UP_WAIT = 0.5  # seconds since() waits for the copy to take in what an app wrote before it ended
CATCH_UP_STEP = 0.005


class StderrTee:
    def __init__(self, out_fd: int = 2) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_inheritable(self.write_fd, False)  # handed over by spawn's dup2 only
        self.out_fd = out_fd
        self.lines: deque[str] = deque(maxlen=KEPT_LINES)
        self.count = 0  # lines ever completed: a mark to read an app's own lines from
        self.partial = b""
        self.lock = threading.Lock()  # held while a chunk is copied and its lines kept
        self.thread = threading.Thread(target=self._copy, name="stderr-tee", daemon=True)
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
                self._keep(data)

    def _keep(self, data: bytes) -> None:
        *complete, partial = (self.partial + data).split(b"\n")
        for line in complete:
            self.lines.append(line.decode(errors="replace")[:LINE_MAX])
            self.count += 1
        self.partial = partial[: LINE_MAX * 4]

    def since(self, mark: int) -> list[str]:
        """The first CRASH_LINES lines completed after ``mark`` (and an unfinished last one), once what
        is in the pipe now has been copied (briefly: a stuck reader of our stderr must not stall us)."""
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
            select.select([], [fd], [])  # a non-blocking stderr shared with someone: wait for room
        except OSError:
            return  # reloadd's stderr is gone: the app's output has nowhere to go either
