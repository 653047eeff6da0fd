"""reloadd's own poller, for mounts where inotify never hears about changes (NFS, 9p, FUSE...).

Why not watchfiles' poller (Rust notify's PollWatcher): it keeps modification times in whole
seconds, so a second save within the same second as the previous one — or a sync that
rewrites a file of the same size right after it was created — is never seen (measured on a
bindfs mount: the change was missed for good). This poller compares nanosecond mtime, size,
inode and mode, which also catches a rename-into-place that keeps the mtime (rsync -t).

Why not list every directory every interval: scandir plus a stat per entry costs ~2.6 us an
entry in Python; on the bench tree (2,000 files in 200 directories) that was 7.6 % of a core
at 100 ms, about what `nodemon -L` costs. So every interval the poller checks
  1. every watched directory's own stat: a file added, removed or renamed into place (the way
     Syncthing, rsync, tar and atomic editor saves publish a file) changes it, and that
     directory is listed again at once;
  2. files that changed recently (the ones a developer is editing), each with one stat;
  3. a rotating slice of the other files, one lstat each (~1.7 us: no listing), sized to
     POLL_CPU_BUDGET, plus one directory listed in full as a safety net for file systems whose
     directory mtimes are coarse.
An in-place edit of a file nobody touched lately is seen when the rotation reaches it: on the
bench tree within two intervals; trees small enough for the budget are swept every interval.
"""

from __future__ import annotations

import os
import stat
import time
from collections import OrderedDict
from typing import Optional, Protocol, Union

POLL_CPU_BUDGET = 0.012  # share of one core the file rotation may spend (the directory checks come on top)
HOT_FILES = 256  # how many recently changed files are checked every interval
MIN_SLICE = 16  # files looked at per interval at the least, whatever the budget says
INITIAL_ENTRY_COST = 2e-6  # seconds a file's lstat is assumed to cost until measured
COST_SMOOTHING = 0.2  # weight of the newest measurement in the running cost per entry

CHANGE_ADDED, CHANGE_MODIFIED, CHANGE_DELETED = 1, 2, 3  # watchfiles.Change values, so both look alike

Signature = tuple[int, int, int, int]  # mtime_ns, size, inode, mode
RawChanges = set[tuple[int, str]]


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


def _signature(st: os.stat_result) -> Signature:
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)


def _list(directory: str) -> dict[str, Signature]:
    entries: dict[str, Signature] = {}
    try:
        with os.scandir(directory) as found:
            for entry in found:
                try:
                    entries[entry.path] = _signature(entry.stat(follow_symlinks=False))
                except OSError:
                    continue  # removed between listing and stat: the next look sees it gone
    except OSError:
        pass  # the directory itself vanished: its entries show up as deleted
    return entries


def _own_stat(directory: str) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ino)


def diff(old: dict[str, Signature], new: dict[str, Signature]) -> RawChanges:
    changes: RawChanges = set()
    for path, signature in new.items():
        before = old.get(path)
        if before is None:
            changes.add((CHANGE_ADDED, path))
        elif before != signature and not stat.S_ISDIR(signature[3]):
            changes.add((CHANGE_MODIFIED, path))  # a directory's mtime moves with its entries: not a change
    changes |= {(CHANGE_DELETED, path) for path in old.keys() - new.keys()}
    return changes


