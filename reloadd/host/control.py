"""The local channel from ``reloadd agent`` to the supervisor in the same container: "this batch is in".

The agent knows exactly when a synced batch is complete, so the supervisor need not guess it
from a quiet window or wait for a poller on a FUSE or network volume. The channel is a Unix
socket in a directory only this user can open (``/tmp/reloadd-UID``, or ``RELOADD_CONTROL_DIR``):
no network port, and no other user can connect (0700 directory, 0600 sockets).

The rendezvous is derived from the synced directory, so a batch restarts only the supervisors
watching it: each supervisor listens on one socket per directory it cares about (its working
directory and each watched directory), named ``KEY.PID.sock`` where KEY is a short hash of that
directory's real path; the agent syncing into ROOT connects to the sockets whose KEY is ROOT's
or one of its parents' (a supervisor watching ``/app`` hears a batch written to ``/app/src``).
A supervisor of another app, in another directory, never hears it.

One connection per batch, newline-separated JSON:
  agent -> supervisor  ``{"begin": ROOT}``     before the first rename; the supervisor holds its
  supervisor -> agent  ``ok``                  own change bursts until the batch is committed
  agent -> supervisor  ``{"hold": SECONDS}``   (optional) hold longer: a dependency install runs
  agent -> supervisor  ``{"commit": [PATH...], "fresh": BOOL}`` after the last rename (fresh: the
                       next app may keep nothing preloaded: dependencies were installed)
  supervisor -> agent  ``{"outcome": ...}``    what the batch did to the app (feedback.py), once
                       known; then the supervisor closes
or, instead of the commit, when the agent only gave files the laptop's mtime (same content):
  agent -> supervisor  ``{"stamped": [PATH...]}`` no restart; the watcher's report of it is an echo
or, when the batch's dependency install failed (sync/installs.py):
  agent -> supervisor  ``{"keep": [PATH...]}``  no restart: the app keeps running the old code
A connection that closes (or stays silent for ``HOLD_MAX``, or the hold it asked for) without a
commit releases the hold: that is how a batch that failed and was rolled back ends, with no restart.
With no supervisor listening the agent just writes, and the watcher does its usual job.

An agent asked for the app's logs (``reloadd sync --logs``) opens one more connection:
  agent -> supervisor  ``{"logs": true}``
  supervisor -> agent  ``{"log": LINE, "stream": "stdout"|"stderr"}`` for every line the apps
                       write (app_output.py), until either side closes; lines the agent is too
                       slow to take are dropped, never waited for
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import select
import selectors
import socket
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

CONTROL_DIR_ENV = "RELOADD_CONTROL_DIR"
SOCKET_SUFFIX = ".sock"
KEY_LENGTH = 10  # hex digits of the directory's hash: short, since a socket's path must fit in 108 bytes
ACK = b"ok\n"
ACK_TIMEOUT = 1.0  # seconds the agent waits for a supervisor to confirm its hold before writing anyway
HOLD_MAX = 10.0  # seconds a begun batch may hold the supervisor's bursts (an agent stuck mid-commit)
HOLD_LIMIT = 3600.0  # the longest hold an agent may ask for (an install's timeout and some slack)
OUTCOME_WAIT = 60.0  # seconds the agent waits to hear what its batch did (a stop ladder, a delay)
MAX_MESSAGE = 16 * 1024 * 1024  # bytes one connection may send: a commit of ~100,000 paths
ECHO_MEMORY = 100_000  # committed files whose signatures are kept to recognise the watcher's echo
READ_CHUNK = 65536
PRIVATE_MODE = 0o700
LOG_RESCAN = 1.0  # seconds between looks for a supervisor that started after the log feed
LOG_STREAMS = ("stdout", "stderr")


def control_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get(CONTROL_DIR_ENV) or f"/tmp/reloadd-{os.geteuid()}")


def directory_key(directory: str) -> str:
    """The rendezvous name of a directory: a short hash of its real path."""
    real = os.path.realpath(directory)
    return hashlib.sha256(os.fsencode(real)).hexdigest()[:KEY_LENGTH]


def keys_above(root: str) -> list[str]:
    """The keys of ``root`` and of every directory above it: the supervisors a batch in ``root`` concerns."""
    path = os.path.realpath(root)
    keys = [directory_key(path)]
    while path != os.path.dirname(path):
        path = os.path.dirname(path)
        keys.append(directory_key(path))
    return keys


def private_dir(path: Path, create: bool) -> Optional[str]:
    """None if ``path`` is a directory only this user can open (made so if ``create``); else why not."""
    if create:
        try:
            os.mkdir(path, PRIVATE_MODE)
        except FileExistsError:
            pass
        except OSError as exc:
            return f"cannot create {path}: {exc.strerror}"
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return f"{path} is not private to this user (owner {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})"
    return None


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
        _send(batch.sock, (json.dumps({"outcome": outcome}) + "\n").encode())
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
            message = _json(line)
            if message.get("logs") is True and not conn.begun and not conn.logs:
                conn.logs = True
                with self.log_lock:
                    self.log_socks.append(conn.sock)
            elif "begin" in message and not conn.begun:
                conn.begun = True
                _send(conn.sock, ACK)
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


def _json(line: bytes) -> dict[str, object]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _absolute(paths: object) -> list[str]:
    return [p for p in paths if isinstance(p, str) and p.startswith("/")] if isinstance(paths, list) else []


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.send(data)
    except OSError:
        pass  # the agent went away; its close is seen on the next read


def signature(path: str) -> Optional[tuple[int, int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Echoes:
    """Files a committed batch wrote, so the watcher's later report of the same write is not a second restart.

    A file's signature (mtime, size, inode) is kept until the file changes again: a poller on a
    slow interval may report it many seconds later, and an unchanged signature means no change.
    """

    def __init__(self) -> None:
        self._seen: dict[str, Optional[tuple[int, int, int]]] = {}

    def remember(self, paths: list[str]) -> None:
        if len(self._seen) + len(paths) > ECHO_MEMORY:
            self._seen.clear()  # forgetting costs at most one extra restart; memory stays bounded
        for path in paths:
            self._seen[path] = signature(path)

    def new_changes(self, paths: set[str]) -> set[str]:
        """The paths that changed again since their batch (a deleted file still gone is an echo too)."""
        fresh = set()
        for path in paths:
            if path not in self._seen:
                fresh.add(path)
            elif self._seen[path] != signature(path):
                del self._seen[path]
                fresh.add(path)
        return fresh


# -- the agent's end ----------------------------------------------------------------------------------
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
            _send(sock, begin)
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


class LogFeed:
    """The agent's end of ``--logs``: a thread that listens to every supervisor watching ``root`` (one
    that starts later too) and hands each line the apps write to ``deliver(stream, line)``."""

    def __init__(self, root: str, env: Mapping[str, str], deliver: Callable[[str, str], None]) -> None:
        self.root = root
        self.env = dict(env)
        self.deliver = deliver
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="logs", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

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
            message = _json(line)
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
        if exc.errno == errno.ECONNREFUSED and not _alive(path):
            try:
                path.unlink()  # a supervisor that was killed left its socket: nobody listens there
            except OSError:
                pass
        return None
    return sock


def _alive(path: Path) -> bool:
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
            outcome = _json(line).get("outcome") if line + b"\n" != ACK else None
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
