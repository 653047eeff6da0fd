"""One sync session in the pod: the laptop's requests, each handled in order, against the tree
under DIR.

A session: the agent receives the exclude globs, sends its directory digests, the listings the
laptop asks for and the hashes it asks for, then applies batches. A batch is staged out of sight
and committed all at once or not at all (batch.py); the reply lists what was skipped or failed,
then ``done`` says which. Around a commit the agent tells the supervisor that watches this
directory (announce.py) that a batch begins and what it committed (notices.py): one restart per
batch, and none for a batch that failed.

Every path is checked by paths.check_path and resolved without following pod-side symlinks;
every message was checked by schema.check_message before it gets here, so each handler takes its
own type (messages.py). The process around this (stdio, heartbeat, forwarded ports) is agent.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

from ...host.control_wire import control_dir, directory_key
from ..shared.excludes import excluder
from ..shared.listing import digest_items
from ..shared.manifest import Exclude, Listings, listings
from ..shared.messages import BeginBatch, Commit, Delete, FromAgent, Hash, ListDirs, Op, Stamp, Start
from ..shared.paths import check_link_target, check_path
from ..shared.protocol import CHUNK_ITEMS, ChannelData, Data, Frame, chunks
from ..shared.schema import ProtocolError
from .announce import Announcement, LogFeed
from .batch import Batch, failures, skips
from .installs import Installer, rules_from_wire
from .notices import Notices, is_time
from .root import Root, temp_name
from .tree import file_hashes, remove_stale_temp, stamp

OWED_BATCH = 0  # the batch id of an install an earlier session owed: the laptop numbers its batches from 1
ON_CHANGE_MAX = 100  # onChange rules in one start message
ON_CHANGE_TIMEOUT_MAX = 3600  # seconds, as setup/values.py MAX_DURATION_SECONDS
OP_KEYS = {  # exactly these keys per op: anything else is a peer that speaks another protocol
    "dir": {"t", "op", "path"},
    "link": {"t", "op", "path", "target"},
    "file": {"t", "op", "path", "size", "exec", "mtime"},
}


class Agent:
    """One session's state; ``handle`` takes each frame from the laptop side in order."""

    def __init__(self, root: Root, env: Mapping[str, str], send: Callable[[Any], None]) -> None:
        self.root = root
        self.env = env
        self.send: Callable[[FromAgent], None] = send  # the link: agent.Stdio.send
        self.notices = Notices(send)
        self.exclude: Exclude = lambda path, is_dir: False
        self.batch: Optional[Batch] = None
        self.counter = 0
        self.listings: Listings = {}  # the last start's walk, by directory, until compared
        owed = control_dir(env) / f"install-owed-{directory_key(root.path)}.json"
        self.installer = Installer(root.path, self.notices.say, self.notices.committed, owed)
        self.logs: Optional[LogFeed] = None  # --logs: the app's output, from the supervisors

    # -- dispatch ----------------------------------------------------------------------------------
    def handle(self, frame: Frame) -> None:
        if isinstance(frame, Data):
            self._data(frame.chunk)
            return
        if isinstance(frame, ChannelData):
            raise ProtocolError("channel bytes are for the channel table, not the sync")
        message = frame  # checked against schema.MESSAGES by the FrameReader that decoded it
        kind = message["t"]
        handlers: dict[str, Callable[[Any], None]] = {  # each takes its own type: schema.py checked the message
            "start": self._start,
            "list": self._list,
            "compared": self._drop_walk,
            "hash": self._hash,
            "stamp": self._stamp,
            "batch": self._begin,
            "delete": self._delete,
            "op": self._op,
            "commit": self._commit,
        }
        handler = handlers.get(kind)
        if handler is None:
            raise ProtocolError(f"{kind!r} is not a message the agent takes")
        if kind in ("delete", "op", "commit") and self.batch is None:
            raise ProtocolError(f"{kind!r} outside a batch")
        if self.batch is not None and self.batch.upload is not None:
            raise ProtocolError(f"{kind!r} before the file {self.batch.upload.path!r} was complete")
        if kind in ("hash", "stamp", "batch"):
            self._drop_walk(message)  # the comparison is over, even if the laptop did not say so
        handler(message)

    def abort(self) -> None:
        """The session ended mid-batch: remove what was staged, so nothing partial stays."""
        batch, self.batch = self.batch, None
        if batch is not None:
            batch.abort()

    def _temps(self) -> Iterator[str]:
        while True:
            self.counter += 1
            yield temp_name(os.getpid(), self.counter)

    # -- manifest and hashes -----------------------------------------------------------------------
    def _start(self, message: Start) -> None:
        """Walk the whole tree (the laptop walks its own meanwhile), then send each directory's digest."""
        self.exclude = excluder(self.root.path, message["exclude"])
        self.installer.rules = rules_from_wire(_on_change(message.get("onChange")))
        if message.get("logs") is True and self.logs is None:
            self.logs = LogFeed(self.root.path, self.env, self.notices.log)
            self.logs.start()
        self.listings = listings(self.root.fd, self.exclude, remove_stale_temp, self._warn)
        for chunk in chunks(digest_items(self.listings)):
            self.send({"t": "dirs", "items": chunk})
        self.send({"t": "dirs-end", "count": len(self.listings)})
        if self.installer.resume():  # after the walk: the install writes node_modules meanwhile
            self.installer.take(OWED_BATCH, Announcement(self.root.path, self.env), [], [])

    def _drop_walk(self, message: object) -> None:
        """The laptop has compared (``compared``, not answered): the walk's entries are not needed any more."""
        self.listings = {}

    def _list(self, message: ListDirs) -> None:
        """The entries of the directories whose digests differed, from the walk of ``start``."""
        directories = message["dirs"]
        if len(directories) > CHUNK_ITEMS:
            raise ProtocolError(f"list: more than {CHUNK_ITEMS} directories in one request")
        count = 0
        for chunk in chunks(entry.to_wire() for directory in directories for entry in self.listings.get(directory, [])):
            self.send({"t": "manifest", "entries": chunk})
            count += len(chunk)
        self.send({"t": "manifest-end", "count": count})

    def _warn(self, message: str) -> None:
        self.send({"t": "warn", "message": message})

    def _hash(self, message: Hash) -> None:
        paths = message["paths"]
        if len(paths) > CHUNK_ITEMS:
            raise ProtocolError(f"hash: more than {CHUNK_ITEMS} paths in one request")
        self.send({"t": "hashes", "hashes": file_hashes(self.root, [(path, check_path(path)) for path in paths])})

    def _stamp(self, message: Stamp) -> None:
        """Give files whose content matched the laptop's mtime, so the next start's size-and-mtime check
        settles them without hashing. Best effort: a file that cannot be stamped is hashed next time.
        The supervisor is told, so that an mtime alone is not taken for an edit and restarts nothing."""
        items = message["items"]
        if len(items) > CHUNK_ITEMS:
            raise ProtocolError(f"stamp: more than {CHUNK_ITEMS} items in one request")
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and is_time(item[1])):
                raise ProtocolError(f"stamp: malformed item {str(item)[:80]}")
        wanted = [(check_path(path), mtime_ns) for path, mtime_ns in items]
        announcement = Announcement(self.root.path, self.env)
        stamped = [parts for parts, mtime_ns in wanted if stamp(self.root, parts, mtime_ns)]
        announcement.stamped([f"{self.root.path}/{'/'.join(parts)}" for parts in stamped])

    # -- a batch -----------------------------------------------------------------------------------
    def _begin(self, message: BeginBatch) -> None:
        if self.batch is not None:
            raise ProtocolError("a batch began inside another")
        self.batch = Batch(message["id"], self.root, self._temps(), keep=self.exclude)

    def _delete(self, message: Delete) -> None:
        assert self.batch is not None
        for path in message["paths"]:
            check_path(path)
        self.batch.delete(message["paths"])

    def _op(self, message: Op) -> None:
        assert self.batch is not None
        op, path = message["op"], message["path"]
        keys = OP_KEYS.get(op)
        if keys is None:
            raise ProtocolError(f"unknown op {op[:40]!r}")
        if set(message) != keys:
            raise ProtocolError(f"{op} {path[:80]!r}: needs exactly {', '.join(sorted(keys - {'t', 'op'}))}")
        parts = check_path(path)
        if op == "dir":
            self.batch.make_dir(path, parts)
        elif op == "link":
            self.batch.stage_link(path, parts, check_link_target(path, message["target"]))
        else:
            self.batch.stage_file(path, parts, message["size"], message["exec"], message["mtime"])

    def _data(self, chunk: bytes) -> None:
        upload = self.batch.upload if self.batch else None
        if upload is None or len(chunk) > upload.remaining:
            raise ProtocolError("file data that no file op announced")
        assert self.batch is not None
        self.batch.write(chunk)

    # -- commit ------------------------------------------------------------------------------------
    def _commit(self, message: Commit) -> None:
        batch = self.batch
        assert batch is not None
        if message["id"] != batch.ident:
            raise ProtocolError("commit for another batch")
        self.batch = None
        try:
            # The supervisor holds its own restarts from before the first rename; a batch that
            # fails closes the channel without a commit, which releases the hold: no restart.
            announcement = Announcement(self.root.path, self.env) if not batch.failed else None
            try:
                outcome = batch.commit()
            except BaseException:
                if announcement is not None:
                    announcement.close()
                raise
            if announcement is not None and not outcome.committed:
                announcement.close()
            for lines in chunks(skips(batch)):
                self.send({"t": "skipped", "id": batch.ident, "items": lines})
            wire = ([f.path, f.error, f.reason] for f in failures(batch))
            for items in chunks(wire):
                self.send({"t": "failed", "id": batch.ident, "items": items})
        finally:
            batch.close()
        self.send({"t": "done", "id": batch.ident, "ok": outcome.committed})
        if announcement is not None and outcome.committed:
            changed = [f"{self.root.path}/{path}" for path in outcome.changed]
            if not self.installer.take(batch.ident, announcement, changed, list(outcome.changed)):
                self.notices.committed(batch.ident, announcement, changed, None)


def _on_change(value: Any) -> Optional[list[Any]]:
    """``start``'s onChange rules, checked: None, or [[paths...], run or null, timeout] each."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > ON_CHANGE_MAX:
        raise ProtocolError("start: onChange must be a list of rules")
    for rule in value:
        if not (
            isinstance(rule, list)
            and len(rule) == 3
            and isinstance(rule[0], list)
            and rule[0]
            and all(isinstance(path, str) for path in rule[0])
            and (rule[1] is None or (isinstance(rule[1], str) and rule[1].strip()))
            and type(rule[2]) in (int, float)
            and 0 < rule[2] <= ON_CHANGE_TIMEOUT_MAX
        ):
            raise ProtocolError(f"start: malformed onChange rule {str(rule)[:80]}")
    return value
