"""The poller's view of one watched directory: its entries as last listed, the O_PATH descriptors
held for them, and the stats that say whether it must be listed again.

The poller (poller.py) decides when each directory is looked at; a Folder knows how to look.
"""

from __future__ import annotations

import contextlib
import os
import resource
import stat
from dataclasses import dataclass, field
from typing import Optional

from .raw_changes import CHANGE_ADDED, CHANGE_DELETED, CHANGE_MODIFIED, RawChanges

# A rebuild holds the old poller's descriptors and the new one's for a moment: two shares must
# leave room for everything else the supervisor opens.
POLL_FD_SHARE = 0.4  # of the soft RLIMIT_NOFILE, per poller
UNLIMITED_FDS = 1 << 20  # what an unlimited RLIMIT_NOFILE counts as
O_PATH = getattr(os, "O_PATH", 0)  # Linux only: elsewhere (macOS) every entry is stat'ed by path
HANDLE_FLAGS = O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC  # a reference to the inode, nothing opened

Signature = tuple[int, int, int, int]  # mtime_ns, size, inode, mode


def _signature(st: os.stat_result) -> Signature:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)


def _list(directory: str) -> dict[str, Signature]:
    entries: dict[str, Signature] = {}
    try:
        with os.scandir(directory) as found:
            for entry in found:
                try:
                    entries[entry.path] = _signature(entry.stat(follow_symlinks=False))
                except OSError:
                    continue  # removed between listing and stat: the next look sees it gone
    except OSError:
        pass  # the directory itself vanished: its entries show up as deleted
    return entries


def diff(old: dict[str, Signature], new: dict[str, Signature]) -> RawChanges:
    changes: RawChanges = set()
    for path, signature in new.items():
        before = old.get(path)
        if before is None:
            changes.add((CHANGE_ADDED, path))
        elif before != signature and not stat.S_ISDIR(signature[3]):
            changes.add((CHANGE_MODIFIED, path))  # a directory's mtime moves with its entries: not a change
    changes |= {(CHANGE_DELETED, path) for path in old.keys() - new.keys()}
    return changes


class Handles:
    """O_PATH descriptors for watched entries, up to an allowance; past it entries are stat'ed by path.

    fstat on a held descriptor skips the path walk of an lstat: measured on the bench tree, a
    spread sweep took 1.9 % of a core this way and 2.9 % by path. O_PATH opens nothing on the
    file system (no FUSE open, no NFS open state); a descriptor stays on its inode, so a file
    replaced by a rename is noticed through its directory's mtime and the old inode's link
    count of 0, and the listing opens the new one. Held descriptors keep the mount busy, as the
    app's working directory on it already does; a root replaced by a remount is seen by the
    watcher's root check, whose rebuild closes them.
    """

    def __init__(self, allowance: Optional[int] = None) -> None:
        if allowance is None:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            allowance = int((UNLIMITED_FDS if soft == resource.RLIM_INFINITY else soft) * POLL_FD_SHARE)
        if not O_PATH:
            allowance = 0
        self.allowance = allowance
        self.held: set[int] = set()

    def open(self, path: str) -> Optional[int]:
        if len(self.held) >= self.allowance:
            return None
        try:
            fd = os.open(path, HANDLE_FLAGS)
        except OSError:
            return None  # gone already, or out of descriptors: stat'ed by path
        self.held.add(fd)
        return fd

    def close(self, fd: Optional[int]) -> None:
        if fd is not None and fd in self.held:
            self.held.discard(fd)
            with contextlib.suppress(OSError):  # EIO from a dead network mount: the descriptor is gone anyway
                os.close(fd)

    def close_all(self) -> None:
        for fd in list(self.held):
            self.close(fd)


def _inode(fd: int) -> Optional[int]:
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return None


def _changed(st: os.stat_result, mtime: int, size: int) -> bool:
    return st.st_mtime_ns != mtime or st.st_size != size or st.st_nlink == 0  # 0: a held inode was unlinked


@dataclass
class Folder:
    """One watched directory as last listed: its own stat, its entries, and what a sweep checks."""

    path: str
    handles: Handles
    own: Optional[tuple[int, int]] = None  # mtime_ns, inode
    own_fd: Optional[int] = None
    entries: dict[str, Signature] = field(default_factory=dict)
    held: dict[str, tuple[int, int]] = field(default_factory=dict)  # path: (descriptor, inode)
    by_fd: list[tuple[int, int, int]] = field(default_factory=list)  # descriptor, mtime_ns, size
    by_path: list[tuple[str, int, int]] = field(default_factory=list)  # path, mtime_ns, size

    def relist(self) -> RawChanges:
        try:
            st: Optional[os.stat_result] = os.stat(self.path)  # before listing: a change during it moves it again
        except OSError:
            st = None
        self.own = (st.st_mtime_ns, st.st_ino) if st else None
        if self.own_fd is not None and (st is None or _inode(self.own_fd) != st.st_ino):
            self.handles.close(self.own_fd)
            self.own_fd = None
        if self.own_fd is None and st is not None:
            self.own_fd = self.handles.open(self.path)
        fresh = _list(self.path)
        changes = diff(self.entries, fresh)
        self.entries = fresh
        self._hold(fresh)
        return changes

    def _hold(self, fresh: dict[str, Signature]) -> None:
        """Keep the descriptors of files whose inode stayed, open ones for new files, close the rest."""
        before, self.held = self.held, {}
        self.by_fd, self.by_path = [], []
        for path, (mtime, size, inode, mode) in fresh.items():
            if stat.S_ISDIR(mode):
                continue
            fd, held_inode = before.pop(path, (None, None))
            if fd is not None and held_inode != inode:
                self.handles.close(fd)
                fd = None
            if fd is None:
                fd = self.handles.open(path)
            if fd is None:
                self.by_path.append((path, mtime, size))
            else:
                self.held[path] = (fd, inode)
                self.by_fd.append((fd, mtime, size))
        for fd, _ in before.values():
            self.handles.close(fd)

    def changed(self) -> bool:
        """One stat for the directory and one per file; stops at the first difference."""
        try:
            st = os.fstat(self.own_fd) if self.own_fd is not None else os.stat(self.path)
            if (st.st_mtime_ns, st.st_ino) != self.own or st.st_nlink == 0:
                return True
            fstat, lstat = os.fstat, os.lstat
            for fd, mtime, size in self.by_fd:
                if _changed(fstat(fd), mtime, size):
                    return True
            for path, mtime, size in self.by_path:
                if _changed(lstat(path), mtime, size):
                    return True
        except OSError:
            # Gone, or a stale handle (an NFS server restarted): the listing says what happened,
            # with fresh descriptors, since a stale one would fail every sweep from now on.
            self.close()
            return True
        return False

    def close(self) -> None:
        for fd, _ in self.held.values():
            self.handles.close(fd)
        self.handles.close(self.own_fd)
        self.held, self.own_fd, self.by_fd, self.by_path = {}, None, [], []

    @property
    def files(self) -> int:
        return len(self.by_fd) + len(self.by_path)

    @property
    def weight(self) -> int:
        return 1 + self.files
