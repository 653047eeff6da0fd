"""The pod's tree outside a batch: file hashes, mtime stamps, and what killed agents left behind.

Each goes through the root's descriptor (paths.Root) and never follows a pod-side symlink; a
path that cannot be read or stamped is an answer (None, False), never an error: the laptop
compares by hash, and hashes a file that was not stamped again next time.
"""

from __future__ import annotations

import os
from typing import Optional

from ..shared.manifest import file_hash
from .root import Blocked, Root, remove_tree, temp_owner


def file_hashes(root: Root, paths: list[tuple[str, tuple[str, ...]]]) -> dict[str, Optional[str]]:
    """Each (path, its checked parts)'s content hash; None: not a readable file."""
    hashes: dict[str, Optional[str]] = {}
    for path, parts in paths:
        try:
            parent = root.open_dir(parts[:-1], create=False)
        except (OSError, Blocked):
            hashes[path] = None
            continue
        try:
            hashes[path] = file_hash(parent, parts[-1])
        finally:
            os.close(parent)
    return hashes


def stamp(root: Root, parts: tuple[str, ...], mtime_ns: int) -> bool:
    """Give the file at ``parts`` this mtime (not following a symlink); False if it cannot be."""
    try:
        parent = root.open_dir(parts[:-1], create=False)
    except (OSError, Blocked):
        return False
    try:
        os.utime(parts[-1], ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)
        return True
    except OSError:
        return False
    finally:
        os.close(parent)


def remove_stale_temp(fd: int, name: str) -> None:
    """A temporary file, directory or backup of an agent that was killed: nobody will rename it now."""
    owner = temp_owner(name)
    if owner is None or owner == os.getpid() or _process_exists(owner):
        return
    try:
        remove_tree(fd, name)
    except OSError:
        pass


def _process_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (EPERM: it does, as another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
