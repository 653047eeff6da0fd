"""A (re)connection's comparison of the laptop's tree with the pod's: what to send, delete and stamp.

The agent gets the excludes first (``start``), so it walks the pod's tree while this side walks its
own. Then the two compare directory digests (listing.py), fetch the listings of the directories
that differ, and hash the files of the same size with another mtime: those with the same content
only take the laptop's mtime (``stamp``); the others are sent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from ...output import out
from ...setup.settings import Settings
from ..shared import listing
from ..shared.manifest import DIR, Entry, Listings, Manifest
from ..shared.protocol import chunks
from . import compare
from .halts import MassDeleteHold
from .local import LocalTree
from .localview import LocalView
from .options import SyncOptions
from .progress import LINES_SHOWN, Phases
from .sender import REPLY_TIMEOUT
from .session import Disconnected, Session

if TYPE_CHECKING:
    from ..shared.messages import Reply, Start


def start_message(options: SyncOptions, settings: Settings, globs: list[str]) -> Start:
    """What the agent needs before its walk: the excludes, and what it should do after each batch."""
    message: Start = {"t": "start", "exclude": globs}
    if options.logs or (options.logs is None and settings.sync.logs):
        message["logs"] = True
    rules = settings.sync.on_change
    if rules is not None:  # else the pod's default: the project's package.json and lockfiles
        message["onChange"] = [[rule.paths, rule.run, rule.timeout] for rule in rules]
    return message


def ask_start(session: Session, message: Start) -> bool:
    """Send ``start`` (the excludes); False if the agent already stopped (its first frame says why)."""
    try:
        session.send(message)
        session.flush()
    except Disconnected:
        return False
    return True


class Reconcile:
    """One comparison over ``session``, once both sides walked; the agent's warnings are shown, the first ones."""

    def __init__(self, session: Session, view: LocalView, delete: bool, hold: MassDeleteHold) -> None:
        self.session = session
        self.view = view
        self.delete = delete  # --delete: pod-only files go
        self.hold = hold
        self.pod_warnings = 0  # the agent's warnings in this (re)connection: the first ones are shown

    def run(self, local: Manifest, groups: Listings, timer: Phases) -> tuple[list[str], list[str]]:
        """Compare by directory digests, fetch the listings that differ, stamp the files whose content
        agrees; returns (the paths to send, the paths to delete). ``local`` is this side's walk by
        path, ``groups`` the same walk by directory (LocalView.walk)."""
        session = self.session
        mine = listing.digests(groups)
        theirs = self._remote_digests()
        timer.mark("pod's walk")
        asked = listing.to_ask(mine, theirs)
        remote = self._listings(asked)
        compared = {entry.path: entry for d in listing.differing(mine, theirs) for entry in groups[d]}
        result = compare.diff(compared, remote, self.delete)
        if result.delete and not self.hold.allowed:
            # Whether the deletes remove too much is judged on the pod's whole tree: only now, with
            # something to delete, are the listings that the digests made unnecessary fetched too.
            remote.update(self._listings(sorted(set(theirs) - set(asked))))
        deletes = self.hold.resync_deletes(local, remote, result.delete)
        session.send({"t": "compared"})  # the agent may drop its walk now (it is not answered)
        timer.mark("compare")
        differing = self._differing(result.compare)
        self._stamp(local, sorted(set(result.compare) - set(differing)))
        timer.mark("hash")
        return result.send + differing, deletes

    def _listings(self, directories: list[str]) -> Manifest:
        """The pod's entries in ``directories``, asked for in chunks."""
        remote: Manifest = {}
        for chunk in chunks(directories):
            self.session.send({"t": "list", "dirs": chunk})
            remote.update(self._remote_manifest())
        return remote

    def _remote_digests(self) -> dict[str, str]:
        """The pod's directory digests, chunk by chunk (the agent's warnings come first, from its walk)."""
        theirs: dict[str, str] = {}
        for items in self._replies("dirs", "start"):
            try:
                theirs.update(listing.parse_digests(items))
            except ValueError as exc:
                raise Disconnected(f"bad data from the agent: {exc}") from None
        return theirs

    def _replies(self, kind: Literal["dirs", "manifest"], asked: str) -> Iterator[list[Any]]:
        """The chunks of one streamed answer (their items, or entries), up to its ``KIND-end`` message;
        anything else is a broken link."""
        while True:
            message = self._receive_shown()
            if message["t"] == f"{kind}-end":
                return
            if message["t"] != kind:
                raise Disconnected(f"unexpected answer to {asked}: {message['t']}")
            if message["t"] == "dirs":
                yield message["items"]
            elif message["t"] == "manifest":
                yield message["entries"]

    def _receive_shown(self) -> Reply:
        """The next message that is not a warning; the first warnings are shown, the rest counted."""
        name = self.session.name
        while True:
            message = self.session.receive(REPLY_TIMEOUT)
            if message["t"] != "warn":
                return message
            self.pod_warnings += 1
            if self.pod_warnings <= LINES_SHOWN:
                out.warn(f"{name}: {message['message']}")
            elif self.pod_warnings == LINES_SHOWN + 1:
                out.warn(f"{name}: more warnings like these are not shown")

    def _remote_manifest(self) -> Manifest:
        """The entries of the directories asked for, chunk by chunk."""
        remote: Manifest = {}
        for entries in self._replies("manifest", "a list request"):
            for item in entries:
                entry = Entry.from_wire(item)
                if entry is None:
                    raise Disconnected(f"bad data from the agent: malformed manifest entry {str(item)[:80]}")
                if not self.view.exclude(entry.path, entry.kind == DIR):
                    remote[entry.path] = entry
        return remote

    def _differing(self, paths: list[str]) -> list[str]:
        """Of the files whose size agrees but mtime does not, those whose content differs (or cannot be read
        on one side: never counted as in sync). Asked in chunks, so no request or reply grows with the tree."""
        differing = []
        fd = os.open(self.view.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for chunk in chunks(paths):
                self.session.send({"t": "hash", "paths": chunk})
                reply = self.session.receive(REPLY_TIMEOUT)
                if reply["t"] != "hashes":
                    raise Disconnected(f"unexpected answer to a hash request: {reply['t']}")
                theirs = reply["hashes"]
                for path in chunk:
                    mine = LocalTree.over(fd).hash(path)  # "": cannot be read here
                    if not mine or theirs.get(path) is None or mine != theirs[path]:
                        differing.append(path)
        finally:
            os.close(fd)
        return differing

    def _stamp(self, local: Manifest, same: list[str]) -> None:
        """Files with the same content but another mtime take the laptop's (the agent does not answer)."""
        for items in chunks([path, local[path].mtime_ns] for path in same):
            self.session.send({"t": "stamp", "items": items})
        if same:
            self.session.flush()  # no answer to wait for, which is what flushes otherwise
            out.detail(f"  {len(same)} file(s) with the same content: the pod takes their mtimes")
