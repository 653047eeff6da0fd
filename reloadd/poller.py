"""reloadd's own poller, for mounts where inotify never hears about changes (NFS, 9p, FUSE...).

Why not watchfiles' poller (Rust notify's PollWatcher): it keeps modification times in whole
seconds, so a second save within the same second as the previous one — or a sync that
rewrites a file of the same size right after it was created — is never seen (measured on a
bindfs mount: the change was missed for good). This poller compares nanosecond mtime, size,
inode and mode, which also catches a rename-into-place that keeps the mtime (rsync -t).

Cost: one scandir per watched directory and one lstat per entry; on the bench tree (2,000
files in 200 directories) a scan takes about 6 ms of CPU, 6 % of a core at 100 ms, the same
as the Rust poller. The interval stretches when a scan costs more than the CPU budget.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Optional, Protocol, Union

from .output import out

POLL_CPU_BUDGET = 0.10  # share of one core the poller may use before its interval is stretched
POLL_INTERVAL_CAP_MS = 2000  # never stretch the interval beyond this
COST_SMOOTHING = 0.3  # weight of the newest scan in the running cost estimate

CHANGE_ADDED, CHANGE_MODIFIED, CHANGE_DELETED = 1, 2, 3  # watchfiles.Change values, so both look alike

Signature = tuple[int, int, int, int]  # mtime_ns, size, inode, mode
RawChanges = set[tuple[int, str]]


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


def _scan(directories: set[str]) -> dict[str, Signature]:
    snapshot: dict[str, Signature] = {}
    for directory in directories:
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed between listing and stat: the next scan sees it gone
                    snapshot[entry.path] = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)
        except OSError:
            continue  # the directory itself vanished; its entries show up as deleted
    return snapshot


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
        self.directories = set(directories)
        self.base_interval = interval_ms / 1000
        self.interval = self.base_interval
        self.cost = 0.0
        self.snapshot = self._timed_scan()
        if previous is not None:
            # Carry the old view over a rebuild so that nothing changed during it is missed.
            known = {path: sig for path, sig in previous.items() if os.path.dirname(path) in self.directories}
            self._pending = diff(known, self.snapshot)
        else:
            self._pending = set()
        self.next_scan = time.monotonic() + self.interval

    def watch(self, timeout_ms: int, stop: StopFlag) -> Union[RawChanges, str]:
        """Scan whenever the interval comes round until something changed or ``timeout_ms`` passed."""
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
            current = self._timed_scan()
            changes = diff(self.snapshot, current)
            self.snapshot = current
            self.next_scan = time.monotonic() + self.interval
            if changes:
                return changes
        return "stop"

    def close(self) -> None:
        self.directories = set()

    def _timed_scan(self) -> dict[str, Signature]:
        started = time.process_time()
        snapshot = _scan(self.directories)
        cost = time.process_time() - started
        self.cost = cost if not self.cost else COST_SMOOTHING * cost + (1 - COST_SMOOTHING) * self.cost
        self._hold_budget(len(snapshot))
        return snapshot

    def _hold_budget(self, entries: int) -> None:
        """On a huge tree, poll less often rather than burn a core: the interval keeps cost/interval in budget."""
        wanted = max(self.base_interval, min(POLL_INTERVAL_CAP_MS / 1000, self.cost / POLL_CPU_BUDGET))
        if wanted > self.interval * 1.5 or (wanted < self.interval / 1.5 and self.interval > self.base_interval):
            self.interval = wanted
            out.warn(
                f"polling {entries} entries costs {self.cost * 1000:.0f}ms a scan: interval now "
                f"{self.interval * 1000:.0f}ms to hold the {POLL_CPU_BUDGET:.0%} CPU budget"
            )
