"""reloadd's inotify reader against the real kernel: what it reports, and that it waits without waking."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from reloadd.host.watch.inotify import Inotify
from reloadd.host.watch.raw_changes import CHANGE_ADDED, CHANGE_DELETED, CHANGE_MODIFIED

EVENT_WAIT = 5.0  # seconds: generous, a loaded machine delivers within milliseconds


def watching(*dirs: Path) -> Inotify:
    inotify = Inotify()
    for directory in dirs:
        assert inotify.add(str(directory)) == 0
    return inotify


def changes_after(inotify: Inotify, wake: int) -> set[tuple[int, str]]:
    assert inotify.wait(EVENT_WAIT, wake), "no event within the deadline"
    return inotify.read()


def test_a_new_file_is_one_change_and_a_removed_one_another(tmp_path: Path) -> None:
    wake_read, wake_write = os.pipe()
    inotify = watching(tmp_path)
    try:
        (tmp_path / "a.js").write_text("x")  # create, modify, close: one change
        assert changes_after(inotify, wake_read) == {(CHANGE_ADDED, str(tmp_path / "a.js"))}
        (tmp_path / "a.js").write_text("y")
        assert (CHANGE_MODIFIED, str(tmp_path / "a.js")) in changes_after(inotify, wake_read)
        (tmp_path / "a.js").rename(tmp_path / "b.js")
        assert changes_after(inotify, wake_read) == {
            (CHANGE_DELETED, str(tmp_path / "a.js")),
            (CHANGE_ADDED, str(tmp_path / "b.js")),
        }
    finally:
        inotify.close()
        os.close(wake_read)
        os.close(wake_write)


def test_a_name_that_is_not_utf8_is_reported_like_any_other(tmp_path: Path) -> None:
    wake_read, wake_write = os.pipe()
    inotify = watching(tmp_path)
    try:
        with open(os.path.join(os.fsencode(tmp_path), b"bad\xff.js"), "w") as bad:
            bad.write("x")
        assert changes_after(inotify, wake_read) == {(CHANGE_ADDED, os.fsdecode(bytes(tmp_path) + b"/bad\xff.js"))}
    finally:
        inotify.close()
        os.close(wake_read)
        os.close(wake_write)


def test_a_watched_directory_that_goes_away_says_so(tmp_path: Path) -> None:
    wake_read, wake_write = os.pipe()
    root = tmp_path / "root"
    root.mkdir()
    inotify = watching(root)
    try:
        shutil.rmtree(root)
        inotify.wait(EVENT_WAIT, wake_read)
        inotify.read()
        assert inotify.lost_self
        assert inotify.paths == {}  # the kernel dropped the watch (IN_IGNORED)
    finally:
        inotify.close()
        os.close(wake_read)
        os.close(wake_write)


def test_with_nothing_happening_the_wait_ends_only_by_its_timeout_or_the_wake_pipe(tmp_path: Path) -> None:
    wake_read, wake_write = os.pipe()
    inotify = watching(tmp_path)
    try:
        assert inotify.wait(0.05, wake_read) is False
        os.write(wake_write, b"x")
        assert inotify.wait(EVENT_WAIT, wake_read) is False  # woken, no event
    finally:
        inotify.close()
        os.close(wake_read)
        os.close(wake_write)


def test_add_reports_the_kernels_errno(tmp_path: Path) -> None:
    inotify = Inotify()
    try:
        assert inotify.add(str(tmp_path / "missing")) == errno.ENOENT
        (tmp_path / "file").write_text("x")
        assert inotify.add(str(tmp_path / "file")) == errno.ENOTDIR  # directories only
    finally:
        inotify.close()
