"""A batch's records spooled to a file with no name, so a million operations never sit in RAM.

The agent stages a batch (what it wrote where, what to delete, what it refused) and journals its
commit (what each rename replaced) as records of a fixed number of text fields. The file is
opened with ``O_TMPFILE`` in the sync root's own file system: it has no name, so it vanishes
with the agent however the agent ends (even SIGKILL), and nothing is left to clean up. Where the
file system cannot do that, a temporary name is made and unlinked at once, which comes to the same.

Fields end with a NUL byte, the one byte no path, name or error text can hold, so a record needs
no quoting and a million of them are read back at the speed of ``bytes.split``. Records are read
in order (staging, deletes) or in reverse (a rollback).
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterator

FLUSH_AT = 1024 * 1024  # bytes gathered before one write
READ_BLOCK = 1024 * 1024  # bytes per read when the records are read back in order
END = b"\0"

Record = tuple[str, ...]


class Spool:
    """Records of ``arity`` text fields appended to an unnamed file in the directory ``dir_fd``.

    Args:
        dir_fd: the directory whose file system holds the file.
        fallback: a name this process owns in that directory, used only without ``O_TMPFILE``.
        arity: fields per record.
        reversible: keep each record's offset (8 bytes a record) so ``backwards`` can read them.
    """

    def __init__(self, dir_fd: int, fallback: str, arity: int, reversible: bool = False) -> None:
        self.fd = _unnamed(dir_fd, fallback)
        self.arity = arity
        self.reversible = reversible
        self.offsets = array("Q")
        self.count = 0
        self.size = 0
        self._pending = bytearray()

    def __len__(self) -> int:
        return self.count

    def append(self, *fields: str) -> None:
        assert len(fields) == self.arity
        record = ("\0".join(fields) + "\0").encode("utf-8", "surrogateescape")
        if self.reversible:
            self.offsets.append(self.size)
        self.count += 1
        self.size += len(record)
        self._pending += record
        if len(self._pending) >= FLUSH_AT:
            self._flush()

    def extend(self, values: list[str]) -> None:
        """Many one-field records at once (a chunk of deletes)."""
        assert self.arity == 1 and not self.reversible
        if values:
            data = ("\0".join(values) + "\0").encode("utf-8", "surrogateescape")
            self.count += len(values)
            self.size += len(data)
            self._pending += data
            if len(self._pending) >= FLUSH_AT:
                self._flush()

    def __iter__(self) -> Iterator[Record]:
        self._flush()
        position, rest = 0, b""
        carried: list[str] = []
        while position < self.size:
            block = os.pread(self.fd, READ_BLOCK, position)
            if not block:
                break
            position += len(block)
            data = rest + block
            cut = data.rfind(END) + 1  # whole fields only: a UTF-8 character never spans the cut
            rest = data[cut:]
            fields = carried + data[:cut].decode("utf-8", "surrogateescape").split("\0")[:-1]
            whole = len(fields) - len(fields) % self.arity
            carried = fields[whole:]
            columns = [iter(fields[:whole])] * self.arity
            yield from zip(*columns)

    def backwards(self) -> Iterator[Record]:
        assert self.reversible
        self._flush()
        end = self.size
        for start in reversed(self.offsets):
            data = os.pread(self.fd, end - start, start)
            yield tuple(part.decode("utf-8", "surrogateescape") for part in data.split(END)[:-1])
            end = start

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _flush(self) -> None:
        view = memoryview(bytes(self._pending))
        self._pending.clear()
        while view:
            view = view[os.write(self.fd, view) :]


def _unnamed(dir_fd: int, fallback: str) -> int:
    flags = os.O_RDWR | os.O_CLOEXEC
    try:
        return os.open(".", flags | os.O_TMPFILE, 0o600, dir_fd=dir_fd)
    except OSError:
        pass  # EOPNOTSUPP/EISDIR on a file system without O_TMPFILE (some FUSE mounts)
    fd = os.open(fallback, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    os.unlink(fallback, dir_fd=dir_fd)
    return fd
