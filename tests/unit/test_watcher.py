"""The watcher thread on a real directory: what it reports, in which order, and how it recovers."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest
from support import wait_for

from reloadd.host.watch import watcher as watcher_module
from reloadd.host.watch.notifiers import InotifyNotifier, NotifierKind, WatchfilesNotifier, notifier_kind
from reloadd.host.watch.watcher import Watcher, WatchReport
from reloadd.output import out
from reloadd.setup.matching import Rules
from reloadd.setup.settings import Settings


class Reports:
    def __init__(self) -> None:
        self.items: list[WatchReport] = []
        self.lock = threading.Lock()

    def __call__(self, report: WatchReport) -> None:
        with self.lock:
            self.items.append(report)

    def all(self) -> list[WatchReport]:
        with self.lock:
            return list(self.items)

    def paths(self) -> set[str]:
        return set().union(*(r.paths for r in self.all()))


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    stream = io.StringIO()
    monkeypatch.setattr(out, "stream", stream)
    return stream


@pytest.fixture
def watch_with(tmp_path: Path) -> Iterator[Callable[[Optional[NotifierKind], bool], tuple[Watcher, Reports]]]:
    """Start a watcher on tmp_path with the given notifier (and report_dirs, as `reloadd sync` asks)."""
    started: list[Watcher] = []

    def start(notifier: Optional[NotifierKind], report_dirs: bool) -> tuple[Watcher, Reports]:
        reports = Reports()
        rules = Rules(Settings(), cwd=tmp_path, script=None, extensions=["js"])
        watcher = Watcher(
            rules, legacy_watch=False, poll_interval_ms=100, report=reports, report_dirs=report_dirs, notifier=notifier
        )
        watcher.start()
        started.append(watcher)
        return watcher, reports

    yield start
    for watcher in started:
        watcher.stop()


@pytest.fixture
def watch(
    watch_with: Callable[[Optional[NotifierKind], bool], tuple[Watcher, Reports]],
) -> Callable[[], tuple[Watcher, Reports]]:
    return lambda: watch_with(None, False)


def test_start_reports_the_settle_time_with_nothing_busy(watch: Callable[[], tuple[Watcher, Reports]]) -> None:
    _, reports = watch()
    assert reports.all() == [WatchReport(frozenset(), False, 0.0)]


def test_busy_is_reported_before_a_rebuild_and_the_paths_with_busy_cleared_after(
    tmp_path: Path, watch: Callable[[], tuple[Watcher, Reports]]
) -> None:
    _, reports = watch()
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a.js").write_text("x")
    target = str(tmp_path / "new" / "a.js")
    wait_for(lambda: target in reports.paths(), what=f"a.js reported: {reports.all()}")
    history = reports.all()[1:]
    first_with_path = next(index for index, r in enumerate(history) if target in r.paths)
    assert any(r.busy and not r.paths for r in history[:first_with_path]), history
    assert not history[first_with_path].busy and not history[-1].busy, history
    assert all(not r.busy for r in history if r.paths), history


def test_what_the_replaced_inotify_instance_still_held_is_handed_over_by_a_rebuild(tmp_path: Path) -> None:
    """A file made after the last read and before a rebuild is heard only by the old instance.

    The watcher thread is not started: the rebuild is driven by hand, so the window is certain."""
    rules = Rules(Settings(), cwd=tmp_path, script=None, extensions=["js"])
    watcher = Watcher(rules, legacy_watch=False, poll_interval_ms=100, report=Reports(), notifier="inotify")
    watcher._rebuild(initial=True)
    try:
        (tmp_path / "made-in-between.js").write_text("x")
        watcher._rebuild()
        os.write(watcher._wake_write, b"x")  # without the hand-over the wait must still return
        changes = watcher._wait_for_raw()
        assert str(tmp_path / "made-in-between.js") in {path for _, path in changes}, changes
    finally:
        for notifier in watcher._notifiers:
            notifier.close()
        os.close(watcher._wake_read)
        os.close(watcher._wake_write)


def test_a_directory_made_again_under_its_old_name_has_its_new_files_looked_for(tmp_path: Path) -> None:
    """src is deleted and made again, and a file written in it, before the watcher reads the events:
    the new src is unwatched when its file is made, so only a look into it can find that file.

    The watcher thread is not started: the events are read and handled by hand, so the order is certain."""
    (tmp_path / "src" / "sub").mkdir(parents=True)
    rules = Rules(Settings(), cwd=tmp_path, script=None, extensions=["js"])
    reports = Reports()
    watcher = Watcher(rules, legacy_watch=False, poll_interval_ms=100, report=reports, notifier="inotify")
    watcher._rebuild(initial=True)
    try:
        shutil.rmtree(tmp_path / "src")
        (tmp_path / "src" / "sub").mkdir(parents=True)
        (tmp_path / "src" / "sub" / "mod.js").write_text("x")
        for _ in range(3):  # the deletion and the creation may come in more than one read
            os.write(watcher._wake_write, b"x")
            raw = watcher._wait_for_raw()
            if raw:
                watcher._handle(raw)
        assert str(tmp_path / "src" / "sub" / "mod.js") in reports.paths(), reports.all()
    finally:
        for notifier in watcher._notifiers:
            notifier.close()
        os.close(watcher._wake_read)
        os.close(watcher._wake_write)


def test_an_error_in_the_watcher_thread_is_logged_and_watching_recovers_with_the_lost_change(
    tmp_path: Path, watch: Callable[[], tuple[Watcher, Reports]], log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "WATCHER_RETRY_PAUSE", 0.05)
    original = Watcher._handle
    failures: list[int] = []

    def fail_once(self: Watcher, raw: set[tuple[int, str]]) -> None:
        if not failures:
            failures.append(1)
            raise ValueError("boom")
        original(self, raw)

    monkeypatch.setattr(Watcher, "_handle", fail_once)
    _, reports = watch()
    (tmp_path / "lost.js").write_text("x")  # its batch is the one that fails
    wait_for(lambda: str(tmp_path / "lost.js") in reports.paths(), what=f"the change caught up: {log.getvalue()}")
    text = log.getvalue()
    assert "watcher failed (ValueError: boom); watching again in 0.05s" in text and "watching again" in text, text
    assert not reports.all()[-1].busy
    (tmp_path / "later.js").write_text("y")
    wait_for(lambda: str(tmp_path / "later.js") in reports.paths(), what="a later change")


@pytest.fixture
def proc_inside(tmp_path: Path) -> Iterator[Path]:
    """A proc file system mounted inside the watched tree, as / holds /proc."""
    target = tmp_path / "proc"
    target.mkdir()
    if subprocess.run(["mount", "-t", "proc", "proc", str(target)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount proc here (needs root)")
    yield target
    subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_walk_never_enters_a_kernel_view_below_a_root(
    tmp_path: Path, proc_inside: Path, watch: Callable[[], tuple[Watcher, Reports]]
) -> None:
    """`--watch /` walked /proc (a directory per task and descriptor): minutes and hundreds of MB."""
    (tmp_path / "src").mkdir()
    watcher, _ = watch()
    assert watcher.watch_count() == 2  # tmp_path and src: nothing under proc


def test_a_big_walk_says_so_at_once(
    tmp_path: Path, watch: Callable[[], tuple[Watcher, Reports]], log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "BIG_WALK_DIRS", 20)
    for index in range(30):
        (tmp_path / f"d{index}").mkdir()
    watch()
    (line,) = [line for line in log.getvalue().splitlines() if "walking" in line]
    assert f"walking {tmp_path}: over 20 directories to watch so far" in line, log.getvalue()


def test_a_second_stop_touches_no_descriptor(watch: Callable[[], tuple[Watcher, Reports]]) -> None:
    watcher, _ = watch()
    watcher.stop()
    spare_read, spare_write = os.pipe()  # may take the numbers the watcher's wake pipe had
    try:
        watcher.stop()  # the fixture stops it once more too
        os.write(spare_write, b"ok")
        assert os.read(spare_read, 10) == b"ok"  # still open, and nothing else was written into it
    finally:
        os.close(spare_read)
        os.close(spare_write)


class LibcWithInotify:
    def inotify_init1(self, flags: int) -> int:
        return -1


def test_the_notifier_is_inotify_where_libc_has_it_and_watchfiles_where_it_has_not() -> None:
    """macOS and the BSDs have no inotify_init1: calling it there raised AttributeError at start."""
    assert notifier_kind(LibcWithInotify()) == "inotify"
    assert notifier_kind(object()) == "watchfiles"


def test_on_linux_the_watcher_chooses_the_inotify_reader_by_itself(
    watch: Callable[[], tuple[Watcher, Reports]], log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(out, "verbose", True)
    watcher, _ = watch()  # no notifier given: what libc offers
    assert watcher.notifier == "inotify" and [type(n) for n in watcher._notifiers] == [InotifyNotifier]
    assert "notifier: inotify (reloadd's own inotify reader)" in log.getvalue(), log.getvalue()


@pytest.mark.parametrize("report_dirs", [False, True], ids=["supervisor", "sync-laptop"])
def test_the_watchfiles_notifier_reports_a_change_a_new_directorys_file_and_a_delete(
    tmp_path: Path,
    watch_with: Callable[[Optional[NotifierKind], bool], tuple[Watcher, Reports]],
    log: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    report_dirs: bool,
) -> None:
    """What a Mac gets (watchfiles, FSEvents there): the same reports through the same Watcher."""
    monkeypatch.setattr(out, "verbose", True)
    (tmp_path / "old.js").write_text("1")
    (tmp_path / "gone.js").write_text("1")
    (tmp_path / "node_modules" / "pkg").mkdir(parents=True)
    watcher, reports = watch_with("watchfiles", report_dirs)
    assert [type(n) for n in watcher._notifiers] == [WatchfilesNotifier]
    assert watcher._notifiers[0].dirs == {str(tmp_path)}  # node_modules pruned, as with inotify
    text = log.getvalue()
    assert "notifier: watchfiles" in text and f"watching {tmp_path} with watchfiles" in text, text
    assert "max_user_watches" not in text and "polling" not in text, text

    (tmp_path / "old.js").write_text("2")
    wait_for(lambda: str(tmp_path / "old.js") in reports.paths(), what=f"the change: {reports.all()}")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "new.js").write_text("x")
    wait_for(lambda: str(tmp_path / "src" / "new.js") in reports.paths(), what=f"the new dir's file: {reports.all()}")
    wait_for(lambda: str(tmp_path / "src") in watcher._known_dirs(), what="src watched")
    (tmp_path / "src" / "later.js").write_text("y")  # heard through the rebuilt notifier, not the scan
    wait_for(lambda: str(tmp_path / "src" / "later.js") in reports.paths(), what=f"a file in src: {reports.all()}")
    (tmp_path / "gone.js").unlink()
    wait_for(lambda: str(tmp_path / "gone.js") in reports.paths(), what=f"the delete: {reports.all()}")
    (tmp_path / "node_modules" / "pkg" / "index.js").write_text("z")
    assert str(tmp_path / "src") in reports.paths() if report_dirs else str(tmp_path / "src") not in reports.paths()
    if report_dirs:  # `reloadd sync` mirrors directories: a removed one is reported too
        shutil.rmtree(tmp_path / "src")
        wait_for(lambda: str(tmp_path / "src") in reports.all()[-1].paths, what=f"src removed: {reports.all()}")
    assert str(tmp_path / "node_modules" / "pkg" / "index.js") not in reports.paths()
    assert not reports.all()[-1].busy
