"""Manifests (what a tree holds) and their difference: what the laptop must send, compare or delete.

Both sides scan the same way: from a directory descriptor, one level at a time, never
following a symlink, pruning excluded directories before looking inside them. An entry carries
the path, its kind, size, mtime and executable bit (and a symlink's target). The laptop wins
for every path it has; files whose size agrees but whose mtime does not are compared by
content hash before anything is sent (the agent stamps each file it writes with the laptop's
mtime, so after the first sync the quick check is enough).
"""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, NamedTuple, Optional

from .paths import NAME_MAX, TEMP_PREFIX
from .schema import INT64

FILE, DIR, LINK = "f", "d", "l"
HASH_CHUNK = 1024 * 1024
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Exclude = Callable[[str, bool], bool]  # (relative path, is a directory) -> leave it out


class Entry(NamedTuple):
    """One path of a tree. A named tuple, not a frozen dataclass: a walk makes one per file, and a
    frozen dataclass's constructor costs three times as much (a 20,000-file start pays it on both sides)."""

    path: str
    kind: str
    size: int = 0
    mtime_ns: int = 0
    executable: bool = False
    target: str = ""  # a symlink's target

    def to_wire(self) -> list[Any]:
        return [self.path, self.kind, self.size, self.mtime_ns, self.executable, self.target]

    @classmethod
    def from_wire(cls, item: Any) -> Optional[Entry]:
        """An entry from the peer's manifest, or None if it is malformed."""
        if not isinstance(item, list) or len(item) != 6:
            return None
        path, kind, size, mtime_ns, executable, target = item
        if not (isinstance(path, str) and kind in (FILE, DIR, LINK) and isinstance(target, str)):
            return None
        if not (type(size) is int and 0 <= size <= INT64 and type(mtime_ns) is int and -INT64 <= mtime_ns <= INT64):
            return None  # a bool is not a number here, and sizes and times fit in 64 bits
        if type(executable) is not bool:
            return None
        return cls(path, kind, size, mtime_ns, executable, target)


Manifest = dict[str, Entry]

# A walk's entries are built without the named tuple's generated ``__new__``: that is a Python call,
# ~0.7 us more per entry, which a 20,000-file walk pays 20,000 times on each side of every start.
# The tuple given must hold every field of Entry, in order.
make_entry = tuple.__new__


def entry_for(path: str, st: os.stat_result, target: str = "") -> Optional[Entry]:
    """The entry for a stat result; None for what a sync never carries (sockets, fifos, devices)."""
    if stat.S_ISREG(st.st_mode):
        return Entry(path, FILE, st.st_size, st.st_mtime_ns, bool(st.st_mode & stat.S_IXUSR))
    if stat.S_ISDIR(st.st_mode):
        return Entry(path, DIR)
    if stat.S_ISLNK(st.st_mode):
        return Entry(path, LINK, target=target)
    return None


Listings = dict[str, list[Entry]]  # the entries directly in each directory ("" is the root), by directory


def flat(found: Listings) -> Manifest:
    """Every entry of a walk's listings, by path."""
    return {entry.path: entry for entries in found.values() for entry in entries}


