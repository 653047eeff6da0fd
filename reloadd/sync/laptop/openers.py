"""The laptop's side of forwarded ports' channels (sync/shared/channels.py): each client accepted
on a forwarded port becomes a channel the agent is asked to connect in the pod."""

from __future__ import annotations

import socket
from typing import Callable

from ..shared.channels import Channel, Channels, Push
from ..shared.schema import ProtocolError


class Openers(Channels):
    """The laptop's side: each accepted client becomes a channel the agent is asked to connect."""

    def __init__(self, push: Push, refused: Callable[[int, str], None]) -> None:
        super().__init__(push)
        self.refused = refused  # said when the pod's port takes no connection: (port, why)
        self.said: set[int] = set()  # ports whose refusal was said: not again until one connects
        self.counter = 0

    def open(self, sock: socket.socket, port: int) -> None:
        """Carry ``sock``, a client just accepted, to 127.0.0.1:``port`` in the pod."""
        self.counter += 1
        channel = Channel(self.counter, sock, port, connected=False)
        self.table[channel.ident] = channel
        self.send({"t": "open", "ch": channel.ident, "port": port})

    def answered(self, channel: Channel, opened: bool, message: str) -> None:
        if channel.connected:
            raise ProtocolError(f"channel {channel.ident} opened twice")
        if opened:
            channel.connected = True
            self.said.discard(channel.port)
            return
        if channel.port not in self.said:  # a client retrying every second is said once
            self.said.add(channel.port)
            self.refused(channel.port, message)
        channel.read_done = True  # nothing to tell the agent: the channel never opened there
        self._drop(channel)
