"""Sending batches: each one committed by the agent or rolled back whole, the paths the pod cannot
write reported and left out so the rest goes in, and the first sync cut into bounded batches."""

from __future__ import annotations

import os
import sys
import time
from typing import Optional, Union

from ...output import out
from ..shared import messages
from ..shared.manifest import DIR, LINK, Entry
from ..shared.protocol import DATA_CHUNK, chunks
from .live import Live, Sent
from .local import NotSynced
from .localview import LocalView
from .progress import LINES_SHOWN, Progress
from .session import Disconnected, Session

REPLY_TIMEOUT = 120.0  # seconds for an answer to a manifest, hash or commit request (pings keep a slow one alive)
FIRST_BATCH_FILES = 2000  # the first sync commits every this many files (or bytes, below), so a drop
FIRST_BATCH_BYTES = 64 * 1024 * 1024  # keeps what is in and the reconnect sends only the rest
HINTS = {  # what usually causes each error in a pod, after the system's own words
    "EBUSY": " (a mounted file?)",
    "EXDEV": " (a mount point?)",
    "EROFS": " (a read-only mount)",
    "ENOSPC": " (the pod's disk is full)",
    "EDQUOT": " (the pod's disk quota is used up)",
    "EACCES": " (the agent's user may not write there)",
    "EPERM": " (the agent's user may not write there)",
}
Failed = tuple[str, str, str]  # (path, errno name, reason) of a path the pod could not write


class Sender:
    """Batches to the agents, numbered across all of them; each is announced to ``live`` once committed."""

    def __init__(self, view: LocalView, live: Live) -> None:
        self.view = view
        self.live = live
        self.batch_id = 0
        self.not_written: set[str] = set()  # paths the pod could not write in the last batch

    def send_first(self, session: Session, entries: list[Entry], deletes: list[str], began: float) -> int:
        """A (re)connection's difference, in batches committed one by one (a drop keeps what is in),
        with a progress line on a terminal; returns the bytes sent."""
        progress = Progress(sys.stderr.isatty() and not out.json_lines, sum(e.kind != DIR for e in entries))
        sent = 0
        for group in _groups(entries):
            sent += self.send(session, group, deletes, progress, began)
            deletes = []
        if not entries:
            sent += self.send(session, [], deletes, progress, began)
        progress.done()
        return sent

    def send(
        self, session: Session, entries: list[Entry], deletes: list[str], progress: Optional[Progress], began: float
    ) -> int:
        """Send one batch and wait until the agent committed it; returns the bytes sent.

        The pod applies a batch completely or not at all. When some paths cannot be written there
        (a mounted file, a read-only directory), each is reported in one line, left out, and the
        rest is sent again at once, so one bad path never holds up the others. A left-out path is
        tried again when it changes (or at the next connection)."""
        total = 0
        while entries or deletes:
            sent, failed = self._try_batch(session, entries, deletes, progress)
            total += sent
            if not failed:
                files = sum(1 for entry in entries if entry.kind != DIR)
                self.live.sent(session.name, self.batch_id, Sent(began, time.monotonic(), files, len(deletes)))
                return total
            _report_failed(session, failed)
            self.not_written.update(path for path, _, _ in failed)
            kept = [entry for entry in entries if not _under_any(entry.path, self.not_written)]
            kept_deletes = [path for path in deletes if not _under_any(path, self.not_written)]
            if len(kept) == len(entries) and len(kept_deletes) == len(deletes):
                raise Disconnected("the agent rolled a batch back without naming a path it holds")
            entries, deletes, progress = kept, kept_deletes, None
        return total

    def written(self, entries: list[Entry]) -> list[Entry]:
        """The entries of the batch just sent that the pod wrote (not those it refused); forgets the refusals."""
        entries = [entry for entry in entries if not _under_any(entry.path, self.not_written)]
        self.not_written = set()
        return entries

    def _try_batch(
        self, session: Session, entries: list[Entry], deletes: list[str], progress: Optional[Progress]
    ) -> tuple[int, list[Failed]]:
        """One attempt: (bytes sent, the paths of a batch that was rolled back)."""
        self.batch_id += 1
        session.send({"t": "batch", "id": self.batch_id})
        for chunk in chunks(deletes):
            session.send({"t": "delete", "paths": chunk})
        total = 0
        for entry in entries:
            size = self._send_entry(session, entry)
            total += size
            if progress is not None and entry.kind != DIR:  # counted as "synced N files" counts them
                progress.add(size)
        session.send({"t": "commit", "id": self.batch_id})
        failed: list[Failed] = []
        while True:
            reply = _batch_reply(session.receive(REPLY_TIMEOUT), self.batch_id)
            if reply["t"] == "skipped":
                for line in reply["items"]:
                    out.warn(f"{session.name}: not written: {line}")
            elif reply["t"] == "failed":
                failed += [_failure(item) for item in reply["items"]]
            elif reply["ok"] or failed:
                return total, failed
            else:
                raise Disconnected("the agent rolled a batch back without saying why")

    def _send_entry(self, session: Session, entry: Entry) -> int:
        if entry.kind == DIR:
            session.send({"t": "op", "op": "dir", "path": entry.path})
            return 0
        if entry.kind == LINK:
            session.send({"t": "op", "op": "link", "path": entry.path, "target": entry.target})
            return 0
        try:
            fd, st = self.view.tree.open_file(entry.path)
        except NotSynced as exc:
            self.view.skipped(exc)  # a link or a FIFO now, or unreadable: not sent, never opened
            return 0
        except OSError:
            return 0  # gone since the burst: the next burst (its delete event) removes it in the pod
        try:
            executable = bool(st.st_mode & 0o100)
            session.send(
                {
                    "t": "op",
                    "op": "file",
                    "path": entry.path,
                    "size": st.st_size,
                    "exec": executable,
                    "mtime": st.st_mtime_ns,
                }
            )
            remaining = st.st_size
            while remaining:
                chunk = os.read(fd, min(DATA_CHUNK, remaining)) or b"\0" * min(DATA_CHUNK, remaining)
                session.send_data(chunk)  # a file cut short while read is padded; its change event resends it
                remaining -= len(chunk)
            return st.st_size
        finally:
            os.close(fd)


