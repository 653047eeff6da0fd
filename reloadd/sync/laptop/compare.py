"""What the laptop does to make the pod's tree match its own: for the entries compared (those of
the directories whose digests differ, sync/shared/listing.py), what to send, compare by hash,
and delete. The laptop decides; the pod only answers and applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..shared.manifest import FILE, LINK, Manifest


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
