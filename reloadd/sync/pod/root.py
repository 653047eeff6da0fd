"""The pod's tree under DIR, reached only through a descriptor of it: a path the gate
(sync/shared/paths.py) let through is resolved one component at a time, opening each directory
with ``O_NOFOLLOW``: a symlink that exists in the pod (``lib -> /etc``) is never followed, so a
write cannot land outside the root. This is how ``kubectl cp``'s four path-traversal CVEs of
2019 were finally closed (by refusing symlinks); ``openat`` one component at a time does the same
without a window between a check and the use. Also here: which directories are never an app's,
the temporary names of a batch, and removing a tree without following links.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from typing import Callable, Optional

from ...errors import ReloaddError
from ..shared.paths import TEMP_PREFIX, TEMP_SUFFIX

NAME_MAX = 255  # bytes in one path component (Linux)
PATH_MAX = 4096  # bytes in a whole path (Linux)
LINK_TARGET_MAX = 1024  # a relative symlink target longer than this is not a project's symlink
FILE_MODE = 0o644  # what a synced file gets; the executable bit alone is carried over
EXEC_MODE = 0o755
DIR_MODE = 0o755
# Temporary names: the agent's pid and a counter between the gate's TEMP_PREFIX and TEMP_SUFFIX.
_TEMP_NAME = re.compile(r"\.reloadd-sync\.(\d+)\.\d+\.tmp")
# Directories no sync may write into: the container's system, not an app.
SYSTEM_DIRS = frozenset(
    {"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
     "/sbin", "/sys", "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/local/bin", "/usr/sbin", "/var"}
)  # fmt: skip
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def check_root(directory: str) -> str:
    """The agent's directory: absolute, existing, and not the system's. Returns its real path."""
    real = os.path.realpath(directory)
    if real in SYSTEM_DIRS:
        raise ReloaddError(f"agent: refusing to sync into {real}: a system directory, not an app's")
    if not os.path.lexists(real):
        raise ReloaddError(f"agent: {directory} does not exist (the pod's app directory: --to names it)")
    if not os.path.isdir(real):
        raise ReloaddError(f"agent: {directory} is not a directory")
    return real


def file_mode(executable: bool) -> int:
    """Never setuid, setgid or sticky: the executable bit is the only one carried over."""
    return EXEC_MODE if executable else FILE_MODE


def temp_name(batch: int, index: int) -> str:
    return f"{TEMP_PREFIX}{batch}.{index}{TEMP_SUFFIX}"


def temp_owner(name: str) -> Optional[int]:
    """The agent pid written into a temporary name, or None when ``name`` is not one of ours."""
    match = _TEMP_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


class Blocked(Exception):
    """A component of the parent chain is not a directory: why (a file or a symlink is in the way)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Root:
    """The sync root held open as a descriptor; every operation goes through it with ``dir_fd``."""

    def __init__(self, directory: str) -> None:
        self.path = directory
        self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def open_dir(self, parts: tuple[str, ...], create: bool) -> int:
        """Open the directory ``parts`` under the root, never following a symlink; a new fd.

        Raises Blocked when a component is a symlink or not a directory, FileNotFoundError when
        one is missing and ``create`` is false.
        """
        fd = os.dup(self.fd)
        try:
            for part in parts:
                fd = _step(fd, part, create)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _step(fd: int, part: str, create: bool) -> int:
    """From the open directory ``fd`` to its child ``part`` (closing ``fd``)."""
    try:
        child = os.open(part, _OPEN_DIR, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
        os.mkdir(part, DIR_MODE, dir_fd=fd)
        child = os.open(part, _OPEN_DIR, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = kind_in_the_way(fd, part)
            raise Blocked(f"{kind} is in the way") from None
        raise
    os.close(fd)
    return child


def kind_in_the_way(fd: int, name: str) -> str:
    try:
        mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
    except OSError:
        return "something"
    return "a symlink" if stat.S_ISLNK(mode) else "a file"


def remove_tree(
    parent: int,
    name: str,
    removed: Optional[list[str]] = None,
    prefix: str = "",
    keep: Optional[Callable[[str, bool], bool]] = None,
    shown: Optional[str] = None,
) -> None:
    """Remove ``name`` in the open directory ``parent``: a file or symlink is unlinked, a directory
    emptied through descriptors first (never following a symlink inside it).

    Args:
        parent: the open directory holding ``name``.
        name: one component.
        removed: if given, receives ``prefix + path`` of every file and symlink removed.
        prefix: what ``removed`` entries start with (the relative path of ``parent`` and a slash).
        keep: (``prefix + path``, is a directory) -> leave it, and so the directories above it, in
            place (excluded paths such as node_modules are never deleted).
        shown: the name ``removed`` and ``keep`` use for ``name`` (a backup stands for the path it replaced).
    """
    shown = name if shown is None else shown
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if keep is not None and keep(prefix + shown, stat.S_ISDIR(mode)):
        return
    if not stat.S_ISDIR(mode):
        os.unlink(name, dir_fd=parent)
        if removed is not None:
            removed.append(prefix + shown)
        return
    fd = os.open(name, _OPEN_DIR, dir_fd=parent)
    try:
        for child in list(_names(fd)):
            remove_tree(fd, child, removed, f"{prefix}{shown}/", keep)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent)
    except OSError as exc:
        if keep is None or exc.errno != errno.ENOTEMPTY:
            raise


def _names(fd: int) -> Iterator[str]:
    with os.scandir(fd) as entries:
        for entry in entries:
            yield entry.name
