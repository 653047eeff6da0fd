"""reloadd's own poller, for mounts where inotify never hears about changes (NFS, 9p, FUSE...).

Why not watchfiles' poller (Rust notify's PollWatcher): it keeps modification times in whole
seconds, so a second save within the same second as the previous one — or a sync that
rewrites a file of the same size right after it was created — is never seen (measured on a
bindfs mount: the change was missed for good). This poller compares nanosecond mtime and size,
and a directory listing also compares inode and mode, which catches a rename-into-place that
keeps the mtime (rsync -t).

What it costs (measured in place on the bench tree, 2,000 files in 200 directories, with the
process asleep between ticks: colder caches make a stat cost about twice what a tight loop
says). `nodemon -L` stats every file every interval through libuv: ~9 % of a core at 100 ms.
The promise is a change seen within interval + 100 ms at a quarter of that. One stat per entry
is the floor; so:
  * A *sweep* stats every watched directory (a file added, removed or renamed into place, the
    way Syncthing, rsync, tar and atomic editor saves publish files, changes it) and every file
    (in-place edits). A directory or file that differs is listed again, and the listing says
    what changed.
  * Entries are stat'ed through O_PATH descriptors held between sweeps (see folders.Handles): no path
    walk, which cut a sweep's cost by a third (2.9 % -> 1.9 % of a core at the same rate).
  * A tree whose sweep is nearly free is swept every interval, like nodemon. Otherwise the
    sweep is spread, one slice per tick, over interval + SWEEP_SLACK: on the bench tree two
    ticks of 95 ms, each entry looked at every 190 ms, ~2 % of a core. A tree too big for
    POLL_CPU_BUDGET even then gets its sweep stretched, and the log says so.
  * Every tick also re-checks the files that changed recently (the ones being edited); every
    sweep lists one directory in full, for file systems whose directory mtimes are coarse.
  * Once something changed, the poller ticks every BURST_TICK and each tick sweeps everything
    (within BURST_SHARE of the tick) until the burst is over: the rest of a sync is seen within
    a burst tick, so a burst stays open only BURST_QUIET_TICKS burst ticks after its last change
    (75 ms, not 1.5 intervals) and is still one restart.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from typing import NamedTuple, Optional, Union

from ...output import out
from .folders import Folder, Handles, Signature, diff
from .raw_changes import CHANGE_DELETED, RawChanges, StopFlag

POLL_CPU_BUDGET = 0.025  # share of one core that sweeping may use before the sweep is stretched
# Sweeping every interval, as nodemon does, only while that is nearly free: past this share the
# sweep is spread, so that reloadd's rate of stats stays near half of nodemon's whatever the
# machine (a budget in CPU alone would let a fast machine sweep every interval).
FULL_RATE_BUDGET = 0.005
# Seconds a spread sweep adds to the interval. With the tick's own work (~1 ms on the bench
# tree) a change is seen within interval + 100 ms.
SWEEP_SLACK = 0.09
BURST_TICK = 0.03  # seconds between ticks while a burst is open
BURST_SHARE = 0.5  # share of a burst tick that sweeping may use (a full sweep, unless the tree is huge)
BURST_QUIET_TICKS = 2.5  # a polled burst stays open this many burst ticks after its last change: a late tick is no gap
HOT_FILES = 256  # how many recently changed files are checked every tick
INITIAL_ENTRY_COST = 1.5e-6  # seconds an entry's stat is assumed to cost until measured
COST_SMOOTHING = 0.2  # weight of the newest measurement in the running cost per entry
STRETCH_REPORT_RATIO = 1.25  # a stretched sweep is reported again when it moves by this factor
# A tick period lengthened by its own cost is said once, after this many ticks (the smoothed cost
# has settled), and again only if it grows past this factor: load makes the cost wander.
FLOOR_REPORT_AFTER_TICKS = 50
FLOOR_REPORT_RATIO = 2.0


class SweepPlan(NamedTuple):
    sweep: float  # seconds in which every entry is looked at once
    tick: float  # seconds between ticks; each tick looks at one slice
    slice: int  # entries a tick looks at
    burst_tick: float  # seconds between ticks while a burst is open
    burst_slice: int  # entries a burst tick looks at
    burst_ticks: int  # burst ticks to look at every entry

    @property
    def burst_quiet(self) -> float:
        """Seconds a burst must stay open after its last change for the poller to have seen all of it."""
        return (self.burst_ticks - 1 + BURST_QUIET_TICKS) * self.burst_tick


def plan_sweep(entries: int, entry_cost: float, interval: float) -> SweepPlan:
    """Every interval while that is nearly free, else spread over interval + SWEEP_SLACK, else stretched."""
    entries = max(1, entries)
    cost = entries * entry_cost
    if cost <= FULL_RATE_BUDGET * interval:
        sweep = interval
    else:
        sweep = max(interval + SWEEP_SLACK, cost / POLL_CPU_BUDGET)
    ticks = max(1, math.ceil(sweep / interval - 1e-9))
    tick = sweep / ticks
    slice_ = math.ceil(entries / ticks)
    burst_tick = min(tick, BURST_TICK)
    burst_slice = max(slice_, int(BURST_SHARE * burst_tick / entry_cost))
    return SweepPlan(sweep, tick, slice_, burst_tick, burst_slice, math.ceil(entries / burst_slice))


class Poller:
    """Polls a fixed set of directories (non-recursively); a notifiers.Notifier, as the inotify side is."""

    polls = True

    def __init__(
        self,
        directories: set[str],
        interval_ms: int,
        previous: Optional[dict[str, Signature]] = None,
        fd_allowance: Optional[int] = None,
    ) -> None:
        self.interval = interval_ms / 1000
        self.dirs = set(directories)
        self.handles = Handles(fd_allowance)
        self.folders = [Folder(path, self.handles) for path in sorted(directories)]
        for folder in self.folders:
            folder.relist()
        self.folder_at = {folder.path: folder for folder in self.folders}
        self.cursor = 0  # the folder the next slice starts at
        self.safety_cursor = 0  # the folder the next completed sweep lists in full
        self.entry_cost = INITIAL_ENTRY_COST
        self.hot: OrderedDict[str, None] = OrderedDict()
        self.burst_until = 0.0
        self.reported_sweep: Optional[float] = None  # the stretched sweep last written to the log
        self.tick_cost = 0.0  # CPU seconds a whole tick takes (wake-up, bookkeeping, looking), smoothed
        self.reported_floor: Optional[float] = None  # the tick floor last written to the log
        self.floor_ticks = 0  # ticks whose period the floor set
        self._pending: RawChanges = set()
        if previous is not None:
            # Carry the old view over a rebuild so that nothing changed during it is missed.
            known = {path: sig for path, sig in previous.items() if os.path.dirname(path) in self.folder_at}
            self._pending = diff(known, self.snapshot)
        self._plan()
        self.next_tick = time.monotonic() + self.plan.tick

    @property
    def snapshot(self) -> dict[str, Signature]:
        merged: dict[str, Signature] = {}
        for folder in self.folders:
            merged.update(folder.entries)
        return merged

    @property
    def burst_quiet(self) -> float:
        return self.plan.burst_quiet

    @property
    def settle(self) -> float:
        """A burst stays open this long after its last change: the poller sees a burst one tick at a time."""
        return self.plan.burst_quiet

    def describe(self) -> str:
        files = sum(folder.files for folder in self.folders)
        held = len(self.handles.held)
        return (
            f"{files} files in {len(self.folders)} directories, each looked at every {self.plan.sweep * 1000:.0f}ms "
            f"({POLL_CPU_BUDGET:.1%} CPU budget; {held} held as O_PATH descriptors)"
        )

    def wait(self, timeout_ms: int, stop: StopFlag) -> Union[RawChanges, str]:
        """Poll whenever a tick comes round until something changed or ``timeout_ms`` passed."""
        if self._pending:
            changes, self._pending = self._pending, set()
            return changes
        deadline = time.monotonic() + timeout_ms / 1000
        mark = time.thread_time()
        while not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                return "timeout"
            if now < self.next_tick:
                time.sleep(min(self.next_tick, deadline) - now)
                continue
            changes = self.poll_once()
            spent, mark = time.thread_time() - mark, time.thread_time()
            self.tick_cost += COST_SMOOTHING * (spent - self.tick_cost)
            # Ticks keep their period whatever a poll took, so every entry is looked at every
            # sweep; one that fell behind (a slow mount) starts the count again.
            period = self.plan.burst_tick if self._bursting() else self._tick_period()
            self.next_tick += period
            if self.next_tick < time.monotonic():
                self.next_tick = time.monotonic() + period
            if changes:
                return changes
        return "stop"

    def _tick_period(self) -> float:
        """The planned tick, or longer if a whole tick costs more than the budget allows.

        The plan prices the stats of a slice only. Each tick also pays for waking up, its own
        bookkeeping and, once a sweep, listing one directory in full: on a one-file tree at
        ``-P 1`` that was ~0.13 ms a tick, 13 % of a core. So the CPU the thread really spent
        per tick (sleeping included) sets a floor under the period."""
        floor = self.tick_cost / POLL_CPU_BUDGET
        if floor <= self.plan.tick:
            return self.plan.tick
        self.floor_ticks += 1
        last = self.reported_floor
        settled = self.floor_ticks >= FLOOR_REPORT_AFTER_TICKS  # the smoothed cost has converged by then
        if settled and (last is None or floor > last * FLOOR_REPORT_RATIO):
            self.reported_floor = floor
            out.info(
                f"polling every {floor * 1000:.0f}ms rather than every {self.interval * 1000:g}ms: each look "
                f"costs {self.tick_cost * 1000:.2f}ms of CPU, and polling stays under {POLL_CPU_BUDGET:.1%} of a core"
            )
        return floor

    def close(self) -> None:
        self.handles.close_all()  # every folder's descriptors: the folders go with the poller
        self.folders = []

    # -- one tick ------------------------------------------------------------------------------
    def poll_once(self) -> RawChanges:
        bursting = self._bursting()
        changes = self._check_hot()
        changes |= self._sweep_slice(self.plan.burst_slice if bursting else self.plan.slice)
        if changes:
            self.burst_until = time.monotonic() + self.burst_quiet
        self._remember(changes)
        return changes

    def _bursting(self) -> bool:
        return time.monotonic() < self.burst_until

    def _sweep_slice(self, weight: int) -> RawChanges:
        """Sweep folders from the cursor on until ``weight`` entries were looked at (or all were)."""
        changes: RawChanges = set()
        started = time.thread_time()  # CPU, not wall: a busy machine or a slow mount is no reason to stretch
        listing = 0.0  # of which listing what changed: not the cost of looking
        looked = 0
        for _ in range(len(self.folders)):
            if looked >= weight:
                break
            folder = self.folders[self.cursor]
            self.cursor = (self.cursor + 1) % len(self.folders)
            looked += folder.weight
            if folder.changed():
                began = time.thread_time()
                changes |= folder.relist()
                listing += time.thread_time() - began
            if self.cursor == 0:  # a sweep is complete
                began = time.thread_time()
                changes |= self._list_one_in_full()
                listing += time.thread_time() - began
                self._plan()
        if looked:
            measured = (time.thread_time() - started - listing) / looked
            self.entry_cost += COST_SMOOTHING * (measured - self.entry_cost)
        return changes

    def _list_one_in_full(self) -> RawChanges:
        """A safety net for file systems with coarse directory mtimes: an entry added within the
        same tick of the clock as the previous change leaves the directory's stat unchanged."""
        folder = self.folders[self.safety_cursor % len(self.folders)]
        self.safety_cursor += 1
        return folder.relist()

    def _plan(self) -> None:
        self.plan = plan_sweep(sum(folder.weight for folder in self.folders), self.entry_cost, self.interval)
        self._report_stretch()

    def _report_stretch(self) -> None:
        spread = self.interval + SWEEP_SLACK
        if self.plan.sweep <= spread * 1.01:
            if self.reported_sweep is not None:
                out.info(f"polling: each file is looked at within {self.plan.sweep * 1000:.0f}ms again")
            self.reported_sweep = None
            return
        last = self.reported_sweep
        if last is None or not last / STRETCH_REPORT_RATIO < self.plan.sweep < last * STRETCH_REPORT_RATIO:
            self.reported_sweep = self.plan.sweep
            files = sum(folder.files for folder in self.folders)
            out.info(
                f"polling {files} files: each is looked at every {self.plan.sweep * 1000:.0f}ms, not within "
                f"{spread * 1000:.0f}ms, to keep polling under {POLL_CPU_BUDGET:.1%} of a core "
                "(ignore what need not be watched, or raise the interval)"
            )

    def _check_hot(self) -> RawChanges:
        """Recently changed files, one lstat each; a file that differs gets its directory listed again."""
        changes: RawChanges = set()
        for path in list(self.hot):
            folder = self.folder_at.get(os.path.dirname(path))
            if folder is None:
                continue
            known = folder.entries.get(path)
            if known is None:  # gone from the listing, and reported so
                self.hot.pop(path, None)
                continue
            try:
                st: Optional[os.stat_result] = os.lstat(path)
            except OSError:
                st = None
            if st is None or (st.st_mtime_ns, st.st_size) != known[:2]:
                changes |= folder.relist()
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