def _batch_reply(reply: messages.Reply, ident: int) -> Union[messages.Skipped, messages.Failed, messages.Done]:
    """``reply`` if it answers batch ``ident``; anything else is a broken link."""
    if (reply["t"] == "skipped" or reply["t"] == "failed" or reply["t"] == "done") and reply["id"] == ident:
        return reply
    raise Disconnected(f"unexpected answer to a batch: {reply['t']}")


def _report_failed(session: Session, failed: list[Failed]) -> None:
    for path, error, reason in failed[:LINES_SHOWN]:
        out.warn(f"{session.name}: cannot write {path}: {reason}{HINTS.get(error, '')}")
    if len(failed) > LINES_SHOWN:
        out.warn(f"{session.name}: {len(failed) - LINES_SHOWN} more paths not written")
    out.warn(f"{session.name}: sending the rest; a path not written is tried again when it changes")


def _groups(entries: list[Entry]) -> list[list[Entry]]:
    """The first sync's entries in bounded batches (directories count as files, sizes as the manifest said)."""
    groups: list[list[Entry]] = []
    group: list[Entry] = []
    size = 0
    for entry in entries:
        if group and (len(group) >= FIRST_BATCH_FILES or size + entry.size > FIRST_BATCH_BYTES):
            groups.append(group)
            group, size = [], 0
        group.append(entry)
        size += entry.size
    return groups + [group] if group else groups


def _failure(item: object) -> Failed:
    if isinstance(item, list) and len(item) == 3 and all(isinstance(part, str) for part in item):
        return item[0], item[1], item[2]
    raise Disconnected(f"bad data from the agent: malformed failure {str(item)[:80]}")


def _under_any(path: str, paths: set[str]) -> bool:
    """``path`` is one of ``paths`` or lies under one of them."""
    parts = path.split("/")
    return any("/".join(parts[:count]) in paths for count in range(1, len(parts) + 1))
