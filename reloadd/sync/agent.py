"""The pod side: ``reloadd agent [DIR]`` speaks the sync protocol on stdin/stdout, writes only under DIR.

A session: the agent says ``hello`` (or ``refused``, see guard.py), receives the exclude globs,
sends its manifest, then applies batches. A batch is staged first: every file is written to a
temporary name in its own directory (``.reloadd-sync.PID.N.tmp``, which reloadd's watcher
ignores), given its mode and the laptop's mtime; only at ``commit`` are the deletes done and
the temporary names renamed into place, so the app never sees half a file or half a checkout.
Around the renames the agent tells the supervisor in this container (control.py) that a batch
begins and what it committed: one restart per batch.

Every path is checked by paths.check_path and resolved without following pod-side symlinks.
A malformed frame, a hostile path or an oversized frame ends the session with one error line;
staged files are removed, nothing partial becomes visible. stdin closing (the laptop stopped,
Ctrl-C) ends the agent the same way; the app keeps running.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .. import __version__
from ..control import Announcement
from ..errors import ConfigError, ReloaddError
from ..output import out
from .excludes import excluder
from .guard import EXIT_REFUSED, refusal
from .manifest import Exclude, file_hash, scan
from .paths import (
    Blocked,
    Root,
    check_link_target,
    check_path,
    check_root,
    file_mode,
    remove_tree,
    temp_name,
    temp_owner,
)
from .protocol import (
    MANIFEST_CHUNK,
    PROTOCOL_VERSION,
    Data,
    Frame,
    FrameReader,
    ProtocolError,
    encode_message,
)

READ_CHUNK = 1024 * 1024
EXIT_WRITE_FAILED = 73  # EX_CANTCREAT: the pod's file system refused a write; the laptop reconnects and retries
FD_CACHE_MAX = 256  # directory descriptors a batch keeps open before it closes them all and starts over
MAX_HASH_PATHS = 100_000
AGENT_HELP = """\
Usage: reloadd agent [DIR]

