"""One connection from the laptop to one agent: the transport process and the frames on its stdio.

Forwarded ports' connections (channels.py) ride the same stdio: the session keeps their table,
serves their sockets whenever it waits for the agent, and closes them when it ends.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Callable, NamedTuple, Optional, cast

from ...errors import EXIT_NOT_FOUND, ReloaddError
from ...output import out
from ..shared.channels import Channel
from ..shared.heartbeat import PING, Heartbeat, Outlet, ping, window_from
from ..shared.protocol import Frame, FrameReader, encode_data, encode_message, is_channel_frame
from ..shared.schema import NOTICE_MESSAGES, ProtocolError
from .openers import Openers
from .transport import Where, exec_argv, stderr_tail

if TYPE_CHECKING:  # types only: messages.py's are many, and the agent waits for this side's imports
    from ..shared.messages import FromLaptop, Notice, Reply
    from .options import SyncOptions

READ_CHUNK = 1024 * 1024
FLUSH_AT = 256 * 1024  # frames are gathered up to this many bytes per write: a checkout of small files
# is thousands of tiny frames, and one write each would cost a context switch each
CLOSE_WAIT = 2.0  # seconds the agent gets to exit after its stdin closes, before SIGTERM
TERM_WAIT = 2.0  # ...and after SIGTERM, before SIGKILL


class Disconnected(Exception):
    """The stream ended or broke; the message says how (one line for the user)."""


class Ready(NamedTuple):
    """What a selector waits for on a session's behalf: a channel's socket, or (None) queued channel
    frames for the agent's stdin."""

    session: Session
    channel: Optional[Channel]


