"""The pod side: ``reloadd agent [DIR]`` speaks the sync protocol on stdin/stdout, writes only under DIR.

The process: it says ``hello`` (or ``refused``, see production.py), then hands each frame from
the laptop to the session's Agent (handlers.py) in order. A malformed frame, a hostile path or
an oversized frame ends the session with one error line (exit 65); staged files are removed,
nothing partial becomes visible. stdin closing (the laptop stopped, Ctrl-C) ends the agent the
same way; so does a laptop that is silent for the heartbeat window (heartbeat.py) or stops
reading, so a frozen link never leaves a second agent behind; the app keeps running.

Between the sync's frames the agent serves forwarded ports (``reloadd sync -p``, channels.py):
it connects to 127.0.0.1:PORT in the pod for each channel the laptop opens, retrying while the
app restarts, and never waits on those sockets.
"""

from __future__ import annotations

import os
import selectors
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from ... import __version__
from ...errors import ConfigError, ReloaddError
from ...output import out
from ...setup.production import EXIT_REFUSED, refusal
from ..shared.heartbeat import (
    BEATS_PER_WINDOW,
    HEARTBEAT_WINDOW,
    MAX_WINDOW,
    MIN_WINDOW,
    PING,
    Heartbeat,
    Outlet,
    WriteStalled,
)
from ..shared.protocol import PROTOCOL_VERSION, Frame, FrameReader, encode_message, is_channel_frame
from .dialer import Dialer
from .handlers import Agent
from .root import Root, check_root

if TYPE_CHECKING:  # types only: this process's start is what every sync start waits for
    from ..shared.messages import FromAgent, Ping

READ_CHUNK = 1024 * 1024
EXIT_LINK_DEAD = 75  # EX_TEMPFAIL: the laptop went silent or stopped reading; the agent ends itself
EXIT_WRITE_FAILED = 73  # EX_CANTCREAT: the pod's file system refused to hold a batch at all (read-only)
AGENT_HELP = """\
Usage: reloadd agent [DIR]

The pod side of `reloadd sync`: speaks the sync protocol on stdin/stdout and writes only under
DIR (default: the working directory). Started by `reloadd sync` through kubectl exec (or the
--transport command); not meant to be run by hand. Refuses to run when NODE_ENV=production
(unless RELOADD_WATCH=1 or RELOADD_SYNC=1) or when RELOADD_SYNC=0, with exit status 3.
Exit status 65 when the peer sends a malformed frame."""


class Stdio:
    """The protocol on fds 0 and 1, with the heartbeat (heartbeat.py): pings out when idle, and an
    end when the laptop is silent for the whole window, so a frozen link leaves no agent behind.
    Between the sync's frames it serves forwarded ports' connections (channels.py)."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.window = HEARTBEAT_WINDOW  # until the laptop's first ping says which it uses
        self.outlet = Outlet(1, self.window)
        self.heartbeat = Heartbeat(self.outlet, self.window)
        self.channels = Dialer(self.outlet.offer)
        self.last_heard = time.monotonic()

    def send(self, message: FromAgent) -> None:
        self.outlet.write(encode_message(message))

    def frames(self) -> list[Frame]:
        """The next frames for the sync (blocking); an empty list means the laptop closed the stream.
        Meanwhile the channels' sockets are served and their frames taken."""
        while True:
            if not self._wait():
                if time.monotonic() - self.last_heard >= self.window:
                    raise LaptopSilent(f"agent: heard nothing from the laptop for {self.window:g} s")
                continue
            chunk = os.read(0, READ_CHUNK)
            if not chunk:
                self.reader.finish()
                return []
            self.last_heard = time.monotonic()
            frames = []
            for frame in self.reader.feed(chunk):
                if is_channel_frame(frame):
                    self.channels.take(frame)
                elif not self._ping(frame):
                    frames.append(frame)
            if frames:
                return frames

    def _wait(self) -> bool:
        """Serve sockets until stdin is readable (True), the heartbeat window or a connect retry is due."""
        now = time.monotonic()
        self.channels.tick(now)
        due = [self.last_heard + self.window, self.channels.next_due()]
        timeout = max(0.0, min(d for d in due if d is not None) - now)
        with selectors.DefaultSelector() as selector:
            selector.register(0, selectors.EVENT_READ, None)
            if self.outlet.backlog:
                selector.register(1, selectors.EVENT_WRITE, self.outlet)
            for channel in self.channels:
                if channel.events():
                    selector.register(channel.sock, channel.events(), channel)
            ready = selector.select(timeout)
        stdin = False
        for key, mask in ready:
            if key.data is None:
                stdin = True
            elif isinstance(key.data, Outlet):
                key.data.drain()
            else:
                self.channels.ready(key.data, mask)
        return stdin

    def _ping(self, frame: Frame) -> bool:
        if not isinstance(frame, dict) or frame["t"] != PING:
            return False
        window = cast("Ping", frame).get("window")
        if isinstance(window, (int, float)) and MIN_WINDOW <= window <= MAX_WINDOW:
            self.window = self.outlet.window = float(window)
            self.heartbeat.interval = self.window / BEATS_PER_WINDOW
        return True


class LaptopSilent(Exception):
    """Nothing arrived for a whole window: the link is dead, and nobody is listening for an error frame."""


def agent_main(argv: list[str], env: Mapping[str, str]) -> int:
    """``reloadd agent [DIR]``: returns the exit status."""
    if argv[:1] in (["-h"], ["--help"]):
        print(AGENT_HELP)
        return 0
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        raise ConfigError(f"agent: expected at most one directory, got {' '.join(argv)!r}: reloadd agent [DIR]")
    stdio = Stdio()
    try:
        reason = refusal(env)
        if reason is not None:
            stdio.send({"t": "refused", "message": f"refusing to sync: {reason}"})
            _tell_a_person(f"refusing to sync: {reason}")
            return EXIT_REFUSED
        root = Root(check_root(argv[0] if argv else os.getcwd()))
        stdio.send({"t": "hello", "version": PROTOCOL_VERSION, "reloadd": __version__, "root": root.path})
        stdio.heartbeat.start()
        return _serve(Agent(root, env, stdio.send), stdio)
    except BrokenPipeError:
        return 0  # the laptop side went away while we were answering: as good as stdin closing
    except (LaptopSilent, WriteStalled):
        return EXIT_LINK_DEAD  # a dead link: nobody would read an error frame, so none is sent
    except ReloaddError as exc:
        _report(stdio, exc.message)
        return exc.exit_code
    except OSError as exc:  # the pod's file system said no (EACCES, ENOSPC, EROFS): one line, and stop
        where = f" {exc.filename}" if exc.filename else ""
        _report(stdio, f"agent: cannot write in {os.getcwd() if not argv else argv[0]}:{where} {exc.strerror}")
        return EXIT_WRITE_FAILED


def _serve(agent: Agent, stdio: Stdio) -> int:
    try:
        while True:
            frames = stdio.frames()
            if not frames:
                return 0
            for frame in frames:
                agent.handle(frame)
    finally:
        agent.close()
        stdio.channels.close_all()


def _report(stdio: Stdio, message: str) -> None:
    try:
        stdio.send({"t": "error", "message": message})
    except OSError:
        pass
    _tell_a_person(message)


def _tell_a_person(message: str) -> None:
    """stderr too when someone runs the agent by hand; the laptop side prints the frame's line itself."""
    if sys.stdout.isatty():
        out.error(message)
