"""Forwarded ports' TCP connections over the sync stream: the channel table both sides keep.

A channel is one TCP connection: on the laptop the client that connected to a forwarded port,
in the pod the agent's own connection to 127.0.0.1:PORT. Its bytes travel in C frames
(protocol.py) between the sync's frames. Nothing here ever waits: sockets are non-blocking,
frames for the stream are offered to the Outlet (heartbeat.py), which writes them as the pipe
takes them, and each side reads a socket only while it has credit for that channel.

Credit: a side may send at most ``CHANNEL_WINDOW`` bytes of a channel that the other side has
not yet written out to its socket. The receiver grants bytes back (``credit``) as its socket
takes them. So a client that stops reading fills its own channel's window (its bytes wait in
its ``outbox``, which never holds more than the window) and the sender stops reading the other
end; the stream, and the file batches on it, never wait for it.

Closing: ``close`` means "no more bytes from this side" (the socket read EOF or failed). The
receiver writes out what it holds, then shuts its socket's writing half; a channel ends when
both sides have said close and everything is written. A socket that fails (a reset, a client
gone) ends the channel at once on both sides (``close`` with ``abort``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Callable, Optional, cast

from .protocol import ChannelData, Frame, encode_channel, encode_message
from .schema import CHANNEL_WINDOW, ProtocolError

if TYPE_CHECKING:
    from .messages import ChannelMessage

CHANNEL_CHUNK = 64 * 1024  # bytes read from a socket per turn, one C frame: a batch never waits behind more
CREDIT_STEP = CHANNEL_WINDOW // 4  # bytes written out before they are granted back (fewer credit messages)
LOOPBACK = "127.0.0.1"

Push = Callable[[bytes], None]  # hands one encoded frame to the stream (Outlet.offer)
READ, WRITE = 1, 2  # selectors.EVENT_READ, selectors.EVENT_WRITE


class Channel:
    """One forwarded connection and its buffering."""

    def __init__(self, ident: int, sock: socket.socket, port: int, connected: bool) -> None:
        self.ident = ident
        self.sock = sock
        sock.setblocking(False)
        self.port = port  # the pod's port
        self.connected = connected  # both ends are up: bytes may flow
        self.credit = CHANNEL_WINDOW  # bytes this side may still send
        self.outbox = bytearray()  # bytes from the peer not yet written to the socket (at most the window)
        self.written = 0  # bytes written out since credit was last granted back
        self.read_done = False  # the socket read EOF (or failed): this side said close
        self.peer_done = False  # the peer said close: shut the socket's writing half once the outbox is out
        self.dialing = False  # the agent: a connect is in progress (it completes as writable)
        self.retry_at: Optional[float] = None  # the agent: when to try a refused connect again
        self.give_up_at = 0.0  # ...and when to stop trying

    def events(self) -> int:
        """What to wait for on the socket now."""
        if not self.connected:
            return WRITE if self.dialing else 0
        wanted = WRITE if self.outbox else 0
        if not self.read_done and self.credit > 0:
            wanted |= READ
        return wanted


class Channels:
    """The channels of one stream (one session): what both sides share.

    The laptop (sync/laptop/openers.py) opens channels, the agent (sync/pod/dialer.py) connects
    them; both move bytes and credit the same way.
    """

    def __init__(self, push: Push) -> None:
        self.push = push
        self.table: dict[int, Channel] = {}

    def __len__(self) -> int:
        return len(self.table)

    def __iter__(self) -> Iterator[Channel]:
        return iter(list(self.table.values()))

    def send(self, message: ChannelMessage) -> None:
        self.push(encode_message(message))

    # -- frames from the stream ------------------------------------------------------------------
    def take(self, frame: Frame) -> None:
        """A channel frame (protocol.is_channel_frame) from the peer."""
        if isinstance(frame, ChannelData):
            self._data(frame)
            return
        assert isinstance(frame, dict)
        message = cast("ChannelMessage", frame)  # is_channel_frame sorted it here, schema.py checked it
        if message["t"] == "open":
            self.open_asked(message["ch"], message["port"])
            return
        channel = self.table.get(message["ch"])
        if channel is None:
            return  # ended on this side already: the peer's frame crossed ours
        if message["t"] == "opened":
            self.answered(channel, True, "")
        elif message["t"] == "open-failed":
            self.answered(channel, False, message["message"])
        elif message["t"] == "close" and message.get("abort"):
            self._drop(channel)  # the peer's socket failed: nobody would take what is held or read here
        elif message["t"] == "close":
            channel.peer_done = True
            self._write(channel)
        elif message["t"] == "credit":
            if channel.credit + message["bytes"] > CHANNEL_WINDOW:
                raise ProtocolError(f"credit for channel {channel.ident} beyond the window")
            channel.credit += message["bytes"]

    def open_asked(self, ident: int, port: int) -> None:
        raise ProtocolError("open: only the laptop opens channels")

    def answered(self, channel: Channel, opened: bool, message: str) -> None:
        raise ProtocolError("opened: only the agent answers an open")

    def _data(self, frame: ChannelData) -> None:
        channel = self.table.get(frame.channel)
        if channel is None:
            return  # closed here (a client that went away): bytes in flight are dropped
        if not channel.connected or channel.peer_done:
            raise ProtocolError(f"bytes for channel {channel.ident} before it opened or after it closed")
        if len(channel.outbox) + channel.written + len(frame.chunk) > CHANNEL_WINDOW:
            raise ProtocolError(f"channel {channel.ident}: bytes beyond the credit granted")
        channel.outbox += frame.chunk
        self._write(channel)

    # -- sockets ---------------------------------------------------------------------------------
    def ready(self, channel: Channel, mask: int) -> None:
        """The socket is ready for ``mask`` (READ and/or WRITE)."""
        if channel.ident not in self.table:
            return
        if channel.dialing:
            self.connect_done(channel)
            return
        if not channel.connected:
            return
        if mask & WRITE:
            self._write(channel)
        if mask & READ and channel.ident in self.table:
            self._read(channel)

    def connect_done(self, channel: Channel) -> None:
        raise AssertionError("only the agent connects")

    def _read(self, channel: Channel) -> None:
        if channel.credit <= 0:
            return  # recv(0) would read as an end
        try:
            chunk = channel.sock.recv(min(channel.credit, CHANNEL_CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.end(channel)  # reset: the peer's end goes too
            return
        if not chunk:
            channel.read_done = True
            self.send({"t": "close", "ch": channel.ident})
            self._finish(channel)
            return
        channel.credit -= len(chunk)
        self.push(encode_channel(channel.ident, chunk))

    def _write(self, channel: Channel) -> None:
        if channel.outbox:
            try:
                sent = channel.sock.send(channel.outbox)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.end(channel)  # the client went away: no one reads the rest
                return
            del channel.outbox[:sent]
            channel.written += sent
            if channel.written >= CREDIT_STEP or (not channel.outbox and channel.peer_done):
                self._grant(channel)
        if not channel.outbox and channel.peer_done:
            self._finish(channel)

    def _grant(self, channel: Channel) -> None:
        if channel.written and not channel.peer_done:
            self.send({"t": "credit", "ch": channel.ident, "bytes": channel.written})
        channel.written = 0

    def _finish(self, channel: Channel) -> None:
        """Shut the writing half once the peer is done and all is out; drop the channel when both are."""
        if channel.peer_done and not channel.outbox:
            try:
                channel.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if channel.read_done:
                self._drop(channel)

    def end(self, channel: Channel) -> None:
        """End a channel at once (a socket failed): close it here, and there."""
        self.send({"t": "close", "ch": channel.ident, "abort": True})
        self._drop(channel)

    def _drop(self, channel: Channel) -> None:
        self.table.pop(channel.ident, None)
        channel.sock.close()

    def close_all(self, keep: Optional[Callable[[socket.socket, int], None]] = None) -> None:
        """The stream ended: every connection is closed (the client sees its end), but those never
        answered go to ``keep`` (the laptop's clients that no byte has left yet: another session takes them)."""
        for channel in self:
            if keep is not None and not channel.connected:
                self.table.pop(channel.ident, None)
                keep(channel.sock, channel.port)
            else:
                self._drop(channel)

    # -- time ------------------------------------------------------------------------------------
    def next_due(self) -> Optional[float]:
        """When ``tick`` has something to do (a connect to retry), or None."""
        due = [channel.retry_at for channel in self.table.values() if channel.retry_at is not None]
        return min(due) if due else None

    def tick(self, now: float) -> None:
        pass
