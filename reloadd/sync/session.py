"""One connection from the laptop to one agent: the transport process and the frames on its stdio."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from typing import Any, Optional

from ..errors import EXIT_NOT_FOUND, ReloaddError
from .protocol import Data, Frame, FrameReader, ProtocolError, encode_data, encode_message

READ_CHUNK = 1024 * 1024
FLUSH_AT = 256 * 1024  # frames are gathered up to this many bytes per write: a checkout of small files
# is thousands of tiny frames, and one write each would cost a context switch each
CLOSE_WAIT = 2.0  # seconds the agent gets to exit after its stdin closes, before SIGTERM
TERM_WAIT = 2.0  # ...and after SIGTERM, before SIGKILL


class Disconnected(Exception):
    """The stream ended or broke; the message says how (one line for the user)."""


class Session:
    """A transport process running ``reloadd agent`` for one target.

    Args:
        name: what the output calls it (``pod/api-7d9f``).
        argv: the transport command with the agent's argv appended.
    """

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.argv = argv
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.reader = FrameReader()
        self.queued: list[Frame] = []
        self.root = ""
        self.outgoing = bytearray()

    def start(self) -> None:
        self.reader = FrameReader()
        self.queued = []
        self.outgoing = bytearray()
        try:
            # Its own session: Ctrl-C reaches reloadd, which then ends the agent by closing its stdin.
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, start_new_session=True
            )
        except FileNotFoundError:
            raise ReloaddError(
                f"{self.argv[0]}: command not found (the transport to {self.name})", EXIT_NOT_FOUND
            ) from None

    @property
    def fd(self) -> int:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.fileno()

    # -- sending -------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        self._write(encode_message(message))

    def send_data(self, chunk: bytes) -> None:
        self._write(encode_data(chunk))

    def _write(self, data: bytes) -> None:
        self.outgoing += data
        if len(self.outgoing) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Write what is gathered; every wait for an answer flushes first."""
        assert self.proc is not None and self.proc.stdin is not None
        view, self.outgoing = memoryview(bytes(self.outgoing)), bytearray()
        try:
            while view:
                view = view[os.write(self.proc.stdin.fileno(), view) :]
        except (BrokenPipeError, ConnectionResetError):
            raise Disconnected(self._why("the agent stopped reading")) from None

    # -- receiving -----------------------------------------------------------------------------
    def receive(self, timeout: float) -> dict[str, Any]:
        """The next message; raises Disconnected when the stream ends, breaks or stays silent."""
        self.flush()
        deadline = time.monotonic() + timeout
        while not self.queued:
            if not self.read_ready(deadline - time.monotonic()):
                raise Disconnected(f"no answer from the agent within {timeout:g}s")
        frame = self.queued.pop(0)
        if isinstance(frame, Data):
            raise Disconnected("the agent sent file data unasked")
        if frame["t"] == "error":
            raise Disconnected(f"the agent stopped: {frame.get('message')}")
        return frame

    def read_ready(self, timeout: float) -> bool:
        """Read what is waiting (up to ``timeout``); True if something arrived. EOF raises Disconnected."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            if not selector.select(max(0.0, timeout)):
                return False
        chunk = os.read(self.fd, READ_CHUNK)
        if not chunk:
            try:
                self.reader.finish()
            except ProtocolError as exc:
                raise Disconnected(exc.message) from None
            raise Disconnected(self._why("the connection closed"))
        try:
            self.queued += self.reader.feed(chunk)
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
    def close(self) -> None:
        """Close the agent's stdin (it cleans up and exits), then make sure the transport is gone."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        for step, wait in ((None, CLOSE_WAIT), (proc.terminate, TERM_WAIT), (proc.kill, None)):
            if step is not None:
                step()
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue
