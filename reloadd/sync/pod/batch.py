"""One batch in the pod: staged out of sight (staging.py), then committed all at once or not at all.

Commit. Deletes first, then every staged name, each step journaled with what it replaced: a file
that is replaced is first hard-linked to a backup name (so the rename over it is still atomic
for the app), a directory or a deleted path is renamed to a backup name. A step that fails
(EBUSY on a bind-mounted file, EACCES, EXDEV, ENOSPC) is recorded and the others are tried, so
one reply names every path that cannot be written; then, if any failed, the journal is undone
backwards and the tree is as before (a put-back that fails too is reported). Only a batch that
committed completely removes its backups and is announced to the supervisor (announce.py).

An agent killed during the commit's renames leaves each path old or new, never half a file; the
next agent removes the leftovers at its start and the laptop's digest comparison repairs the rest.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Optional

from .root import Blocked, remove_tree
from .spool import Record, Spool
from .staging import OPEN_DIR, Staging, unlink_quietly

ANNOUNCE_MAX = 50_000  # committed paths named to the supervisor; beyond that, the first ones stand for all
# Journal records: ("moved", dir, name, backup) renamed away; ("replaced", dir, name, backup) a
# file replaced, its old inode kept as backup; ("created", dir, name, temp) renamed into place.


@dataclass
class Failure:
    path: str
    error: str  # the errno's name (EBUSY), or "" when there is none
    reason: str  # strerror


@dataclass
class Outcome:
    """What a commit did: whether it committed, and the paths the supervisor hears were changed
    (what could not be written is in the batch's failures)."""

    committed: bool
    changed: list[str] = field(default_factory=list)


class Batch(Staging):
    """One batch: staged (staging.py), then committed all at once or not at all."""

    def commit(self) -> Outcome:
        """Apply everything staged, or (if anything fails) nothing; the notes hold every reason."""
        self.close_fds()
        if self.failed:
            self._clean_staged(committed=False, refused=set())
            return Outcome(False)
        refused = self._refused_dirs()
        try:
            journal = Spool(self.root.fd, next(self._temps), 4, reversible=True)
        except OSError:
            self._clean_staged(committed=False, refused=set())
            raise
        try:
            try:
                self._apply(refused, journal)
            except BaseException:  # the journal's own disk filled up, say: put back what it holds, then stop
                self._rollback(journal)
                self._clean_staged(committed=False, refused=set())
                raise
            if self.failed:
                self._rollback(journal)
                self._clean_staged(committed=False, refused=set())
                return Outcome(False)
            outcome = Outcome(True)
            self._clean_staged(committed=True, refused=refused, changed=outcome.changed)
            self._drop_backups(journal, outcome.changed)
            return outcome
        finally:
            journal.close()
            self.close_fds()

    def _apply(self, refused: set[str], journal: Spool) -> None:
        """Deletes, then every staged name, each step journaled; a step that fails is noted and skipped."""
        for (path,) in self.deletes:  # sorted by the laptop: one directory after another
            try:
                self._move_away(path, journal)
            except OSError as exc:
                self._fail(path, exc)
        self.close_fds()  # a delete may have moved a cached directory away
        for record in self.staged:
            self._commit_record(record, refused, journal)

    def _refused_dirs(self) -> set[str]:
        """New directories that stand where the pod has a symlink or file this batch does not delete."""
        if not self.blocked:
            return set()
        refused = set(self.blocked)
        for (path,) in self.deletes:
            refused = {top for top in refused if top != path and not top.startswith(f"{path}/")}
        return refused

    def _commit_record(self, record: Record, refused: set[str], journal: Spool) -> None:
        kind = record[0]
        if kind == "n":
            return
        directory, temp, name = _where(record)
        path = "/".join((*directory, name))
        if kind == "t" and path in refused:
            return
        try:
            self._put(directory, temp, name, kind == "f", journal)
        except (OSError, Blocked) as exc:
            self._fail(path, exc if isinstance(exc, OSError) else OSError(errno.ENOTDIR, exc.reason))

    def _move_away(self, path: str, journal: Spool) -> None:
        """A delete: the entry is renamed to a backup name, removed only when the whole batch is in."""
        parts = tuple(path.split("/"))
        if parts[:-1] in self.missing:
            return
        try:
            parent = self._existing(parts[:-1])
        except (FileNotFoundError, NotADirectoryError, Blocked):
            self.missing.add(parts[:-1])  # a million deletes in one gone directory: looked up once
            return  # not there, or under a symlink the pod has: nothing of ours to delete
        try:
            is_dir = stat.S_ISDIR(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return
        if self.keep(path, is_dir):
            return  # excluded (node_modules, .git unless included): never deleted
        if is_dir and self._holds_kept(parent, parts[-1], path):
            for child in _names(parent, parts[-1]):  # what it holds goes, one by one; the kept stays
                self._move_away(f"{path}/{child}", journal)
            return
        backup = next(self._temps)
        os.rename(parts[-1], backup, src_dir_fd=parent, dst_dir_fd=parent)
        journal.append("moved", "/".join(parts[:-1]), parts[-1], backup)

    def _holds_kept(self, parent: int, name: str, path: str) -> bool:
        """Is anything under the directory ``name`` (``path``) excluded, and so never to be deleted?"""
        stack = [(os.open(name, OPEN_DIR, dir_fd=parent), path)]
        try:
            while stack:
                fd, base = stack.pop()
                try:
                    with os.scandir(fd) as entries:
                        for entry in entries:
                            child, is_dir = f"{base}/{entry.name}", entry.is_dir(follow_symlinks=False)
                            if self.keep(child, is_dir):
                                return True
                            if is_dir:
                                stack.append((os.open(entry.name, OPEN_DIR, dir_fd=fd), child))
                finally:
                    os.close(fd)
        finally:
            for fd, _ in stack:
                os.close(fd)
        return False

    def _put(self, directory: tuple[str, ...], temp: str, name: str, replace: bool, journal: Spool) -> None:
        """Rename ``temp`` to ``name`` in ``directory``, keeping what it replaces as a backup."""
        parent = self._existing(directory)
        try:
            old: Optional[os.stat_result] = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None and replace:
            backup = next(self._temps)
            if not stat.S_ISDIR(old.st_mode) and _linked(parent, name, backup):
                try:
                    os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)  # atomic for the app
                except OSError:
                    unlink_quietly(parent, backup)
                    raise
                journal.append("replaced", "/".join(directory), name, backup)
                return
            os.rename(name, backup, src_dir_fd=parent, dst_dir_fd=parent)  # a directory, or no hard links
            journal.append("moved", "/".join(directory), name, backup)
        os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        journal.append("created", "/".join(directory), name, temp)

    def _rollback(self, journal: Spool) -> None:
        for kind, directory, name, other in journal.backwards():
            try:
                parent = self._existing(_parts(directory))
                if kind == "created":
                    os.rename(name, other, src_dir_fd=parent, dst_dir_fd=parent)  # back to its temporary name
                else:
                    os.rename(other, name, src_dir_fd=parent, dst_dir_fd=parent)
            except (OSError, Blocked) as exc:
                self.failed += 1
                self.notes.append("fail", _join(directory, name), "", f"could not be put back as it was ({exc})")

    def _drop_backups(self, journal: Spool, changed: list[str]) -> None:
        for kind, directory, name, backup in journal:
            if kind == "created":
                continue
            try:
                parent = self._existing(_parts(directory))
                prefix = directory
                removed: Optional[list[str]] = changed if len(changed) < ANNOUNCE_MAX else None
                if kind == "moved":
                    remove_tree(parent, backup, removed, f"{prefix}/" if prefix else "", shown=name)
                else:
                    os.unlink(backup, dir_fd=parent)
            except (OSError, Blocked):
                continue  # a leftover backup is removed by the next agent's start

    def _clean_staged(self, committed: bool, refused: set[str], changed: Optional[list[str]] = None) -> None:
        """Remove what was staged but is not in the tree now; on success, list what is."""
        for record in self.staged:
            kind = record[0]
            if kind == "n":
                path = record[1]
                top = next((t for t in refused if path == t or path.startswith(f"{t}/")), None)
                if top is not None:
                    reason = self.blocked[top]
                    line = f"{path}: {reason} is in the way at {top} in the pod; not following it"
                    self.notes.append("skip", line, "", "")
                elif committed and record[2] and changed is not None and len(changed) < ANNOUNCE_MAX:
                    changed.append(path)
                continue
            directory, temp, name = _where(record)
            path = "/".join((*directory, name))
            if committed and path not in refused:
                if kind == "f" and changed is not None and len(changed) < ANNOUNCE_MAX:
                    changed.append(path)
                continue
            try:
                remove_tree(self._existing(directory), temp)
            except (OSError, Blocked):
                continue

    # -- the end -----------------------------------------------------------------------------------
    def abort(self) -> None:
        """The session ended before the commit: remove everything staged."""
        upload, self.upload = self.upload, None
        if upload is not None and upload.fd is not None:
            os.close(upload.fd)
            upload.fd = None
            if upload.record:
                self.staged.append(*upload.record)
        self.close_fds()
        self._clean_staged(committed=False, refused=set())
        for spool in (self.staged, self.deletes, self.notes):
            spool.close()

    def close(self) -> None:
        self.close_fds()
        for spool in (self.staged, self.deletes, self.notes):
            spool.close()


def _where(record: Record) -> tuple[tuple[str, ...], str, str]:
    """(final directory, temporary name, final name) of a staged "f" or "t" record."""
    return _parts(record[1]), record[2], record[3]


def _parts(directory: str) -> tuple[str, ...]:
    return tuple(directory.split("/")) if directory else ()


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def _names(parent: int, name: str) -> list[str]:
    fd = os.open(name, OPEN_DIR, dir_fd=parent)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _linked(parent: int, name: str, backup: str) -> bool:
    """Hard-link the file about to be replaced to ``backup``; False where that is not possible."""
    try:
        os.link(name, backup, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
    except OSError:
        return False  # EXDEV on a mounted file, EPERM on some FUSE mounts: it is renamed away instead
    return True


def failures(batch: Batch) -> Iterator[Failure]:
    for note in batch.notes:
        if note[0] == "fail":
            yield Failure(note[1], note[2], note[3])


def skips(batch: Batch) -> Iterator[str]:
    for note in batch.notes:
        if note[0] == "skip":
            yield note[1]