def listings(
    root_fd: int,
    exclude: Exclude,
    temp: Optional[Callable[[int, str], None]] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> Listings:
    """Every entry under the directory ``root_fd`` (which stays open), by the directory it is in.

    Args:
        root_fd: the open root directory.
        exclude: leaves a path out (and, for a directory, everything below it).
        temp: called with (directory fd, name) for each of the agent's temporary files found.
        warn: told (one line each) what is left out that the user may expect: a name that is not
            UTF-8 (it cannot travel in the protocol), a directory that cannot be listed.

    Returns:
        Each directory's entries, paths relative to the root; every directory found has a list,
        even one that could not be opened (an empty one). Sockets, fifos and devices are left out
        without being opened.
    """
    found: Listings = {"": []}
    stack = [(os.dup(root_fd), "")]
    try:
        with collector_paused():
            while stack:
                fd, directory = stack.pop()
                try:
                    found[directory] = _listing(fd, directory, exclude, temp, warn, stack, found)
                finally:
                    os.close(fd)
    finally:
        for fd, _ in stack:
            os.close(fd)
    return found


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector off for a walk: a walk makes tens of thousands of tuples and lists
    and no cycles, and the collections they would set off cost ~6 % of its work (measured)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _listing(
    fd: int,
    directory: str,
    exclude: Exclude,
    temp: Optional[Callable[[int, str], None]],
    warn: Optional[Callable[[str], None]],
    stack: list[tuple[int, str]],
    found: Listings,
) -> list[Entry]:
    """The entries of the open ``directory``; each directory among them is put on ``stack`` to walk
    (and in ``found``, empty until walked). One loop over the listing itself, no call per entry that
    can be saved: a walk runs it for every file of the tree, on both sides of every start. What is
    done to the directory (opening a child, removing a stale temporary file) waits until it is read."""
    base = f"{directory}/" if directory else ""
    entries: list[Entry] = []
    children: list[tuple[str, str]] = []
    temps: list[str] = []
    try:
        with os.scandir(fd) as listing:
            for item in listing:
                name = item.name
                if name.startswith(TEMP_PREFIX):
                    temps.append(name)
                    continue
                path = f"{base}{name}"
                # An ASCII name (the common case) is UTF-8 already, with as many bytes as characters.
                if not (len(name) <= NAME_MAX if name.isascii() else _travels(name, path, warn)):
                    continue
                try:
                    mode = (st := item.stat(follow_symlinks=False)).st_mode
                except OSError:
                    continue  # vanished since the listing: the next scan or event catches up
                if stat.S_ISREG(mode):
                    if not exclude(path, False):
                        executable = bool(mode & stat.S_IXUSR)
                        entries.append(make_entry(Entry, (path, FILE, st.st_size, st.st_mtime_ns, executable, "")))
                elif stat.S_ISDIR(mode):
                    if not exclude(path, True):
                        entries.append(make_entry(Entry, (path, DIR, 0, 0, False, "")))
                        children.append((name, path))
                elif stat.S_ISLNK(mode) and not exclude(path, False):
                    entries.append(Entry(path, LINK, target=_readlink(name, fd)))
    except OSError as exc:
        if warn is not None:
            warn(f"{escaped(base) or '.'}: cannot list it ({exc.strerror}); what it holds is not synced")
        return []
    _after_reading(fd, children, temps, temp, warn, stack, found)
    return entries


def _after_reading(
    fd: int,
    children: list[tuple[str, str]],
    temps: list[str],
    temp: Optional[Callable[[int, str], None]],
    warn: Optional[Callable[[str], None]],
    stack: list[tuple[int, str]],
    found: Listings,
) -> None:
    """A directory just read: each (name, path) of its subdirectories opened and put on ``stack`` to
    walk, then ``temp`` told of each of the agent's temporary files in it."""
    for name, path in children:
        found[path] = []
        child = _open_child(name, fd, path, warn)
        if child is not None:
            stack.append((child, path))
    if temp is not None:
        for name in temps:
            temp(fd, name)


def _travels(name: str, path: str, warn: Optional[Callable[[str], None]]) -> bool:
    """A name that is not ASCII can cross in the protocol: UTF-8, and within the length limit."""
    if not is_utf8(name):
        if warn is not None:
            warn(f"{escaped(path)}: the name is not UTF-8; not synced")
        return False
    return len(name.encode()) <= NAME_MAX


def is_utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def escaped(path: str) -> str:
    """A path with its undecodable bytes shown as \\xNN: printable, and unambiguous."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def list_dir(fd: int, failed: Callable[[OSError], None]) -> list[tuple[str, Optional[os.stat_result]]]:
    """(name, lstat) of each entry of the open directory ``fd``; the stat is None for an entry that
    vanished between the listing and its stat. A listing that fails is ``failed(exc)`` and empty."""
    items: list[tuple[str, Optional[os.stat_result]]] = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    items.append((entry.name, entry.stat(follow_symlinks=False)))
                except OSError:
                    items.append((entry.name, None))
    except OSError as exc:
        failed(exc)
        return []
    return items


def _readlink(name: str, fd: int) -> str:
    try:
        return os.readlink(name, dir_fd=fd)
    except OSError:
        return ""


def _open_child(name: str, fd: int, path: str, warn: Optional[Callable[[str], None]]) -> Optional[int]:
    try:
        return os.open(name, _OPEN_DIR, dir_fd=fd)
    except OSError as exc:
        if warn is not None and exc.errno != errno.ENOENT:
            warn(f"{escaped(path)}/: cannot open it ({exc.strerror}); what it holds is not synced")
        return None


def file_hash(parent_fd: int, name: str) -> Optional[str]:
    """sha256 of a regular file, or None if it is not one or cannot be read.

    Opened without following a symlink and without blocking (a FIFO would wait for a writer
    forever); only a regular file, checked on the open descriptor, is read.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError:
        return None
    digest = hashlib.sha256()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        os.set_blocking(fd, True)
        while chunk := os.read(fd, HASH_CHUNK):
            digest.update(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return digest.hexdigest()
