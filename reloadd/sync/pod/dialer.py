"""The pod's side of forwarded ports' channels (sync/shared/channels.py): the agent connects each
channel the laptop opens to 127.0.0.1:PORT, retrying while the app restarts."""

from __future__ import annotations

import errno
import os
import socket
import time

from ..shared.channels import LOOPBACK, Channel, Channels
from ..shared.schema import ProtocolError

CONNECT_RETRY = 5.0  # seconds the agent keeps trying a refused port: the app may be restarting
CONNECT_INTERVAL = 0.1  # seconds between those tries


class Dialer(Channels):
    """The agent's side: it connects each channel the laptop opens, retrying while the app restarts."""

    def open_asked(self, ident: int, port: int) -> None:
        if ident in self.table:
            raise ProtocolError(f"open: channel {ident} is open already")
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:  # out of descriptors: this connection fails, the sync goes on
            self.send({"t": "open-failed", "ch": ident, "message": f"127.0.0.1:{port}: {exc.strerror}"})
            return
        channel = Channel(ident, sock, port, connected=False)
        channel.give_up_at = time.monotonic() + CONNECT_RETRY
        self.table[ident] = channel
        self._connect(channel)

    def _connect(self, channel: Channel) -> None:
        channel.retry_at = None
        if channel.sock.fileno() < 0:  # a retry: a refused socket cannot connect again everywhere
            try:
                channel.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as exc:
                self._failed(channel, exc.errno or 0)
                return
            channel.sock.setblocking(False)
        code = channel.sock.connect_ex((LOOPBACK, channel.port))
        if code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR):
            channel.dialing = True  # connect_done when the socket is writable
            return
        self._connected(channel, code)

    def connect_done(self, channel: Channel) -> None:
        channel.dialing = False
        self._connected(channel, channel.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def _connected(self, channel: Channel, code: int) -> None:
        if code == 0:
            channel.connected = True
            self.send({"t": "opened", "ch": channel.ident})
            return
        now = time.monotonic()
        if code == errno.ECONNREFUSED and now + CONNECT_INTERVAL < channel.give_up_at:
            channel.sock.close()  # _connect makes a new one
            channel.retry_at = now + CONNECT_INTERVAL
            return
        self._failed(channel, code)

    def _failed(self, channel: Channel, code: int) -> None:
        why = "nothing listens there" if code == errno.ECONNREFUSED else os.strerror(code)
        self.send({"t": "open-failed", "ch": channel.ident, "message": f"127.0.0.1:{channel.port}: {why}"})
        channel.read_done = True
        self._drop(channel)

    def tick(self, now: float) -> None:
        for channel in self:
            if channel.retry_at is not None and now >= channel.retry_at:
                self._connect(channel)
