"""The hostile-path gate: every path the pod side is sent, and every symlink target either side
reads, is checked here first.

The agent trusts nothing it is sent. A path must be relative and already normal (no ``..``,
no ``.``, no empty part, no NUL); the pod side then resolves it one component at a time from a
descriptor of the sync root (sync/pod/root.py), so a symlink in the pod is never followed.
"""

from __future__ import annotations

import posixpath

from .schema import ProtocolError

NAME_MAX = 255  # bytes in one path component (Linux)
PATH_MAX = 4096  # bytes in a whole path (Linux)
LINK_TARGET_MAX = 1024  # a relative symlink target longer than this is not a project's symlink
# Temporary names the agent writes before a batch is complete (sync/pod/root.py), which no path
# sent may use. reloadd's watcher treats this pattern as a temporary file (setup/matching.py
# TEMP_FILE_PATTERNS), so they never restart the app.
TEMP_PREFIX = ".reloadd-sync."
TEMP_SUFFIX = ".tmp"


class PathRefused(ProtocolError):
    """A path the pod side will not touch: the session ends with a message naming it and saying why."""


def check_path(path: object) -> tuple[str, ...]:
    """Check one path sent by the laptop side and split it into components.

    Args:
        path: what the message carried (anything: it is untrusted).

    Returns:
        The components. Raises PathRefused for anything but a plain relative path inside the root.
    """
    if not isinstance(path, str) or not path:
        raise PathRefused(f"path {path!r}: not a non-empty string")
    if "\0" in path:
        raise PathRefused(f"path {path!r}: contains a NUL byte")
    if path[0] == "/":
        raise PathRefused(f"path {path!r}: absolute")
    # A character is at most 4 bytes: shorter texts need no encoding to know they fit (a million deletes).
    if len(path) * 4 > PATH_MAX and len(path.encode(errors="surrogateescape")) > PATH_MAX:
        raise PathRefused(f"path {path[:40]!r}...: longer than {PATH_MAX} bytes")
    parts = tuple(path.split("/"))
    if "" in parts or "." in parts or ".." in parts:
        part = next(part for part in parts if part in ("", ".", ".."))
        raise PathRefused(f"path {path!r}: not normalised ({part or 'empty'!r} component)")
    if len(path) * 4 > NAME_MAX or TEMP_PREFIX in path:
        for part in parts:
            if len(part.encode(errors="surrogateescape")) > NAME_MAX:
                raise PathRefused(f"path {path!r}: a component is longer than {NAME_MAX} bytes")
            if part.startswith(TEMP_PREFIX):
                raise PathRefused(f"path {path!r}: uses the agent's temporary-file prefix")
    return parts


def check_link_target(path: str, target: object) -> str:
    """A symlink is kept only if relative and resolving inside the root (checked as text, never followed)."""
    if not isinstance(target, str) or not target or "\0" in target:
        raise PathRefused(f"symlink {path!r}: bad target {target!r}")
    if target.startswith("/"):
        raise PathRefused(f"symlink {path!r} -> {target!r}: absolute target")
    if len(target) > LINK_TARGET_MAX:
        raise PathRefused(f"symlink {path!r}: target longer than {LINK_TARGET_MAX} characters")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        raise PathRefused(f"symlink {path!r} -> {target!r}: points outside the synced directory")
    return target
