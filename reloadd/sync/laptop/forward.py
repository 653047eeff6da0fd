"""``reloadd sync -p LOCAL:REMOTE``: the laptop's listeners for forwarded ports.

Each listener is bound once, at the start, on 127.0.0.1:LOCAL, and stays for the whole sync:
across app restarts, agent reconnects and pod replacement. Every client it accepts becomes a
channel (channels.py) of the session that is connected then (the first pod connected, with -l);
while none is (a reconnect), the client waits up to ``SESSION_WAIT`` seconds for one instead of
being refused. Unlike ``kubectl port-forward``, nothing here ends when the pod or the app does.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Optional

from ...errors import ConfigError
from ...setup.forwards import Forward
from ..shared.channels import LOOPBACK

if TYPE_CHECKING:
    from .session import Session

SESSION_WAIT = 10.0  # seconds an accepted client waits for a session (a reconnect) before it is closed
BACKLOG = 128  # clients the kernel holds while the laptop is busy (sending a batch)


class Listener(NamedTuple):
    sock: socket.socket
    forward: Forward


@dataclass
class Waiting:
    """A client accepted while no session was connected."""

    sock: socket.socket
    remote: int
    until: float


class Forwarder:
    """The listeners, and the clients waiting for a session."""

    def __init__(self, forwards: list[Forward]) -> None:
        self.forwards = forwards
        self.listeners: list[Listener] = []
        self.waiting: list[Waiting] = []

    def listen(self) -> None:
        """Bind every listener now: a port in use is a usage error (exit 2), said in one line."""
        for forward in self.forwards:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restarted sync rebinds at once
            try:
                sock.bind((LOOPBACK, forward.local))
            except OSError as exc:
                sock.close()
                self.close()
                where = f"{LOOPBACK}:{forward.local}"
                raise ConfigError(f"-p {forward}: cannot listen on {where}: {exc.strerror}") from None
            sock.listen(BACKLOG)
            sock.setblocking(False)
            self.listeners.append(Listener(sock, forward))

    def accept(self, listener: Listener, session: Optional[Session]) -> None:
        """A client connected: a channel of ``session``, or waiting for one."""
        try:
            client, _ = listener.sock.accept()
        except OSError:  # gone before it was taken, or out of descriptors: the sync goes on
            return
        client.setblocking(False)
        if session is not None:
            session.channels.open(client, listener.forward.remote)
        else:
            self.adopt(client, listener.forward.remote)

    def adopt(self, sock: socket.socket, remote: int) -> None:
        """A client whose session ended before the agent answered: it waits for the next session."""
        self.waiting.append(Waiting(sock, remote, time.monotonic() + SESSION_WAIT))

    def hand_over(self, session: Optional[Session], now: float) -> None:
        """Waiting clients go to ``session`` once there is one; those that waited too long are closed."""
        waiting, self.waiting = self.waiting, []
        for client in waiting:
            if session is not None:
                session.channels.open(client.sock, client.remote)
            elif now >= client.until:
                client.sock.close()
            else:
                self.waiting.append(client)

    def next_due(self) -> Optional[float]:
        return min((client.until for client in self.waiting), default=None)

    def close(self) -> None:
        for listener in self.listeners:
            listener.sock.close()
        for client in self.waiting:
            client.sock.close()
        self.listeners, self.waiting = [], []
