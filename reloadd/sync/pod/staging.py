"""A batch's staging in the pod: every file, symlink and new directory written out of sight first.

Each file or symlink is written under a temporary name in its own directory
(``.reloadd-sync.PID.N.tmp``, which reloadd's watcher ignores), with its mode and the laptop's
mtime. A directory the pod does not have yet is made under a temporary name in the nearest
directory that exists, and everything below it is written there under its final name: a new
directory appears complete, at its commit (batch.py). What was staged, the deletes and the
refusals are spooled to an unnamed file (spool.py), so a batch of a million operations costs no
memory. A write that fails while staging (EACCES, ENOSPC...) is recorded against its path; the
batch then fails at commit without touching the tree.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

from ..shared.manifest import Exclude
from .root import Root, file_mode, kind_in_the_way
from .spool import Record, Spool

FD_CACHE_MAX = 256  # directory descriptors a batch keeps open before it closes them all and starts over
OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Staged records: ("f", dir, temp, name) a file or symlink renamed at commit; ("t", dir, temp, name)
# a new directory renamed in at commit; ("n", path, announce) written inside a new directory.


@dataclass
class Upload:
    """The file whose bytes are arriving."""

    path: str
    fd: Optional[int]  # None: refused or failed, the bytes are read and dropped
    remaining: int
    executable: bool
    mtime_ns: int
    record: Record  # what the staged spool gets when the file is complete
    directory: int = -1


class Staging:
    """One batch's staging under ``root``; ``temp()`` names every temporary entry. Batch commits it."""

    def __init__(self, ident: int, root: Root, temp: Iterator[str], keep: Exclude) -> None:
        self.ident = ident
        self.root = root
        self.keep = keep  # excluded paths: a delete never removes them, nor the directories holding them
        self._temps = temp
        self.staged = Spool(root.fd, next(temp), 4)
        self.deletes = Spool(root.fd, next(temp), 1)
        self.notes = Spool(root.fd, next(temp), 4)  # ("skip", line, "", "") and ("fail", path, errno, strerror)
        self.failed = 0
        self.upload: Optional[Upload] = None
        self.new_dirs: dict[tuple[str, ...], str] = {}  # final parts -> temporary name, top new directories
        self.blocked: dict[str, str] = {}  # new directories standing where the pod has a file or symlink
        self.fds: dict[tuple[str, ...], int] = {}
        self.missing: set[tuple[str, ...]] = set()  # directories the deletes found missing
        self.new_fds: set[tuple[str, ...]] = set()  # cached directories that are new (staged)

    def delete(self, paths: list[str]) -> None:
        """Paths to delete at commit (checked by the caller)."""
        self.deletes.extend(paths)

    def make_dir(self, path: str, parts: tuple[str, ...]) -> None:
        try:
            _, new = self._dir(parts)
        except OSError as exc:
            self._fail(path, exc)
            return
        if new:
            self.staged.append("n", path, "", "")

    def stage_link(self, path: str, parts: tuple[str, ...], target: str) -> None:
        try:
            parent, new = self._dir(parts[:-1])
            name = parts[-1] if new else next(self._temps)
            if new:
                unlink_quietly(parent, name)
            os.symlink(target, name, dir_fd=parent)
        except OSError as exc:
            self._fail(path, exc)
            return
        self.staged.append(*_staged(path, parts, name, new))

    def stage_file(self, path: str, parts: tuple[str, ...], size: int, executable: bool, mtime_ns: int) -> None:
        upload = Upload(path, None, size, executable, mtime_ns, ())
        try:
            parent, new = self._dir(parts[:-1])
            name = parts[-1] if new else next(self._temps)
            try:
                upload.fd = os.open(name, _NEW_FILE, 0o600, dir_fd=parent)
            except FileExistsError:
                unlink_quietly(parent, name)  # the same path twice in one batch (in a new directory): the last wins
                upload.fd = os.open(name, _NEW_FILE, 0o600, dir_fd=parent)
            upload.directory = parent
            upload.record = _staged(path, parts, name, new)
        except OSError as exc:
            self._fail(path, exc)
        self.upload = upload
        if size == 0:
            self.finish_upload()

    def write(self, chunk: bytes) -> None:
        """File bytes for the upload in progress (the caller checked they were announced)."""
        upload = self.upload
        assert upload is not None
        if upload.fd is not None:
            try:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(upload.fd, view) :]
            except OSError as exc:
                self._drop_upload(upload, exc)
        upload.remaining -= len(chunk)
        if upload.remaining == 0:
            self.finish_upload()

    def finish_upload(self) -> None:
        upload, self.upload = self.upload, None
        if upload is None or upload.fd is None:
            return
        try:
            os.fchmod(upload.fd, file_mode(upload.executable))
            os.utime(upload.fd, ns=(upload.mtime_ns, upload.mtime_ns))
        except OSError as exc:
            self._drop_upload(upload, exc)
            return
        os.close(upload.fd)
        self.staged.append(*upload.record)

    def _drop_upload(self, upload: Upload, exc: OSError) -> None:
        assert upload.fd is not None
        os.close(upload.fd)
        upload.fd = None
        self._fail(upload.path, exc)
        name = upload.record[2] if upload.record[0] == "f" else upload.path.rpartition("/")[2]
        unlink_quietly(upload.directory, name)

    def _fail(self, path: str, exc: OSError) -> None:
        self.failed += 1
        name = errno.errorcode.get(exc.errno or 0, "")
        self.notes.append("fail", path, name, exc.strerror or str(exc))

    def _dir(self, directory: tuple[str, ...]) -> tuple[int, bool]:
        """The directory that stands for ``directory`` while staging (made if missing), and whether
        it is new. A missing directory, or one where the pod has a file or symlink, is made under a
        temporary name in its parent; pod-side symlinks are never followed."""
        cached = self.fds.get(directory)
        if cached is not None:
            return cached, directory in self.new_fds
        fd, new = os.dup(self.root.fd), False
        try:
            for count in range(1, len(directory) + 1):
                fd, new = self._step(fd, directory[:count], new)
        except BaseException:
            os.close(fd)
            raise
        self._cache(directory, fd)
        if new:
            self.new_fds.add(directory)
        return fd, new

    def _step(self, fd: int, parts: tuple[str, ...], new: bool) -> tuple[int, bool]:
        """From the open directory ``fd`` to ``parts``'s last component (closing ``fd``)."""
        name = parts[-1]
        temp = self.new_dirs.get(parts)
        if temp is not None:
            name, new = temp, True
        elif new:
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
        else:
            try:
                child = os.open(name, OPEN_DIR, dir_fd=fd)
                os.close(fd)
                return child, False
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                self.blocked["/".join(parts)] = kind_in_the_way(fd, name)
            temp = next(self._temps)
            os.mkdir(temp, 0o755, dir_fd=fd)
            self.new_dirs[parts] = temp
            self.staged.append("t", "/".join(parts[:-1]), temp, parts[-1])
            name, new = temp, True
        child = os.open(name, OPEN_DIR, dir_fd=fd)
        os.close(fd)
        return child, new

    def _existing(self, directory: tuple[str, ...]) -> int:
        cached = self.fds.get(directory)
        if cached is None:
            cached = self.root.open_dir(directory, create=False)
            self._cache(directory, cached)
        return cached

    def _cache(self, directory: tuple[str, ...], fd: int) -> None:
        """Keep ``fd`` open for later steps in the same directory; the oldest goes when there are too many."""
        if len(self.fds) >= FD_CACHE_MAX:
            oldest = next(iter(self.fds))
            os.close(self.fds.pop(oldest))
            self.new_fds.discard(oldest)
        self.fds[directory] = fd

    def close_fds(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        self.missing.clear()
        self.new_fds.clear()


def _staged(path: str, parts: tuple[str, ...], name: str, new: bool) -> Record:
    """A file or symlink staged: renamed at commit ("f"), or already in place in a new directory ("n")."""
    return ("n", path, "1", "") if new else ("f", "/".join(parts[:-1]), name, parts[-1])


def unlink_quietly(parent: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except OSError:
        pass