class Poller:
    """Polls a fixed set of directories (non-recursively) with the same ``watch``/``close`` calls as RustNotify."""

    def __init__(
        self, directories: set[str], interval_ms: int, previous: Optional[dict[str, Signature]] = None
    ) -> None:
        self.interval = interval_ms / 1000
        self.order = sorted(directories)
        self.dir_cursor = 0
        self.file_cursor = 0
        self.entry_cost = INITIAL_ENTRY_COST
        self.hot: OrderedDict[str, None] = OrderedDict()
        self.dir_stats = {d: _own_stat(d) for d in self.order}
        self.listing = {d: _list(d) for d in self.order}
        self._files: Optional[list[str]] = None  # every non-directory entry; rebuilt when a listing changes
        self._pending: RawChanges = set()
        if previous is not None:
            # Carry the old view over a rebuild so that nothing changed during it is missed.
            known = {path: sig for path, sig in previous.items() if os.path.dirname(path) in self.listing}
            self._pending = diff(known, self.snapshot)
        self.next_scan = time.monotonic() + self.interval

    @property
    def snapshot(self) -> dict[str, Signature]:
        merged: dict[str, Signature] = {}
        for entries in self.listing.values():
            merged.update(entries)
        return merged

    def describe(self) -> str:
        files = len(self.files())
        sweep = max(1.0, files / self._slice_size()) * self.interval
        return f"{files} files, each looked at at least every {sweep * 1000:.0f}ms"

    def watch(self, timeout_ms: int, stop: StopFlag) -> Union[RawChanges, str]:
        """Poll whenever the interval comes round until something changed or ``timeout_ms`` passed."""
        if self._pending:
            changes, self._pending = self._pending, set()
            return changes
        deadline = time.monotonic() + timeout_ms / 1000
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                return "timeout"
            if now < self.next_scan:
                time.sleep(min(self.next_scan, deadline) - now)
                continue
            changes = self.poll_once()
            self.next_scan = time.monotonic() + self.interval
            if changes:
                return changes
        return "stop"

    def close(self) -> None:
        self.order = []

    # -- one interval -------------------------------------------------------------------------
    def poll_once(self) -> RawChanges:
        changes: RawChanges = set()
        for directory in self.order:  # 1. directories whose own stat moved: list them again
            now_stat = _own_stat(directory)
            if now_stat != self.dir_stats.get(directory):
                self.dir_stats[directory] = now_stat
                changes |= self._relist(directory)
        changes |= self._check(list(self.hot))  # 2. recently changed files
        if self.order:  # 3. one directory in full, and a budgeted slice of the files
            changes |= self._relist(self.order[self.dir_cursor % len(self.order)])
            self.dir_cursor += 1
        changes |= self._check_slice()
        self._remember(changes)
        return changes

    def files(self) -> list[str]:
        if self._files is None:
            self._files = [
                path for entries in self.listing.values() for path, sig in entries.items() if not stat.S_ISDIR(sig[3])
            ]
        return self._files

    def _check_slice(self) -> RawChanges:
        files = self.files()
        if not files:
            return set()
        count = min(len(files), self._slice_size())
        start = self.file_cursor % len(files)
        batch = files[start : start + count] + files[: max(0, start + count - len(files))]
        self.file_cursor = start + count
        started = time.perf_counter()
        changes = self._check(batch)
        self.entry_cost += COST_SMOOTHING * ((time.perf_counter() - started) / len(batch) - self.entry_cost)
        return changes

    def _slice_size(self) -> int:
        """How many files fit in one interval's budget, at the measured cost of a stat."""
        return max(MIN_SLICE, int(POLL_CPU_BUDGET * self.interval / max(self.entry_cost, 1e-7)))

    def _relist(self, directory: str) -> RawChanges:
        fresh = _list(directory)
        old = self.listing.get(directory, {})
        if fresh.keys() != old.keys():
            self._files = None
        self.listing[directory] = fresh
        return diff(old, fresh)

    def _check(self, paths: list[str]) -> RawChanges:
        """One lstat per file; a file that differs gets its directory listed again (listings stay whole)."""
        changes: RawChanges = set()
        for path in paths:
            directory = os.path.dirname(path)
            entries = self.listing.get(directory)
            if entries is None:
                continue
            try:
                signature: Optional[Signature] = _signature(os.lstat(path))
            except OSError:
                signature = None
            if signature != entries.get(path):
                changes |= self._relist(directory)
        return changes

    def _remember(self, changes: RawChanges) -> None:
        for kind, path in changes:
            if kind == CHANGE_DELETED:
                self.hot.pop(path, None)
                continue
            self.hot[path] = None
            self.hot.move_to_end(path)
        while len(self.hot) > HOT_FILES:
            self.hot.popitem(last=False)
