"""reloadd's own inotify reader: one descriptor that a thread can block on with no timeout.

watchfiles' RustNotify had no blocking wait: it slept a few milliseconds between looks at its
change set, so an idle reloadd woke hundreds of times a second (~0.8 % of a core). This reader
holds one non-blocking inotify instance with a watch per directory (non-recursive: the watcher
prunes the tree) and is read only when ``select`` says the kernel has events, so an idle
watcher thread sleeps until something happens.

Names are bytes from the kernel and decoded with ``os.fsdecode`` (surrogateescape), so a name
that is not UTF-8 is reported like any other.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import time
from typing import Optional

from .raw_changes import CHANGE_ADDED, CHANGE_DELETED, CHANGE_MODIFIED, RawChanges

# linux/inotify.h
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
WATCH_MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
    | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)  # fmt: skip
ADDED_EVENTS = IN_CREATE | IN_MOVED_TO
DELETED_EVENTS = IN_DELETE | IN_MOVED_FROM
SELF_EVENTS = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT  # the watched directory itself went away
EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
READ_SIZE = 256 * 1024  # bytes per read: thousands of events
# After the first events of a batch, keep collecting while more arrive this quickly, up to the
# debounce: a save (write, then rename, then attrib) becomes one batch. This only runs while
# events flow; idle, the reader blocks with no timeout.
COLLECT_STEP = 0.002
COLLECT_FOR = 0.010


class QueueOverflow(RuntimeError):
    """The kernel dropped events (its queue was full): what changed must be found by looking."""


class Inotify:
    """One inotify instance: ``add`` directories, ``read`` what changed in them."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self.fd: int = fd
        self.paths: dict[int, str] = {}  # watch descriptor -> directory
        self.lost_self = False  # a watched directory was deleted, moved or unmounted (not yet asked about)

    def add(self, directory: str) -> int:
        """Watch ``directory``: 0, or the errno the kernel gave (ENOSPC: the watch limit)."""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), ctypes.c_uint32(WATCH_MASK))
        if wd < 0:
            return ctypes.get_errno() or errno.EINVAL
        self.paths[wd] = directory
        return 0

    def wait(self, timeout: Optional[float], wake_fd: int) -> bool:
        """Block until events are readable (True), ``wake_fd`` is, or ``timeout`` seconds passed (None: forever)."""
        try:
            readable, _, _ = select.select([self.fd, wake_fd], [], [], timeout)
        except InterruptedError:
            return False
        return self.fd in readable

    def read(self) -> RawChanges:
        """Everything the kernel has queued, then what follows within the collect window."""
        changes = self._read_now()
        end_at = _now() + COLLECT_FOR
        while _now() < end_at:
            readable, _, _ = select.select([self.fd], [], [], COLLECT_STEP)
            if not readable:
                break
            changes |= self._read_now()
        # A new file is written right after it is created: that is one change, not two.
        added = {path for change, path in changes if change == CHANGE_ADDED}
        return {(change, path) for change, path in changes if change != CHANGE_MODIFIED or path not in added}

    def drain(self) -> RawChanges:
        """What the kernel has queued now, without waiting: read before this instance is replaced."""
        return self._read_now()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _read_now(self) -> RawChanges:
        changes: RawChanges = set()
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return changes
            if not data:
                return changes
            changes |= self._parse(data)

    def _parse(self, data: bytes) -> RawChanges:
        changes: RawChanges = set()
        offset = 0
        while offset + EVENT_HEADER.size <= len(data):
            wd, mask, _cookie, size = EVENT_HEADER.unpack_from(data, offset)
            offset += EVENT_HEADER.size
            name = data[offset : offset + size].rstrip(b"\0")
            offset += size
            if mask & IN_Q_OVERFLOW:
                raise QueueOverflow("inotify's queue overflowed: events were lost")
            directory = self.paths.get(wd)
            if directory is None:
                continue
            if mask & IN_IGNORED:
                del self.paths[wd]
                continue
            if not name:
                self.lost_self = self.lost_self or bool(mask & SELF_EVENTS)
                continue  # about the directory itself: its parent's watch reports it as an entry
            path = os.path.join(directory, os.fsdecode(name))
            if mask & ADDED_EVENTS:
                changes.add((CHANGE_ADDED, path))
            elif mask & DELETED_EVENTS:
                changes.add((CHANGE_DELETED, path))
            else:
                changes.add((CHANGE_MODIFIED, path))
        return changes


def _now() -> float:
    return time.monotonic()
