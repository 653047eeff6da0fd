"""The poller on real directories: what a sweep sees, how it is spread and stretched, descriptors.

These call Poller.poll_once() directly (one tick each) instead of timing a running reloadd:
"every file is looked at once per sweep" is a property of the schedule, and counting ticks
states it without depending on this machine's speed. bench/ measures the times.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Optional

import pytest

from reloadd.host.watch import poller as poller_module
from reloadd.host.watch.poller import (
    BURST_QUIET_TICKS,
    BURST_TICK,
    FULL_RATE_BUDGET,
    POLL_CPU_BUDGET,
    SWEEP_SLACK,
    Poller,
    plan_sweep,
)
from reloadd.host.watch.raw_changes import CHANGE_ADDED, CHANGE_DELETED, CHANGE_MODIFIED, RawChanges
from reloadd.output import out

DIRS, FILES = 12, 8  # a tree of 12 directories of 8 files (+ the root): 109 entries
INTERVAL_MS = 100
BENCH_COST = 1.7e-6  # seconds per entry measured in place on the bench tree (poller.py)
SPREAD_COST = FULL_RATE_BUDGET * INTERVAL_MS / 1000 / (DIRS * (FILES + 1) + 1) * 4  # 4x over "nearly free"


def make_tree(root: Path) -> set[str]:
    for d in range(DIRS):
        (root / f"d{d}").mkdir(parents=True)
        for f in range(FILES):
            (root / f"d{d}" / f"f{f}.js").write_text(f"module.exports = {f};\n")
    return {str(root)} | {str(root / f"d{d}") for d in range(DIRS)}


def edit_in_place(path: Path) -> None:
    """Same size, same inode, directory untouched: what an editor or a FUSE/NFS client does."""
    text = path.read_text()
    with open(path, "r+") as handle:
        handle.write(text.replace(" = ", " =\t", 1))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a coarse clock still moves


def ticks_until(poller: Poller, wanted: tuple[int, str], limit: int) -> int:
    """Ticks (poll_once calls) until ``wanted`` is reported; fails past ``limit``."""
    seen: RawChanges = set()
    for tick in range(1, limit + 1):
        seen |= poller.poll_once()
        if wanted in seen:
            return tick
    raise AssertionError(f"{wanted} not reported within {limit} ticks; saw {sorted(seen)}")


@pytest.fixture
def frozen_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the cost per entry at SPREAD_COST, so the sweep is spread and the plan stays put."""
    monkeypatch.setattr(poller_module, "INITIAL_ENTRY_COST", SPREAD_COST)
    monkeypatch.setattr(poller_module, "COST_SMOOTHING", 0.0)


