"""Manifests (what a tree holds) and their difference: what the laptop must send, compare or delete.

Both sides scan the same way: from a directory descriptor, one level at a time, never
following a symlink, pruning excluded directories before looking inside them. An entry carries
the path, its kind, size, mtime and executable bit (and a symlink's target). The laptop wins
for every path it has; files whose size agrees but whose mtime does not are compared by
content hash before anything is sent (the agent stamps each file it writes with the laptop's
mtime, so after the first sync the quick check is enough).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .paths import NAME_MAX, TEMP_PREFIX

FILE, DIR, LINK = "f", "d", "l"
HASH_CHUNK = 1024 * 1024
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Exclude = Callable[[str, bool], bool]  # (relative path, is a directory) -> leave it out


@dataclass(frozen=True)
class Entry:
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
        if not (isinstance(size, int) and isinstance(mtime_ns, int) and isinstance(executable, bool)):
            return None
        return cls(path, kind, size, mtime_ns, executable, target)


Manifest = dict[str, Entry]


def entry_for(path: str, st: os.stat_result, target: str = "") -> Optional[Entry]:
    """The entry for a stat result; None for what a sync never carries (sockets, fifos, devices)."""
    if stat.S_ISREG(st.st_mode):
        return Entry(path, FILE, st.st_size, st.st_mtime_ns, bool(st.st_mode & stat.S_IXUSR))
    if stat.S_ISDIR(st.st_mode):
        return Entry(path, DIR)
    if stat.S_ISLNK(st.st_mode):
        return Entry(path, LINK, target=target)
    return None


def scan(root_fd: int, exclude: Exclude, temp: Optional[Callable[[int, str], None]] = None) -> Manifest:
    """Every entry under the directory ``root_fd`` (which stays open), paths relative to it.

    Args:
        root_fd: the open root directory.
        exclude: leaves a path out (and, for a directory, everything below it).
        temp: called with (directory fd, name) for each of the agent's temporary files found.

    Returns:
        The entries by relative path; sockets, fifos and devices are left out.
    """
    found: Manifest = {}
    stack = [(os.dup(root_fd), "")]
    while stack:
        fd, base = stack.pop()
        try:
            for name, st in _list(fd):
                path = f"{base}{name}"
                is_dir = stat.S_ISDIR(st.st_mode)
                if name.startswith(TEMP_PREFIX):
                    if temp is not None:
                        temp(fd, name)
                    continue
                if len(name.encode(errors="surrogateescape")) > NAME_MAX:
                    continue
                if exclude(path, is_dir):
                    continue
                target = _readlink(name, fd) if stat.S_ISLNK(st.st_mode) else ""
                entry = entry_for(path, st, target)
                if entry is None:
                    continue
                found[path] = entry
                if is_dir:
                    child = _open_child(name, fd)
                    if child is not None:
                        stack.append((child, f"{path}/"))
        finally:
            os.close(fd)
    return found


def _list(fd: int) -> list[tuple[str, os.stat_result]]:
    items = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    items.append((entry.name, entry.stat(follow_symlinks=False)))
                except OSError:
                    continue  # vanished between listing and stat: the next scan or event catches up
    except OSError:
        return []
    return items


def _readlink(name: str, fd: int) -> str:
    try:
        return os.readlink(name, dir_fd=fd)
    except OSError:
        return ""


def _open_child(name: str, fd: int) -> Optional[int]:
    try:
        return os.open(name, _OPEN_DIR, dir_fd=fd)
    except OSError:
        return None


def file_hash(parent_fd: int, name: str) -> str:
    """sha256 of a regular file (opened without following a symlink), or "" if it cannot be read."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError:
        return ""
    digest = hashlib.sha256()
    try:
        while chunk := os.read(fd, HASH_CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


@dataclass
class Diff:
    """What the laptop does to make the pod's tree match its own."""

    send: list[str] = field(default_factory=list)  # create or overwrite (parents before children)
    compare: list[str] = field(default_factory=list)  # same size, other mtime: send only if the hashes differ
    delete: list[str] = field(default_factory=list)  # remove (the topmost path of a removed tree only)

    def __bool__(self) -> bool:
        return bool(self.send or self.compare or self.delete)


def diff(local: Manifest, remote: Manifest, delete_extra: bool) -> Diff:
    """Compare the laptop's manifest with the pod's.

    Args:
        local: the laptop's tree; it wins for every path it has.
        remote: the pod's tree.
        delete_extra: remove pod-only paths too (``--delete``); otherwise they are kept.

    Returns:
        The paths to send, to compare by hash, and to delete.
    """
    result = Diff()
    for path in sorted(local):
        mine, theirs = local[path], remote.get(path)
        if theirs is None:
            result.send.append(path)
        elif theirs.kind != mine.kind:
            result.delete.append(path)  # a directory becoming a file (or a link): the old tree goes first
            result.send.append(path)
        elif mine.kind == FILE and (mine.size != theirs.size or mine.executable != theirs.executable):
            result.send.append(path)
        elif mine.kind == FILE and mine.mtime_ns != theirs.mtime_ns:
            result.compare.append(path)
        elif mine.kind == LINK and mine.target != theirs.target:
            result.send.append(path)
    if delete_extra:
        result.delete += [path for path in sorted(remote) if path not in local]
    result.delete = topmost(result.delete)
    return result


def topmost(paths: Iterable[str]) -> list[str]:
    """Drop every path that lies under another one in the list (removing a tree removes its inside)."""
    unique = set(paths)
    return sorted(path for path in unique if not _under_any(path, unique))


def _under_any(path: str, parents: set[str]) -> bool:
    parts = path.split("/")
    return any("/".join(parts[:count]) in parents for count in range(1, len(parts)))
