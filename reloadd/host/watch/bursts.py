"""Bursts of changed paths, on one monotonic clock: one save, one checkout, one sync is one batch.

This part only decides. Its user (the supervisor, and the laptop side of ``reloadd sync``) feeds it
what the watcher reported and the time, asks how long it may sleep, and takes a burst once one
is ready; it alone acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

GROUP_QUIET = 0.02  # seconds without a change that close a burst: one save is one restart
GROUP_CAP = 3.0  # a burst never holds a restart back longer than this, however busy the tree
BUSY_RECHECK = 0.01  # while the watcher is busy, look again this often (not at once: that would spin)


@dataclass
class Burst:
    """Groups changed paths into bursts: one restart for one save, one checkout, one sync.

    A burst is any run of changes whose gaps stay within ``quiet`` seconds, however long it
    lasts, up to ``cap`` seconds. While the watcher is busy (adding directories that just
    appeared, whose files are about to be reported) the burst stays open.
    """

    quiet: float = GROUP_QUIET
    cap: float = GROUP_CAP
    paths: set[str] = field(default_factory=set)
    first: Optional[float] = None
    last: float = 0.0
    busy: bool = False

    def add(self, paths: set[str], now: float, busy: bool = False, settle: float = 0.0) -> None:
        """Record a watcher report: its paths, whether it is still busy, and how long its bursts settle."""
        self.busy = busy
        self.quiet = max(GROUP_QUIET, settle)
        if not paths:
            return
        if self.first is None:
            self.first = now
        self.last = now
        self.paths |= paths

    def ready(self, now: float) -> bool:
        if self.first is None:
            return False
        if now - self.first >= self.cap:
            return True
        return not self.busy and now - self.last >= self.quiet

    def wait_time(self, now: float) -> Optional[float]:
        """Seconds until the burst may close; None with nothing pending.

        While busy, only the cap or the watcher ceasing to be busy can close it, so the loop
        looks again after BUSY_RECHECK rather than at once (which would spin).
        """
        if self.first is None:
            return None
        closes = min(self.last + self.quiet, self.first + self.cap)
        if self.busy:
            closes = min(max(closes, now + BUSY_RECHECK), self.first + self.cap)
        return max(0.0, closes - now)

    def take(self) -> tuple[list[str], float]:
        """The burst's paths (sorted) and when its first change came; the burst starts empty again."""
        paths, first = sorted(self.paths), self.first if self.first is not None else self.last
        self.paths, self.first = set(), None
        return paths, first

    def drop(self, paths: set[str]) -> None:
        """Take these paths out of the burst (they were no change after all); an emptied burst is no burst."""
        self.paths -= paths
        if not self.paths:
            self.first = None
