"""Keeping a sync link honest: bounded writes, a heartbeat when idle, and the window after which silence is death.

A link can die without closing: a laptop lid shut, a Wi-Fi change or a lost VPN leaves the
stream open with nothing flowing, and a stopped (or CPU-starved) peer stops reading while its
pipe fills. Each side therefore sends a small ``ping`` frame when it has written nothing for one
interval, and counts a link from which it has read nothing (not a byte) for the whole window as
dead. Writes go through ``Outlet``, which fails when the peer takes no byte for a whole window,
so a peer that stopped reading cannot hang the writer either.

The pings come from a thread of their own on both sides, so a side that is busy (hashing a big
tree, committing a large batch) still counts as alive; a stopped or frozen process sends nothing.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Optional

from ...errors import ConfigError
from ...host.background import Background
from .protocol import encode_message

if TYPE_CHECKING:  # types only: the agent, which every start waits for, need not build them
    from .messages import Ping

HEARTBEAT_WINDOW = 8.0  # seconds of silence after which a link is dead (3 missed pings and some slack)
BEATS_PER_WINDOW = 4  # a ping every window / 4 seconds (2 s by default) when nothing else was written
MIN_WINDOW = 1.0  # below this a busy machine's scheduling delays would look like dead links
MAX_WINDOW = 3600.0
HEARTBEAT_ENV = "RELOADD_SYNC_HEARTBEAT"  # the window in seconds, as --heartbeat SECONDS
PING: Final = "ping"  # the frame type; a ping may carry "window": the laptop tells the agent the window it uses


class WriteStalled(OSError):
    """The peer took no byte for a whole window."""


def parse_window(value: str, source: str) -> float:
    """A heartbeat window from the command line or the environment (``source`` names which)."""
    try:
        window = float(value)
    except ValueError:
        raise ConfigError(f"{source}: expected seconds, got {value!r}") from None
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise ConfigError(f"{source}: {value} is out of range ({MIN_WINDOW:g} to {MAX_WINDOW:g} seconds)")
    return window


def window_from(flag: Optional[str], env: Mapping[str, str]) -> float:
    if flag is not None:
        return parse_window(flag, "--heartbeat")
    if env.get(HEARTBEAT_ENV):
        return parse_window(env[HEARTBEAT_ENV], HEARTBEAT_ENV)
    return HEARTBEAT_WINDOW


def ping(window: Optional[float] = None) -> bytes:
    message: Ping = {"t": PING} if window is None else {"t": PING, "window": window}
    return encode_message(message)


class Outlet:
    """The write end of a link: whole writes or WriteStalled/BrokenPipeError, shared by two threads.

    ``write`` waits until the peer took everything (the sync's frames: the peer is reading when the
    sync writes). ``offer`` never waits: forwarded ports' frames (channels.py) queue here and go as
    the pipe takes them (``drain``), so a side busy writing to this one never deadlocks with it.
    Queued bytes always go out before anything written later, whole frames in order.
    """

    def __init__(self, fd: int, window: float) -> None:
        self.fd = fd
        self.window = window
        self.lock = threading.Lock()
        self.last_write = time.monotonic()
        self.queue: deque[bytes] = deque()  # offered frames (appends are atomic: no lock needed)
        self.pending = bytearray()  # what is left of offered frames the pipe took only in part
        os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.fd < 0:
                raise BrokenPipeError("the link is closed")
            self._gather()
            self.pending += data
            deadline = time.monotonic() + self.window
            while self.pending:
                if self._write_some():
                    deadline = time.monotonic() + self.window  # progress: a slow link is not a dead one
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WriteStalled(f"the other side took nothing for {self.window:g} s")
                select.select([], [self.fd], [], left)
            self.last_write = time.monotonic()

    def offer(self, data: bytes) -> None:
        """Queue ``data`` and write what the pipe takes now, never waiting."""
        self.queue.append(data)
        self.drain()

    def drain(self) -> None:
        """Write queued bytes while the pipe takes them; never waits (not even for the heartbeat's write)."""
        if not self.lock.acquire(blocking=False):
            return  # a write in progress takes the queue along
        try:
            if self.fd < 0:
                return
            self._gather()
            while self.pending and self._write_some():
                pass
        except OSError:
            pass  # a broken link: the side's own reads and writes find out and say so
        finally:
            self.lock.release()

    @property
    def backlog(self) -> bool:
        """Offered bytes not yet written: the owner's loop waits for the fd to take them."""
        return bool(self.pending or self.queue)

    def _gather(self) -> None:
        while self.queue:
            self.pending += self.queue.popleft()

    def _write_some(self) -> bool:
        """One write of ``pending``; False when the pipe is full."""
        try:
            written = os.write(self.fd, self.pending)
        except BlockingIOError:
            return False
        del self.pending[:written]
        self.last_write = time.monotonic()
        return True

    def close(self) -> None:
        """Close the fd once no write is in progress (the heartbeat thread may be in one)."""
        with self.lock:
            fd, self.fd = self.fd, -1
            if fd >= 0:
                os.close(fd)


class Heartbeat(Background):
    """A thread that pings through ``outlet`` whenever nothing was written for an interval."""

    def __init__(self, outlet: Outlet, window: float, first: Optional[bytes] = None) -> None:
        self.outlet = outlet
        self.interval = window / BEATS_PER_WINDOW
        self.first = first
        super().__init__("heartbeat")

    def _run(self) -> None:
        try:
            if self.first is not None:
                self.outlet.write(self.first)
            while not self.stopped.wait(self.interval):
                if time.monotonic() - self.outlet.last_write >= self.interval * 0.9:
                    self.outlet.write(ping())
        except OSError:
            return  # a dead link: the side's own reads and writes find out and say so
