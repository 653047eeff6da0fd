"""The half of a sync session that changes the pod: batches, stamps, installs, and what the
supervisor is told.

A batch is staged out of sight and committed all at once or not at all (batch.py); the reply
lists what was skipped or failed, then ``done`` says which. Around a commit the agent tells the
supervisor that watches this directory (announce.py) that a batch begins and what it committed
(notices.py): one restart per batch, and none for a batch that failed. The installs a change
calls for (installs.py) run here too, and ``--logs`` feeds the app's output back.

handlers.py builds this only once the pod's digests are on their way: its modules are most of the
agent's imports, and a start that finds nothing to change never needs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

from ...host.control_wire import control_dir, directory_key
from ..shared.manifest import Exclude
from ..shared.messages import BeginBatch, Commit, Delete, FromAgent, Op, Stamp
from ..shared.paths import check_link_target, check_path
from ..shared.protocol import CHUNK_ITEMS, chunks
from ..shared.schema import ProtocolError
from .announce import Announcement, LogFeed
from .batch import Batch, failures, skips
from .installs import Installer, rules_from_wire
from .notices import Notices, is_time
from .root import Root, temp_name
from .tree import stamp as stamp_file

OWED_BATCH = 0  # the batch id of an install an earlier session owed: the laptop numbers its batches from 1
OP_KEYS = {  # exactly these keys per op: anything else is a peer that speaks another protocol
    "dir": {"t", "op", "path"},
    "link": {"t", "op", "path", "target"},
    "file": {"t", "op", "path", "size", "exec", "mtime"},
}


class Applier:
    """The batch in progress, the installer and the log feed of one session."""

    def __init__(self, root: Root, env: Mapping[str, str], send: Callable[[Any], None]) -> None:
        self.root = root
        self.env = env
        self.send: Callable[[FromAgent], None] = send  # the link: agent.Stdio.send
        self.notices = Notices(send)
        self.batch: Optional[Batch] = None
        self.keep: Exclude = lambda path, is_dir: False  # what the last start excluded: a batch leaves it be
        self.counter = 0
        owed = control_dir(env) / f"install-owed-{directory_key(root.path)}.json"
        self.installer = Installer(root.path, self.notices.say, self.notices.committed, owed)
        self.logs: Optional[LogFeed] = None  # --logs: the app's output, from the supervisors

    def started(self, exclude: Exclude, on_change: Optional[list[Any]], logs: bool) -> None:
        """``start``'s rest, after the walk: the excludes, the install rules, the log feed, an install still owed."""
        self.keep = exclude
        self.installer.rules = rules_from_wire(on_change)
        if logs and self.logs is None:
            self.logs = LogFeed(self.root.path, self.env, self.notices.log)
            self.logs.start()
        if self.installer.resume():  # after the walk: the install writes node_modules meanwhile
            self.installer.take(OWED_BATCH, Announcement(self.root.path, self.env), [], [])

    def handle(self, kind: str, message: Any) -> None:
        handlers: dict[str, Callable[[Any], None]] = {  # each takes its own type: schema.py checked the message
            "stamp": self.stamp,
            "batch": self.begin,
            "delete": self.delete,
            "op": self.op,
            "commit": self.commit,
        }
        handlers[kind](message)

    def check(self, kind: str) -> None:
        """Refuse any message while a file's bytes are still owed."""
        if self.batch is not None and self.batch.upload is not None:
            raise ProtocolError(f"{kind!r} before the file {self.batch.upload.path!r} was complete")

    def close(self) -> None:
        """The session ended: remove what a batch staged (nothing partial stays), stop the installer
        and the log feed."""
        batch, self.batch = self.batch, None
        if batch is not None:
            batch.abort()
        self.installer.stop()
        if self.logs is not None:
            self.logs.stop()

    def _temps(self) -> Iterator[str]:
        while True:
            self.counter += 1
            yield temp_name(os.getpid(), self.counter)

    def stamp(self, message: Stamp) -> None:
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
        stamped = [parts for parts, mtime_ns in wanted if stamp_file(self.root, parts, mtime_ns)]
        announcement.stamped([f"{self.root.path}/{'/'.join(parts)}" for parts in stamped])

    # -- a batch -----------------------------------------------------------------------------------
    def begin(self, message: BeginBatch) -> None:
        if self.batch is not None:
            raise ProtocolError("a batch began inside another")
        self.batch = Batch(message["id"], self.root, self._temps(), keep=self.keep)

    def delete(self, message: Delete) -> None:
        assert self.batch is not None
        for path in message["paths"]:
            check_path(path)
        self.batch.delete(message["paths"])

    def op(self, message: Op) -> None:
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

    def data(self, chunk: bytes) -> None:
        upload = self.batch.upload if self.batch else None
        if upload is None or len(chunk) > upload.remaining:
            raise ProtocolError("file data that no file op announced")
        assert self.batch is not None
        self.batch.write(chunk)

    # -- commit ------------------------------------------------------------------------------------
    def commit(self, message: Commit) -> None:
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