class Session:
    """A transport process running ``reloadd agent`` for one target.

    Args:
        name: what the output calls it (``pod/api-7d9f``).
        argv: the transport command with the agent's argv appended.
        window: the heartbeat window (heartbeat.py): this much silence, or a peer that takes
            nothing for this long, is a dead link.
    """

    def __init__(self, name: str, argv: list[str], window: float) -> None:
        self.name = name
        self.argv = argv
        self.window = window
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.reader = FrameReader()
        self.queued: list[Frame] = []
        self.notices: list[Notice] = []  # messages the agent sends on its own (NOTICE_MESSAGES), in order
        self.root = ""
        self.outgoing = bytearray()
        self.outlet: Optional[Outlet] = None
        self.heartbeat: Optional[Heartbeat] = None
        self.stderr: Optional[IO[bytes]] = None
        self.last_heard = time.monotonic()
        # Silence counts only once the agent has said something: it cannot ping before it runs, and
        # starting it (kubectl's credentials, the pod's Python) may take longer than a short window.
        self.heard = False
        self.channels = Openers(self._offer, self._refused)
        # Where forwarded clients the agent never answered go when the session ends (forward.py).
        self.adopt: Optional[Callable[[socket.socket, int], None]] = None

    def start(self) -> None:
        self.reader = FrameReader()
        self.queued = []
        self.notices = []
        self.outgoing = bytearray()
        self.channels = Openers(self._offer, self._refused)
        # The transport's stderr (kubectl's discovery noise, its retries, its own error line) goes
        # to a file: the laptop says one line of its own, and -V shows the tail.
        self.stderr = tempfile.TemporaryFile()
        try:
            # Its own session: Ctrl-C reaches reloadd, which then ends the agent by closing its stdin,
            # and a dead link's whole transport tree is killed by process group.
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                bufsize=0,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ReloaddError(
                f"{self.argv[0]}: command not found (the transport to {self.name})", EXIT_NOT_FOUND
            ) from None
        assert self.proc.stdin is not None
        # The outlet owns the write end from here on (it closes it once no heartbeat write is in
        # progress), so Popen's file object lets go of it.
        fd = os.dup(self.proc.stdin.fileno())
        self.proc.stdin.close()
        self.proc.stdin = None
        self.outlet = Outlet(fd, self.window)
        self.last_heard = time.monotonic()
        self.heard = False  # a new agent: silent until it runs

    def beat(self) -> None:
        """Start the heartbeat (once the agent is asked to start: it walks while this side does); the first
        ping tells the agent the window."""
        assert self.outlet is not None
        self.heartbeat = Heartbeat(self.outlet, self.window, first=ping(self.window))
        self.heartbeat.start()

    @property
    def fd(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def silent_for(self, now: float) -> float:
        return now - self.last_heard

    def stderr_tail(self) -> list[str]:
        """The last lines it wrote on its stderr."""
        return stderr_tail(self.stderr)

    # -- sending -------------------------------------------------------------------------------
    def send(self, message: FromLaptop) -> None:
        """One message; the heartbeat's pings and the channels' frames go their own ways (outlet, _offer)."""
        self._write(encode_message(message))

    def send_data(self, chunk: bytes) -> None:
        self._write(encode_data(chunk))

    def _write(self, data: bytes) -> None:
        self.outgoing += data
        if len(self.outgoing) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Write what is gathered; every wait for an answer flushes first."""
        assert self.outlet is not None
        data, self.outgoing = bytes(self.outgoing), bytearray()
        if not data:
            return
        try:
            self.outlet.write(data)
        except (BrokenPipeError, ConnectionResetError):
            raise Disconnected(self._why("the agent stopped reading")) from None
        except OSError as exc:  # WriteStalled: a stopped agent, a frozen link
            raise Disconnected(str(exc)) from None
        if len(self.channels):
            # Forwarded ports get a turn between a batch's writes (one chunk per channel, never a wait):
            # they move while a big batch goes, and the batch waits at most that long for them.
            self.read_ready(0)

    # -- forwarded ports --------------------------------------------------------------------------
    def _offer(self, frame: bytes) -> None:
        if self.outlet is not None:
            self.outlet.offer(frame)

    def _refused(self, port: int, why: str) -> None:
        out.warn(f"{self.name}: forwarded port {port}: {why}")

    def watch(self, selector: selectors.BaseSelector) -> None:
        """Register in ``selector`` what the channels wait for (and queued channel frames, the agent's stdin)."""
        if self.outlet is not None and self.outlet.backlog and self.outlet.fd >= 0:
            selector.register(self.outlet.fd, selectors.EVENT_WRITE, Ready(self, None))
        for channel in self.channels:
            events = channel.events()
            if events:
                selector.register(channel.sock, events, Ready(self, channel))

    def serve(self, ready: Ready, mask: int) -> None:
        if ready.channel is None:
            assert self.outlet is not None
            self.outlet.drain()
        else:
            self.channels.ready(ready.channel, mask)

    # -- receiving -----------------------------------------------------------------------------
    def receive(self, timeout: float) -> Reply:
        """The next message; raises Disconnected when the stream ends, breaks or stays silent.

        ``timeout`` bounds the wait for the answer itself; a link silent for the heartbeat window
        (no ping either) is dead sooner, once the agent has said anything.
        """
        self.flush()
        deadline = time.monotonic() + timeout
        watched = self.heartbeat is not None and self.heard
        while not self.queued:
            now = time.monotonic()
            if now >= deadline:
                raise Disconnected(f"no answer from the agent within {timeout:g} s")
            if watched and self.silent_for(now) >= self.window:
                raise Disconnected(f"no answer for {self.window:g} s")
            wait = min(deadline, self.last_heard + self.window if watched else deadline) - now
            self.read_ready(wait)
        frame = self.queued.pop(0)
        if not isinstance(frame, dict):
            raise Disconnected("the agent sent file data unasked")
        if frame["t"] == "error":
            raise Disconnected(f"the agent stopped: {frame.get('message')}")
        return cast("Reply", frame)  # checked by schema.py; notices, pings and channels' frames were kept apart

    def read_ready(self, timeout: float) -> bool:
        """Read what is waiting (up to ``timeout``); True if something arrived. EOF raises Disconnected.
        Channels' sockets are served meanwhile: a reply awaited never waits behind a forwarded port."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            self.watch(selector)
            ready = selector.select(max(0.0, timeout))
        readable = False
        for key, mask in ready:
            if key.data is None:
                readable = True
            else:
                self.serve(key.data, mask)
        if not readable:
            return False
        chunk = os.read(self.fd, READ_CHUNK)
        if not chunk:
            try:
                self.reader.finish()
            except ProtocolError as exc:
                raise Disconnected(exc.message) from None
            raise Disconnected(self._why("the connection closed"))
        self.last_heard = time.monotonic()
        self.heard = True
        try:
            for frame in self.reader.feed(chunk):
                if is_channel_frame(frame):
                    self.channels.take(frame)
                elif isinstance(frame, dict) and frame["t"] in NOTICE_MESSAGES:
                    self.notices.append(cast("Notice", frame))
                elif not isinstance(frame, dict) or frame["t"] != PING:
                    self.queued.append(frame)
        except ProtocolError as exc:
            raise Disconnected(f"bad data from the agent: {exc.message}") from None
        return True

    def _why(self, what: str) -> str:
        status = self.exit_status(wait=1.0)
        return f"{what} (exit status {status})" if status is not None else what

    def exit_status(self, wait: float) -> Optional[int]:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            return None

    # -- ending --------------------------------------------------------------------------------
    def close(self, dead: bool = False) -> None:
        """End the session. Normally: close the agent's stdin (it cleans up and exits), then make sure
        the transport is gone. ``dead``: the link is dead, so nothing would arrive: kill the
        transport's whole process tree at once (kubectl would otherwise wait for its own timeouts)."""
        proc, self.proc = self.proc, None
        self.channels.close_all(self.adopt)  # their clients see the end; the listeners stay (forward.py)
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None
        if proc is None:
            return
        if dead:
            _kill_group(proc.pid)
        if self.outlet is not None:
            self.outlet.close()  # waits for a heartbeat write in progress, which a killed reader ends
        if proc.stdout is not None:
            proc.stdout.close()
        for step, wait in ((None, CLOSE_WAIT), (proc.terminate, TERM_WAIT), (proc.kill, None)):
            if step is not None:
                step()
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        _kill_group(proc.pid)  # whatever the transport started and left behind


def first_session(where: Where, window: float) -> Session:
    """The session to the one target of a sync without ``--selector``."""
    name = where.target or where.remote_dir or str(where.transport)
    return Session(name, exec_argv(where, where.target), window)


def start_first(options: SyncOptions, env: Mapping[str, str]) -> Optional[Session]:
    """The agent of a sync whose one target the command line names, started before anything else.

    Its interpreter, imports and walk of the pod then overlap this side's own imports, config,
    watcher and walk: a start costs the longer of the two, not the sum. (With ``--selector`` the
    pods are not known yet; with no destination on the command line the config names it.)
    """
    options.heartbeat = window_from(options.heartbeat_flag, env)
    if options.where is None or options.where.selector is not None:
        return None
    first = first_session(options.where, options.heartbeat)
    first.start()
    return first


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone
