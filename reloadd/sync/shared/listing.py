"""Directory digests: how a (re)connection finds what differs without sending every entry.

Both sides walk their tree. Each directory's listing (the entries directly in it: name, kind,
size, mtime, executable bit, link target) is hashed in name order into one short digest. The
agent sends one ``[directory, digest]`` item per directory; the laptop compares them with its
own and asks for the entries of only the directories whose digests differ. The entries of a
directory whose digests agree are equal on both sides, so they never cross the wire and never
become objects on the laptop: an unchanged 100,000-file tree costs a few thousand short items
instead of 100,000 manifest entries encoded, sent, decoded and compared.

A directory the pod does not have is not asked for (everything in it is sent); a directory
only the pod has shows up in its parent's listing, which then differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from .manifest import Entry

DIGEST_BYTES = 16  # blake2b-128: a collision needs ~2**64 directories, and it is fast on short inputs
ROOT = ""  # the synced directory itself, in listings and digests


def _fields(items: list[Entry], cut: int) -> list[str]:
    # Six fields per entry, none of which can hold a NUL byte (names and link targets cannot):
    # joined with NULs the text is unambiguous. The name is the path past ``cut`` (its directory's
    # length). One f-string per entry and no call: a walk's every entry passes here.
    return [
        f"{path[cut:]}\0{kind}\0{size}\0{mtime_ns}\0{'x' if executable else '-'}\0{target}"
        for path, kind, size, mtime_ns, executable, target in items
    ]


def _digest(fields: list[str]) -> str:
    # Names are unique in a directory and no name holds a NUL, so sorting the joined texts sorts
    # by name, as both sides must.
    fields.sort()
    text = "\0".join(fields)
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=DIGEST_BYTES).hexdigest()


def digests(groups: dict[str, list[Entry]]) -> dict[str, str]:
    """Each directory's digest, by directory path (``ROOT`` for the top)."""
    return {
        directory: _digest(_fields(items, len(directory) + 1 if directory else 0))
        for directory, items in groups.items()
    }


def to_ask(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """The directories both sides have whose digests differ: the only listings worth sending."""
    return sorted(directory for directory, digest in mine.items() if theirs.get(directory, digest) != digest)


def differing(mine: dict[str, str], theirs: dict[str, str]) -> set[str]:
    """The directories whose entries must be compared: those that differ, and those the pod lacks."""
    return {directory for directory, digest in mine.items() if theirs.get(directory) != digest}


def digest_items(groups: dict[str, list[Entry]]) -> Iterator[list[Any]]:
    """The agent's ``dirs`` items: ``[directory, digest]``."""
    for directory, digest in digests(groups).items():
        yield [directory, digest]


def parse_digests(items: list[Any]) -> dict[str, str]:
    """``dirs`` items from the peer; a malformed one raises ValueError."""
    found = {}
    for item in items:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item)):
            raise ValueError(f"malformed directory digest {str(item)[:80]}")
        found[item[0]] = item[1]
    return found