The pod side of `reloadd sync`: speaks the sync protocol on stdin/stdout and writes only under
DIR (default: the working directory). Started by `reloadd sync` through kubectl exec (or the
--transport command); not meant to be run by hand. Refuses to run when NODE_ENV=production
(unless RELOADD_WATCH=1 or RELOADD_SYNC=1) or when RELOADD_SYNC=0, with exit status 3."""


@dataclass
class Upload:
    """The file whose bytes are arriving."""

    path: str
    parts: tuple[str, ...]
    fd: Optional[int]  # None: refused, the bytes are read and dropped
    remaining: int
    executable: bool
    mtime_ns: int
    temp: str = ""


@dataclass
class Batch:
    ident: int
    deletes: list[str]
    deleted_early: set[str] = field(default_factory=set)
    dirs: list[tuple[str, ...]] = field(default_factory=list)
    staged: list[tuple[tuple[str, ...], str]] = field(default_factory=list)  # (final parts, temp name)
    refused: list[str] = field(default_factory=list)
    upload: Optional[Upload] = None
    bytes: int = 0
    fds: dict[tuple[str, ...], int] = field(default_factory=dict)

    def close_fds(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class Agent:
    """One session's state; ``handle`` takes each frame from the laptop side in order."""

    def __init__(self, root: Root, env: Mapping[str, str], send: Callable[[dict[str, Any]], None]) -> None:
        self.root = root
        self.env = env
        self.send = send
        self.exclude: Exclude = lambda path, is_dir: False
        self.batch: Optional[Batch] = None
        self.counter = 0

    # -- dispatch ----------------------------------------------------------------------------------
    def handle(self, frame: Frame) -> None:
        if isinstance(frame, Data):
            self._data(frame.chunk)
            return
        kind = frame["t"]
        handler = {
            "start": self._start,
            "hash": self._hash,
            "batch": self._begin,
            "op": self._op,
            "commit": self._commit,
        }.get(kind)
        if handler is None:
            raise ProtocolError(f"unknown message type {kind!r}")
        if kind in ("op", "commit") and self.batch is None:
            raise ProtocolError(f"{kind!r} outside a batch")
        if self.batch is not None and self.batch.upload is not None:
            raise ProtocolError(f"{kind!r} before the file {self.batch.upload.path!r} was complete")
        handler(frame)

    def abort(self) -> None:
        """The session ended mid-batch: remove what was staged, so nothing partial stays."""
        batch, self.batch = self.batch, None
        if batch is None:
            return
        if batch.upload is not None and batch.upload.fd is not None:
            os.close(batch.upload.fd)
            batch.staged.append((batch.upload.parts, batch.upload.temp))
        for parts, temp in batch.staged:
            self._unlink_temp(batch, parts[:-1], temp)
        batch.close_fds()

    # -- manifest and hashes -----------------------------------------------------------------------
    def _start(self, message: dict[str, Any]) -> None:
        globs = message.get("exclude", [])
        if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
            raise ProtocolError("start: exclude must be a list of globs")
        self.exclude = excluder(self.root.path, globs)
        entries = [entry.to_wire() for entry in scan(self.root.fd, self.exclude, self._stale_temp).values()]
        for start in range(0, len(entries), MANIFEST_CHUNK):
            self.send({"t": "manifest", "entries": entries[start : start + MANIFEST_CHUNK]})
        self.send({"t": "manifest-end", "count": len(entries)})

    def _stale_temp(self, fd: int, name: str) -> None:
        """A temporary file of an agent that was killed mid-batch: nobody will rename it now."""
        owner = temp_owner(name)
        if owner is None or owner == os.getpid() or _alive(owner):
            return
        try:
            os.unlink(name, dir_fd=fd)
        except OSError:
            pass

    def _hash(self, message: dict[str, Any]) -> None:
        paths = message.get("paths")
        if not isinstance(paths, list) or len(paths) > MAX_HASH_PATHS:
            raise ProtocolError("hash: paths must be a list")
        hashes = {}
        for path in paths:
            parts = check_path(path)
            try:
                parent = self.root.open_dir(parts[:-1], create=False)
            except (OSError, Blocked):
                hashes[path] = ""
                continue
            try:
                hashes[path] = file_hash(parent, parts[-1])
            finally:
                os.close(parent)
        self.send({"t": "hashes", "hashes": hashes})

    # -- a batch -----------------------------------------------------------------------------------
    def _begin(self, message: dict[str, Any]) -> None:
        if self.batch is not None:
            raise ProtocolError("a batch began inside another")
        ident, deletes = message.get("id"), message.get("delete", [])
        if not isinstance(ident, int) or not isinstance(deletes, list):
            raise ProtocolError("batch: needs an id and a list of deletes")
        for path in deletes:
            check_path(path)
        self.batch = Batch(ident, list(deletes))

    def _op(self, message: dict[str, Any]) -> None:
        assert self.batch is not None
        op, path = message.get("op"), message.get("path")
        parts = check_path(path)
        assert isinstance(path, str)
        if op == "dir":
            self.batch.dirs.append(parts)
        elif op == "link":
            target = check_link_target(path, message.get("target"))
            self._stage_link(parts, target)
        elif op == "file":
            size, executable, mtime = message.get("size"), message.get("exec"), message.get("mtime")
            if not (isinstance(size, int) and size >= 0 and isinstance(executable, bool) and isinstance(mtime, int)):
                raise ProtocolError(f"file {path!r}: needs size, exec and mtime")
            self._stage_file(path, parts, size, executable, mtime)
        else:
            raise ProtocolError(f"unknown op {op!r}")

    def _stage_file(self, path: str, parts: tuple[str, ...], size: int, executable: bool, mtime: int) -> None:
        assert self.batch is not None
        parent = self._parent(parts)
        upload = Upload(path, parts, None, size, executable, mtime)
        if parent is not None:
            upload.temp = self._temp()
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            upload.fd = os.open(upload.temp, flags, 0o600, dir_fd=parent)
        self.batch.upload = upload
        if size == 0:
            self._finish_upload()

    def _stage_link(self, parts: tuple[str, ...], target: str) -> None:
        assert self.batch is not None
        parent = self._parent(parts)
        if parent is not None:
            temp = self._temp()
            os.symlink(target, temp, dir_fd=parent)
            self.batch.staged.append((parts, temp))

    def _data(self, chunk: bytes) -> None:
        upload = self.batch.upload if self.batch else None
        if upload is None or len(chunk) > upload.remaining:
            raise ProtocolError("file data that no file op announced")
        if upload.fd is not None:
            view = memoryview(chunk)
            while view:
                view = view[os.write(upload.fd, view) :]
        upload.remaining -= len(chunk)
        if upload.remaining == 0:
            self._finish_upload()

    def _finish_upload(self) -> None:
        assert self.batch is not None and self.batch.upload is not None
        upload, self.batch.upload = self.batch.upload, None
        if upload.fd is None:
            return
        try:
            os.fchmod(upload.fd, file_mode(upload.executable))
            os.utime(upload.fd, ns=(upload.mtime_ns, upload.mtime_ns))
        finally:
            os.close(upload.fd)
        self.batch.staged.append((upload.parts, upload.temp))

    def _temp(self) -> str:
        self.counter += 1
        return temp_name(os.getpid(), self.counter)

    def _parent(self, parts: tuple[str, ...]) -> Optional[int]:
        """The open parent directory of ``parts`` (made if missing), or None if refused (recorded)."""
        assert self.batch is not None
        directory = parts[:-1]
        cached = self.batch.fds.get(directory)
        if cached is not None:
            return cached
        try:
            fd = self._open_dir(directory)
        except Blocked as blocked:
            shown = "/".join(directory[: blocked.index + 1])
            self.batch.refused.append(f"{'/'.join(parts)}: {blocked.reason} at {shown} in the pod; not following it")
            return None
        if len(self.batch.fds) >= FD_CACHE_MAX:
            self.batch.close_fds()
        self.batch.fds[directory] = fd
        return fd

    def _open_dir(self, directory: tuple[str, ...]) -> int:
        """open_dir(create=True); a symlink or file in the way that this batch deletes is deleted first
        (a file becoming a directory is the one case where a batch is not applied all at once)."""
        assert self.batch is not None
        while True:
            try:
                return self.root.open_dir(directory, create=True)
            except Blocked as blocked:
                blocker = directory[: blocked.index + 1]
                name = "/".join(blocker)
                if name not in self.batch.deletes or name in self.batch.deleted_early:
                    raise
                self._delete(blocker, [])
                self.batch.deleted_early.add(name)

    # -- commit ------------------------------------------------------------------------------------
    def _commit(self, message: dict[str, Any]) -> None:
        batch = self.batch
        assert batch is not None
        if message.get("id") != batch.ident:
            raise ProtocolError("commit for another batch")
        announcement = Announcement(self.root.path, self.env)
        changed: list[str] = []
        try:
            for path in batch.deletes:
                if path not in batch.deleted_early:
                    self._delete(check_path(path), changed)
            for parts in batch.dirs:
                self._make_dir(batch, parts)
            for parts, temp in batch.staged:
                self._rename(batch, parts, temp)
                changed.append("/".join(parts))
        finally:
            announcement.commit([f"{self.root.path}/{path}" for path in changed])
            batch.close_fds()
            self.batch = None
        self.send({"t": "done", "id": batch.ident, "refused": batch.refused})

    def _delete(self, parts: tuple[str, ...], removed: list[str]) -> None:
        try:
            parent = self.root.open_dir(parts[:-1], create=False)
        except (FileNotFoundError, Blocked):
            return  # not there, or under a symlink the pod has: nothing of ours to delete
        try:
            prefix = "/".join(parts[:-1])
            # excluded paths (node_modules, .git unless included) are never deleted, nor what is inside them
            remove_tree(parent, parts[-1], removed, f"{prefix}/" if prefix else "", keep=self.exclude)
        finally:
            os.close(parent)

    def _make_dir(self, batch: Batch, parts: tuple[str, ...]) -> None:
        try:
            os.close(self._open_dir(parts))
        except Blocked as blocked:
            batch.refused.append(f"{'/'.join(parts)}: {blocked.reason} in the pod; not following it")

    def _rename(self, batch: Batch, parts: tuple[str, ...], temp: str) -> None:
        parent = self._parent(parts)
        if parent is None:
            return
        try:
            os.rename(temp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise
            remove_tree(parent, parts[-1])  # a directory where the laptop now has a file
            os.rename(temp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)

    def _unlink_temp(self, batch: Batch, directory: tuple[str, ...], temp: str) -> None:
        try:
            parent = self.root.open_dir(directory, create=False)
        except (OSError, Blocked):
            return
        try:
            os.unlink(temp, dir_fd=parent)
        except OSError:
            pass
        finally:
            os.close(parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# -- the process ------------------------------------------------------------------------------------
class Stdio:
    """The protocol on fds 0 and 1."""

    def __init__(self) -> None:
        self.reader = FrameReader()

    def send(self, message: dict[str, Any]) -> None:
        data = memoryview(encode_message(message))
        while data:
            data = data[os.write(1, data) :]

    def frames(self) -> list[Frame]:
        """The next frames (blocking); an empty list means the laptop closed the stream."""
        while True:
            chunk = os.read(0, READ_CHUNK)
            if not chunk:
                self.reader.finish()
                return []
            frames = self.reader.feed(chunk)
            if frames:
                return frames


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
        return _serve(Agent(root, env, stdio.send), stdio)
    except BrokenPipeError:
        return 0  # the laptop side went away while we were answering: as good as stdin closing
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
        agent.abort()


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
