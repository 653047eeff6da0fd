"""The agent's end of the local control channel (the wire is described in host/control_wire.py):
``Announcement`` tells the supervisors watching a directory that a batch begins, is committed (or
kept, or only stamped) and waits to hear what it did; ``LogFeed`` follows the apps' log lines.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Optional

from ...host.background import Background
from ...host.control_wire import (
    ACK,
    KEY_LENGTH,
    MAX_MESSAGE,
    READ_CHUNK,
    SOCKET_SUFFIX,
    control_dir,
    directory_key,
    parse_message,
    private_dir,
    send_quietly,
)

ACK_TIMEOUT = 1.0  # seconds the agent waits for a supervisor to confirm its hold before writing anyway
OUTCOME_WAIT = 60.0  # seconds the agent waits to hear what its batch did (a stop ladder, a delay)
LOG_RESCAN = 1.0  # seconds between looks for a supervisor that started after the log feed
LOG_STREAMS = ("stdout", "stderr")


def keys_above(root: str) -> list[str]:
    """The keys of ``root`` and of every directory above it: the supervisors a batch in ``root`` concerns."""
    path = os.path.realpath(root)
    keys = [directory_key(path)]
    while path != os.path.dirname(path):
        path = os.path.dirname(path)
        keys.append(directory_key(path))
    return keys


class Announcement:
    """One batch announced to the supervisors watching ``root``: ``begin`` now, ``commit(paths)`` when done."""

    def __init__(self, root: str, env: Mapping[str, str]) -> None:
        self.socks: list[socket.socket] = []
        for path in supervisor_sockets(root, env):
            sock = _connect(path)
            if sock is not None:
                self.socks.append(sock)
        begin = (json.dumps({"begin": root}) + "\n").encode()
        for sock in self.socks:
            send_quietly(sock, begin)
        deadline = time.monotonic() + ACK_TIMEOUT
        for sock in self.socks:
            _wait_ack(sock, deadline)

    def hold(self, seconds: float) -> None:
        """Keep the supervisors holding for up to ``seconds`` more (a dependency install runs)."""
        self._say({"hold": seconds})

    def commit(self, paths: list[str], fresh: bool = False, outcome: bool = False) -> None:
        """The batch is in. ``fresh``: nothing preloaded may be kept. ``outcome``: stay connected to hear
        what the batch did to the app (``outcome()``); otherwise hang up now."""
        message: dict[str, object] = {"commit": paths}
        if fresh:
            message["fresh"] = True
        if outcome:
            message["outcome"] = True
        self._say(message)
        if not outcome:
            self.close()

    def stamped(self, paths: list[str]) -> None:
        """Only the mtimes of these files changed (their content is the laptop's already): no restart."""
        self._say({"stamped": paths})
        self.close()

    def keep(self, paths: list[str]) -> None:
        """These files changed, but the app must keep running (their dependency install failed)."""
        self._say({"keep": paths})
        self.close()

    def outcome(self, timeout: float = OUTCOME_WAIT) -> Optional[dict[str, object]]:
        """What the first supervisor that answers says the batch did (feedback.py); None if none did."""
        deadline = time.monotonic() + timeout
        try:
            for sock in self.socks:
                found = _read_outcome(sock, deadline)
                if found is not None:
                    return found
            return None
        finally:
            self.close()

    def _say(self, message: dict[str, object]) -> None:
        line = (json.dumps(message) + "\n").encode()
        for sock in self.socks:
            try:
                sock.sendall(line)
            except OSError:
                pass

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks = []


def supervisor_sockets(root: str, env: Mapping[str, str]) -> list[Path]:
    """The sockets of the supervisors a batch in ``root`` concerns; none without a (safe) channel."""
    directory = control_dir(env)
    if private_dir(directory, create=False) is not None:
        return []  # no (safe) channel: the supervisor's watcher sees the files as usual
    return [path for key in keys_above(root) for path in sorted(directory.glob(f"{key}.*{SOCKET_SUFFIX}"))]


class LogFeed(Background):
    """The agent's end of ``--logs``: a thread that listens to every supervisor watching ``root`` (one
    that starts later too) and hands each line the apps write to ``deliver(stream, line)``."""

    def __init__(self, root: str, env: Mapping[str, str], deliver: Callable[[str, str], None]) -> None:
        self.root = root
        self.env = dict(env)
        self.deliver = deliver
        super().__init__("logs")

    def _run(self) -> None:
        listening: dict[Path, tuple[socket.socket, bytearray]] = {}
        try:
            while not self.stopped.is_set():
                for path in supervisor_sockets(self.root, self.env):
                    if path not in listening:
                        sock = _connect(path)
                        if sock is not None and _sent(sock, b'{"logs": true}\n'):
                            listening[path] = (sock, bytearray())
                socks = {sock: path for path, (sock, _) in listening.items()}
                readable, _, _ = select.select(list(socks), [], [], LOG_RESCAN)
                for sock in readable:
                    path = socks[sock]
                    if not self._read(sock, listening[path][1]):
                        sock.close()
                        del listening[path]
        finally:
            for sock, _ in listening.values():
                sock.close()

    def _read(self, sock: socket.socket, buffer: bytearray) -> bool:
        try:
            data = sock.recv(READ_CHUNK)
        except OSError:
            return False
        if not data or len(buffer) > MAX_MESSAGE:
            return False
        buffer += data
        *lines, rest = bytes(buffer).split(b"\n")
        buffer[:] = rest
        for line in lines:
            message = parse_message(line)
            if isinstance(message.get("log"), str) and message.get("stream") in LOG_STREAMS:
                self.deliver(str(message["stream"]), str(message["log"]))
        return True


def _sent(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
        return True
    except OSError:
        sock.close()
        return False


def _connect(path: Path) -> Optional[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ECONNREFUSED and not _owner_running(path):
            try:
                path.unlink()  # a supervisor that was killed left its socket: nobody listens there
            except OSError:
                pass
        return None
    return sock


def _owner_running(path: Path) -> bool:
    """Is the supervisor whose pid names this socket still running? (Unknown counts as alive.)"""
    pid = path.name[KEY_LENGTH + 1 : -len(SOCKET_SUFFIX)]
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _read_outcome(sock: socket.socket, deadline: float) -> Optional[dict[str, object]]:
    """The supervisor's outcome line on ``sock``, or None (it hung up, or said nothing in time). A late
    ``ok`` (the hold confirmed after the agent stopped waiting for it) may come first."""
    buffer = b""
    while len(buffer) < READ_CHUNK:
        while b"\n" in buffer:
            line, _, buffer = buffer.partition(b"\n")
            outcome = parse_message(line).get("outcome") if line + b"\n" != ACK else None
            if isinstance(outcome, dict):
                return outcome
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data = sock.recv(READ_CHUNK)
        except OSError:
            return None
        if not data:
            return None
        buffer += data
    return None


def _wait_ack(sock: socket.socket, deadline: float) -> None:
    sock.settimeout(max(0.0, deadline - time.monotonic()))
    try:
        sock.recv(len(ACK))
    except OSError:
        pass
    sock.settimeout(None)