@pytest.fixture
def no_bursts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A change does not make the next ticks sweep everything: the slices alone must see it."""
    monkeypatch.setattr(poller_module, "BURST_QUIET_TICKS", 0.0)


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    stream = io.StringIO()
    monkeypatch.setattr(out, "stream", stream)
    return stream


# ---------------------------------------------------------------- the plan


@pytest.mark.parametrize(
    ("entries", "cost", "interval", "sweep", "ticks"),
    [
        (10, BENCH_COST, 0.1, 0.1, 1),  # nearly free: every interval, like nodemon
        (290, BENCH_COST, 0.1, 0.1, 1),  # still under FULL_RATE_BUDGET
        (2206, BENCH_COST, 0.1, 0.1 + SWEEP_SLACK, 2),  # the bench tree: spread, within interval + 100 ms
        (2206, BENCH_COST, 1.0, 1.0, 1),  # a slow interval makes the same tree nearly free
        (1000, BENCH_COST, 0.05, 0.05 + SWEEP_SLACK, 3),
        (200_000, BENCH_COST, 0.1, 200_000 * BENCH_COST / POLL_CPU_BUDGET, 136),  # huge: stretched to the budget
    ],
)
def test_the_sweep_is_every_interval_spread_or_stretched(
    entries: int, cost: float, interval: float, sweep: float, ticks: int
) -> None:
    plan = plan_sweep(entries, cost, interval)
    assert plan.sweep == pytest.approx(sweep)
    assert plan.tick == pytest.approx(sweep / ticks)
    assert plan.slice == math.ceil(entries / ticks)


@pytest.mark.parametrize("entries", [1, 50, 500, 2206, 20_000, 400_000])
@pytest.mark.parametrize("cost", [0.3e-6, BENCH_COST, 10e-6])
@pytest.mark.parametrize("interval", [0.05, 0.1, 0.5, 2.0])
def test_every_plan_keeps_its_promises(entries: int, cost: float, interval: float) -> None:
    plan = plan_sweep(entries, cost, interval)
    ticks = round(plan.sweep / plan.tick)
    assert ticks * plan.slice >= entries, "the slices of one sweep cover every entry"
    assert plan.tick <= interval + 1e-9, "recently changed files are looked at every interval"
    if entries * cost / (interval + SWEEP_SLACK) <= POLL_CPU_BUDGET:
        assert plan.sweep <= interval + 0.1, "a change is seen within interval + 100 ms when the budget allows"
    else:
        assert entries * cost / plan.sweep == pytest.approx(POLL_CPU_BUDGET), "a stretched sweep holds the budget"
    assert plan.burst_ticks * plan.burst_slice >= entries, "burst ticks cover every entry"
    assert plan.burst_tick <= BURST_TICK
    assert plan.burst_quiet == pytest.approx((plan.burst_ticks - 1 + BURST_QUIET_TICKS) * plan.burst_tick)


def test_a_stretched_sweep_is_logged_once_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: io.StringIO
) -> None:
    dirs = make_tree(tmp_path)
    monkeypatch.setattr(poller_module, "INITIAL_ENTRY_COST", 1.0)  # a second a stat: far past the budget
    monkeypatch.setattr(poller_module, "COST_SMOOTHING", 0.0)
    poller = Poller(dirs, INTERVAL_MS)
    for _ in range(3):
        poller.poll_once()
    lines = [line for line in log.getvalue().splitlines() if "looked at every" in line]
    assert len(lines) == 1, log.getvalue()
    assert f"{DIRS * FILES} files" in lines[0] and f"{POLL_CPU_BUDGET:.1%} of a core" in lines[0], lines[0]
    poller.close()


def test_a_tick_that_costs_more_than_the_budget_lengthens_the_period_and_says_so_once(
    tmp_path: Path, log: io.StringIO
) -> None:
    """The plan prices stats only; a whole tick (wake-up, bookkeeping, the per-sweep listing) has a cost too."""
    poller = Poller(make_tree(tmp_path), 1)  # -P 1 on a small tree: the plan ticks every millisecond
    assert poller.plan.tick == pytest.approx(0.001)
    poller.tick_cost = 0.0002  # measured: 0.2 ms of CPU a tick, 20 % of a core at that rate
    periods = [poller._tick_period() for _ in range(poller_module.FLOOR_REPORT_AFTER_TICKS + 5)]
    assert periods[-1] == pytest.approx(0.0002 / POLL_CPU_BUDGET)
    lines = [line for line in log.getvalue().splitlines() if "rather than every 1ms" in line]
    assert len(lines) == 1 and f"under {POLL_CPU_BUDGET:.1%} of a core" in lines[0], log.getvalue()
    poller.tick_cost = 0.0
    assert poller._tick_period() == pytest.approx(0.001)
    poller.close()


# ---------------------------------------------------------------- what a sweep sees


@pytest.mark.usefixtures("frozen_cost", "no_bursts")
@pytest.mark.parametrize("fd_allowance", [None, 0, 30], ids=["descriptors", "paths", "mixed"])
def test_an_in_place_edit_of_any_file_is_seen_within_one_sweep(tmp_path: Path, fd_allowance: Optional[int]) -> None:
    poller = Poller(make_tree(tmp_path), INTERVAL_MS, fd_allowance=fd_allowance)
    ticks = round(poller.plan.sweep / poller.plan.tick)
    assert ticks == 2, f"the test wants a spread sweep: {poller.plan}"
    for d in range(DIRS):
        for f in (0, FILES - 1):
            path = tmp_path / f"d{d}" / f"f{f}.js"
            edit_in_place(path)
            ticks_until(poller, (CHANGE_MODIFIED, str(path)), ticks)
    poller.close()


@pytest.mark.usefixtures("frozen_cost", "no_bursts")
@pytest.mark.parametrize("fd_allowance", [None, 0], ids=["descriptors", "paths"])
def test_added_removed_and_renamed_into_place_files_are_seen_within_one_sweep(
    tmp_path: Path, fd_allowance: Optional[int]
) -> None:
    poller = Poller(make_tree(tmp_path), INTERVAL_MS, fd_allowance=fd_allowance)
    ticks = round(poller.plan.sweep / poller.plan.tick)
    added = tmp_path / "d5" / "new.js"
    added.write_text("module.exports = 'new';\n")
    ticks_until(poller, (CHANGE_ADDED, str(added)), ticks)
    removed = tmp_path / "d9" / "f3.js"
    removed.unlink()
    ticks_until(poller, (CHANGE_DELETED, str(removed)), ticks)
    target = tmp_path / "d2" / "f1.js"
    temp = tmp_path / "d2" / ".f1.js.tmp"
    temp.write_text("module.exports = 'synced';\n")
    temp.rename(target)
    ticks_until(poller, (CHANGE_MODIFIED, str(target)), ticks)
    # The descriptor now follows the new inode: an in-place edit of it is seen as well.
    edit_in_place(target)
    ticks_until(poller, (CHANGE_MODIFIED, str(target)), ticks)
    poller.close()


@pytest.mark.usefixtures("frozen_cost")
def test_after_a_change_every_tick_sweeps_everything_until_the_burst_is_over(tmp_path: Path) -> None:
    poller = Poller(make_tree(tmp_path), INTERVAL_MS)
    assert poller.plan.burst_ticks == 1, poller.plan
    first = tmp_path / "d0" / "f0.js"
    edit_in_place(first)
    ticks_until(poller, (CHANGE_MODIFIED, str(first)), 2)
    # The rest of the "sync" lands anywhere in the tree: the very next tick sees all of it.
    rest = [tmp_path / f"d{d}" / "f4.js" for d in range(DIRS)]
    for path in rest:
        edit_in_place(path)
    assert {(CHANGE_MODIFIED, str(path)) for path in rest} <= poller.poll_once()
    poller.close()


def test_watch_reports_on_the_burst_tick_not_the_slow_one(tmp_path: Path) -> None:
    """After a change the poller ticks every BURST_TICK: a burst stays open ~45 ms, not 1.5 intervals."""
    poller = Poller(make_tree(tmp_path), 1000)  # 1 s ticks
    assert poller.burst_quiet == pytest.approx(BURST_QUIET_TICKS * BURST_TICK)
    poller.next_tick = 0.0  # tick now

    class Never:
        def is_set(self) -> bool:
            return False

    edit_in_place(tmp_path / "d1" / "f1.js")
    assert poller.wait(5000, Never())
    edit_in_place(tmp_path / "d2" / "f2.js")
    assert (CHANGE_MODIFIED, str(tmp_path / "d2" / "f2.js")) in poller.wait(500, Never())
    poller.close()


# ---------------------------------------------------------------- descriptors


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_descriptors_follow_the_entries_and_close_with_the_poller(tmp_path: Path) -> None:
    dirs = make_tree(tmp_path)
    entries = DIRS * (FILES + 1) + 1
    before = open_descriptors()
    poller = Poller(dirs, INTERVAL_MS)
    assert open_descriptors() == before + entries
    for index in range(5):
        added = tmp_path / "d4" / f"new{index}.js"
        added.write_text("x")
        ticks_until(poller, (CHANGE_ADDED, str(added)), 4)
        added.unlink()
        ticks_until(poller, (CHANGE_DELETED, str(added)), 4)
        replaced = tmp_path / "d2" / "f1.js"
        (tmp_path / "d2" / "tmp").write_text(f"module.exports = {index};\n")
        (tmp_path / "d2" / "tmp").rename(replaced)
        ticks_until(poller, (CHANGE_MODIFIED, str(replaced)), 4)
    assert open_descriptors() == before + entries, "one descriptor per entry that exists, none for the gone"
    poller.close()
    assert open_descriptors() == before


def test_descriptors_stay_within_the_allowance(tmp_path: Path) -> None:
    before = open_descriptors()
    poller = Poller(make_tree(tmp_path), INTERVAL_MS, fd_allowance=40)
    assert open_descriptors() == before + 40
    (tmp_path / "d7" / "new.js").write_text("x")
    ticks_until(poller, (CHANGE_ADDED, str(tmp_path / "d7" / "new.js")), 4)
    assert open_descriptors() == before + 40
    poller.close()
    assert open_descriptors() == before


def test_by_default_every_entry_of_a_small_tree_is_held(tmp_path: Path) -> None:
    poller = Poller(make_tree(tmp_path), INTERVAL_MS)
    assert len(poller.handles.held) == DIRS * (FILES + 1) + 1
    poller.close()
