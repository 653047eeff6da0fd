"""The supervisor's end of the local control channel (the wire is described in control_wire.py):
it hears "this batch is in" from ``reloadd agent``, holds its own bursts meanwhile, tells the agent
what the batch did, and feeds the apps' log lines to agents that asked for them. Echoes remembers
what committed batches wrote, so the watcher's later report of the same write is no second restart.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .control_wire import (
    ACK,
    MAX_MESSAGE,
    READ_CHUNK,
    SOCKET_SUFFIX,
    directory_key,
    parse_message,
    send_quietly,
)
from .file_signature import FileSignature, file_signature

HOLD_MAX = 10.0  # seconds a begun batch may hold the supervisor's bursts (an agent stuck mid-commit)
HOLD_LIMIT = 3600.0  # the longest hold an agent may ask for (an install's timeout and some slack)
ECHO_MEMORY = 100_000  # committed files whose signatures are kept to recognise the watcher's echo


@dataclass
class _Connection:
    sock: socket.socket
    opened: float
    buffer: bytearray = field(default_factory=bytearray)
    begun: bool = False
    hold: float = HOLD_MAX  # seconds from ``opened`` the hold lasts
    kept: bool = False  # committed, and the agent waits on it for the outcome
    logs: bool = False  # a log listener: never "done", never holding


@dataclass
class Committed:
    """A committed batch: its paths, whether the next app must start with nothing preloaded, and the
    connection on which the agent waits to hear what the batch did (``ControlServer.reply``)."""

    paths: list[str]
    fresh: bool = False
    sock: Optional[socket.socket] = None


class ControlServer:
    """The supervisor's end. ``fileno()`` is an epoll descriptor over the listening socket and every
    open connection, so the supervisor's selector registers one descriptor and wakes for all of them."""

    def __init__(self, directory: Path, watched: list[str]) -> None:
        self.connections: dict[int, _Connection] = {}
        self.stamped: list[str] = []  # files whose mtime alone the agent changed: taken with take_stamped()
        self.awaiting: list[Committed] = []  # committed batches whose agent waits for an outcome
        self.kept: list[str] = []  # files written whose dependency install failed: taken with take_kept()
        self.log_socks: list[socket.socket] = []  # log listeners; log_line() runs in the output threads
        self.log_lock = threading.Lock()
        self._poll = selectors.DefaultSelector()
        self.listeners: dict[Path, socket.socket] = {}
        try:
            for key in sorted({directory_key(path) for path in watched}):
                self._listen(directory / f"{key}.{os.getpid()}{SOCKET_SUFFIX}")
        except OSError:
            self.close()
            raise

    def _listen(self, path: Path) -> None:
        if path.exists():
            path.unlink()  # ours from an earlier run with the same pid (a container restarted)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listeners[path] = sock
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
        self._poll.register(sock, selectors.EVENT_READ)

    def fileno(self) -> int:
        return self._poll.fileno()

    @property
    def holding(self) -> bool:
        """A batch has begun and is not committed yet: the supervisor's own bursts wait for it."""
        now = time.monotonic()
        return any(c.begun and now - c.opened < c.hold for c in self.connections.values())

    def take_batches(self) -> list[Committed]:
        """Accept and read whatever is waiting; return the batches committed since the last call."""
        self._poll.select(0)  # consume readiness so the supervisor's selector does not spin
        self._accept()
        batches: list[Committed] = []
        for conn in list(self.connections.values()):
            batch, done = self._read(conn)
            if batch is not None:
                batches.append(batch)
            if done:
                self._drop(conn)
        return batches

    def take_stamped(self) -> list[str]:
        """The files given a new mtime (and nothing else) since the last call; read after take_batches()."""
        stamped, self.stamped = self.stamped, []
        return stamped

    def take_kept(self) -> list[str]:
        """The files of batches whose dependency install failed since the last call: no restart for them."""
        kept, self.kept = self.kept, []
        return kept

    def reply(self, batch: Committed, outcome: dict[str, object]) -> None:
        """Tell the agent of ``batch`` what it did to the app, and hang up."""
        if batch.sock is None:
            return
        send_quietly(batch.sock, (json.dumps({"outcome": outcome}) + "\n").encode())
        batch.sock.close()
        batch.sock = None
        self.awaiting = [waiting for waiting in self.awaiting if waiting is not batch]

    def close(self) -> None:
        for batch in list(self.awaiting):
            self.reply(batch, {"what": "stopped"})
        for conn in list(self.connections.values()):
            self._drop(conn)
        self._poll.close()
        for path, sock in self.listeners.items():
            sock.close()
            try:
                path.unlink()
            except OSError:
                pass
        self.listeners.clear()

    def _accept(self) -> None:
        for listener in self.listeners.values():
            while True:
                try:
                    sock, _ = listener.accept()
                except OSError:  # BlockingIOError: nobody waiting
                    break
                sock.setblocking(False)
                self.connections[sock.fileno()] = _Connection(sock, time.monotonic())
                self._poll.register(sock, selectors.EVENT_READ)

    def _read(self, conn: _Connection) -> tuple[Optional[Committed], bool]:
        """(the committed batch or None, connection finished)."""
        try:
            data = conn.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return None, not conn.logs and time.monotonic() - conn.opened > conn.hold
        except OSError:
            return None, True
        if not data:
            return None, True
        conn.buffer += data
        if len(conn.buffer) > MAX_MESSAGE:
            return None, True
        return self._messages(conn)

    def _messages(self, conn: _Connection) -> tuple[Optional[Committed], bool]:
        while b"\n" in conn.buffer:
            line, _, rest = bytes(conn.buffer).partition(b"\n")
            conn.buffer = bytearray(rest)
            message = parse_message(line)
            if message.get("logs") is True and not conn.begun and not conn.logs:
                conn.logs = True
                with self.log_lock:
                    self.log_socks.append(conn.sock)
            elif "begin" in message and not conn.begun:
                conn.begun = True
                send_quietly(conn.sock, ACK)
            elif "hold" in message and conn.begun:
                seconds = message["hold"]
                if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 < seconds <= HOLD_LIMIT:
                    conn.hold = time.monotonic() - conn.opened + seconds
            elif "commit" in message:
                batch = Committed(_absolute(message["commit"]), fresh=message.get("fresh") is True)
                if message.get("outcome") is True:  # the agent waits for what the batch did
                    conn.kept = True
                    batch.sock = conn.sock
                    self.awaiting.append(batch)
                return batch, True
            elif "stamped" in message:
                self.stamped += _absolute(message["stamped"])
                return None, True
            elif "keep" in message:
                self.kept += _absolute(message["keep"])
                return None, True
        return None, False

    def log_line(self, stream: str, line: str) -> None:
        """One line the apps wrote, to every log listener; called in the output threads, never waits:
        a listener whose socket is full loses the line."""
        data = (json.dumps({"log": line, "stream": stream}) + "\n").encode()
        with self.log_lock:
            for sock in self.log_socks:
                try:
                    sock.send(data, socket.MSG_DONTWAIT)
                except OSError:
                    pass  # full (dropped) or gone (the poll sees it close and drops it)

    def _drop(self, conn: _Connection) -> None:
        if conn.logs:
            with self.log_lock:
                self.log_socks = [sock for sock in self.log_socks if sock is not conn.sock]
        self.connections.pop(conn.sock.fileno(), None)
        self._poll.unregister(conn.sock)
        if not conn.kept:  # a kept one stays open for its outcome: reply() closes it
            conn.sock.close()


def _absolute(paths: object) -> list[str]:
    return [p for p in paths if isinstance(p, str) and p.startswith("/")] if isinstance(paths, list) else []


class Echoes:
    """Files a committed batch wrote, so the watcher's later report of the same write is not a second restart.

    A file's signature (mtime, size, inode) is kept until the file changes again: a poller on a
    slow interval may report it many seconds later, and an unchanged signature means no change.
    """

    def __init__(self) -> None:
        self._seen: dict[str, Optional[FileSignature]] = {}

    def remember(self, paths: list[str]) -> None:
        if len(self._seen) + len(paths) > ECHO_MEMORY:
            self._seen.clear()  # forgetting costs at most one extra restart; memory stays bounded
        for path in paths:
            self._seen[path] = file_signature(path)

    def new_changes(self, paths: set[str]) -> set[str]:
        """The paths that changed again since their batch (a deleted file still gone is an echo too)."""
        fresh = set()
        for path in paths:
            if path not in self._seen:
                fresh.add(path)
            elif self._seen[path] != file_signature(path):
                del self._seen[path]
                fresh.add(path)
        return fresh
