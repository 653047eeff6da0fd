"""Watching on real file systems: FUSE mounts, inotify limits, late and vanishing roots, temp files.

Each test runs the installed reloadd on the small HTTP app (support.SERVER_JS) and counts app
starts in its starts.log, so "restarted" means a new node process really ran.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from fs_support import (
    bindfs_mount,
    failing_inotify_prefix,
    fuse_missing_reason,
    hold,
    inotify_limit_prefix,
    inotify_names_seen,
    inotify_watch_count,
    mount_entry,
    userns_can_limit_inotify,
)
from support import Reloadd, make_app, served_version, starts, touch, wait_for

from reloadd.host.watch.bursts import GROUP_QUIET

RunReloadd = Callable[..., Reloadd]

POLL_RESTART_BOUND = 5.0  # seconds: a 100 ms poll interval plus generous slack for a loaded CI box
QUIET = 1.0  # seconds with nothing happening that count as "no (further) restart": >> grouping window, 10 polls
WATCH_SLACK = 4  # extra inotify watches tolerated beyond one per watched directory (parents of roots etc.)
SOURCE_DIRS = 5  # src0..src4 next to server.js: with the root, 6 directories deserve a watch
IGNORED_PACKAGES = 50  # node_modules/pkg0..pkg49: enough that watching them is unmistakable
SMALL_INOTIFY_LIMIT = 2  # watches allowed in the user namespace: fewer than the tree's directories

MODES = {"native": [], "polling": ["-L"]}
# "all" makes the extension filter accept everything, so only the temp-file rules can keep
# `~syncthing~mod.js.tmp` or `4913` out; the app's own output files must then be ignored by name.
EXTS = {"default": [], "all": ["-e", "*", "-i", "starts.log", "-i", "port"]}

fuse = pytest.mark.fuse
needs_fuse = pytest.mark.skipif(fuse_missing_reason() is not None, reason=fuse_missing_reason() or "")


# ---------------------------------------------------------------- helpers


def restart_lines(runner: Reloadd) -> int:
    return runner.log().count("restarting due to changes")


def wait_starts(runner: Reloadd, app: Path, count: int, timeout: float = 10.0) -> None:
    wait_for(
        lambda: len(starts(app)) >= count,
        timeout,
        what=f"{count} app start(s) (have {len(starts(app))}); log:\n{runner.log()}",
    )


def hold_starts(runner: Reloadd, app: Path, count: int, seconds: float = QUIET) -> None:
    """reloadd stays up and the app is started exactly ``count`` times for ``seconds``."""
    wait_starts(runner, app, count)
    hold(
        lambda: runner.proc.poll() is None and len(starts(app)) == count,
        seconds,
        f"exactly {count} app start(s) with reloadd running (have {len(starts(app))}); log:\n{runner.log()}",
    )


def settle(runner: Reloadd, app: Path, timeout: float = 15.0) -> int:
    """Wait until nothing happens for QUIET seconds (no log line, no app start); return the starts."""
    end = time.monotonic() + timeout
    while True:
        before = (len(starts(app)), runner.log())
        try:
            hold(functools.partial(_unchanged, runner, app, before), QUIET, "quiet")
            return before[0]
        except AssertionError:
            if time.monotonic() > end:
                raise AssertionError(f"reloadd never settled; log:\n{runner.log()}") from None


def _unchanged(runner: Reloadd, app: Path, snapshot: tuple[int, str]) -> bool:
    return (len(starts(app)), runner.log()) == snapshot


def log_lines_with(runner: Reloadd, *words: str) -> list[str]:
    return [line for line in runner.log().splitlines() if all(word in line for word in words)]


def make_tree(app: Path, packages: int = 0) -> None:
    """Source dirs with a module each, plus ``packages`` dirs under node_modules and a .git."""
    for index in range(SOURCE_DIRS):
        (app / f"src{index}").mkdir()
        (app / f"src{index}" / "mod.js").write_text(f"module.exports = {index};\n")
    for index in range(packages):
        package = app / "node_modules" / f"pkg{index}"
        package.mkdir(parents=True)
        (package / "index.js").write_text("module.exports = {};\n")
        (package / "package.json").write_text(f'{{"name": "pkg{index}"}}\n')
    for name in ("objects/ab", "objects/cd", "refs/heads"):
        (app / ".git" / name).mkdir(parents=True)


# ---------------------------------------------------------------- FUSE (bindfs)


@pytest.fixture
def bindfs_app(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(underlying dir with the app, its bindfs mount point); unmounted after the test."""
    src = make_app(tmp_path / "underlying")
    with bindfs_mount(src, tmp_path / "mnt") as mnt:
        yield src, mnt


@fuse
@needs_fuse
def test_inotify_on_a_bindfs_mount_misses_writes_to_the_underlying_dir(bindfs_app: tuple[Path, Path]) -> None:
    """The premise of the FUSE test below: without polling, reloadd could not see these writes."""
    src, mnt = bindfs_app
    entry = mount_entry(mnt)
    assert entry is not None and entry[1].startswith("fuse"), entry

    def write_both() -> None:
        touch(src / "behind.js")  # what a sync tool or the host does
        touch(mnt / "front.js")  # the positive control: a write through the mount itself

    seen = inotify_names_seen(mnt, write_both)
    assert "front.js" in seen, f"inotify on the mount works at all: {seen}"
    assert "behind.js" not in seen, f"inotify saw a write behind the mount: {seen}"


@fuse
@needs_fuse
def test_a_fuse_mount_is_polled_and_writes_behind_it_restart(
    bindfs_app: tuple[Path, Path], run_reloadd: RunReloadd
) -> None:
    src, mnt = bindfs_app
    runner = run_reloadd(["server.js"], cwd=mnt)
    wait_starts(runner, src, 1)
    wait_for(lambda: served_version(src) == "v1", what=f"the app answering v1; log:\n{runner.log()}")
    assert log_lines_with(runner, "polling", "fuse", str(mnt)), runner.log()
    assert not log_lines_with(runner, "inotify", str(mnt)), runner.log()

    touch(src / "version.js", "module.exports = 'v2';\n")

    wait_starts(runner, src, 2, timeout=POLL_RESTART_BOUND)
    wait_for(lambda: served_version(src) == "v2", what=f"the app answering v2; log:\n{runner.log()}")
    hold_starts(runner, src, 2)


@fuse
@needs_fuse
def test_a_polled_root_and_an_inotify_root_both_restart(
    bindfs_app: tuple[Path, Path], run_reloadd: RunReloadd, tmp_path: Path
) -> None:
    """One watcher thread serves both notifiers in turn; neither may starve the other."""
    src, mnt = bindfs_app
    local = tmp_path / "local"
    local.mkdir()
    runner = run_reloadd(["-w", str(mnt), "-w", str(local), "server.js"], cwd=mnt)
    wait_starts(runner, src, 1)
    assert log_lines_with(runner, "polling", str(mnt)), runner.log()
    assert log_lines_with(runner, "inotify", str(local)), runner.log()

    touch(local / "lib.js")
    hold_starts(runner, src, 2)
    touch(src / "behind.js")
    hold_starts(runner, src, 3)


# ---------------------------------------------------------------- inotify watch accounting


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["-L"], {}),
        (["--legacy-watch"], {}),
        ([], {"RELOADD_POLL": "1"}),
        ([], {"CHOKIDAR_USEPOLLING": "1"}),
    ],
    ids=["-L", "--legacy-watch", "RELOADD_POLL", "CHOKIDAR_USEPOLLING"],
)
def test_polling_holds_no_inotify_watches(
    app: Path, run_reloadd: RunReloadd, args: list[str], env: dict[str, str]
) -> None:
    make_tree(app, packages=5)
    runner = run_reloadd(args + ["server.js"], cwd=app, env=env)
    wait_starts(runner, app, 1)
    assert log_lines_with(runner, "polling", str(app)), runner.log()
    hold(lambda: inotify_watch_count(runner.pid) == 0, QUIET, "zero inotify watches in reloadd's process tree")

    touch(app / "src4" / "mod.js")

    wait_starts(runner, app, 2, timeout=POLL_RESTART_BOUND)
    assert inotify_watch_count(runner.pid) == 0


def descriptors_into(pid: int, root: Path) -> list[str]:
    """What ``pid``'s open descriptors point to under ``root``."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed while we looked
        if target.startswith(str(root) + os.sep):
            found.append(target)
    return found


def test_the_pollers_descriptors_stay_out_of_the_app(app: Path, run_reloadd: RunReloadd) -> None:
    make_tree(app, packages=5)
    runner = run_reloadd(["-L", "server.js"], cwd=app)
    wait_starts(runner, app, 1)
    held = descriptors_into(runner.pid, app)
    assert str(app / "src4" / "mod.js") in held, f"reloadd should poll through held descriptors: {held}"

    touch(app / "src4" / "mod.js")
    wait_starts(runner, app, 2, timeout=POLL_RESTART_BOUND)

    assert descriptors_into(starts(app)[-1], app) == [], "the app inherited the poller's descriptors"


def test_native_watching_skips_ignored_directories(app: Path, run_reloadd: RunReloadd) -> None:
    make_tree(app, packages=IGNORED_PACKAGES)
    runner = run_reloadd(["server.js"], cwd=app)
    wait_starts(runner, app, 1)
    assert log_lines_with(runner, "inotify", str(app)), runner.log()
    wanted = 1 + SOURCE_DIRS
    counts: list[int] = []

    def sample() -> int:
        counts.append(inotify_watch_count(runner.pid))
        return counts[-1]

    wait_for(lambda: sample() >= wanted, what=f"{wanted} watches; log:\n{runner.log()}")
    try:
        hold(lambda: sample() <= wanted + WATCH_SLACK, QUIET, f"at most {wanted} + {WATCH_SLACK} watches")
    except AssertionError as failure:
        raise AssertionError(f"{failure}: counted {counts}; log:\n{runner.log()}") from None
    assert max(counts) <= wanted + WATCH_SLACK, f"watches over time: {counts}"

    touch(app / "node_modules" / "pkg7" / "index.js")  # ignored: never a restart
    hold_starts(runner, app, 1)
    touch(app / "src3" / "mod.js")
    hold_starts(runner, app, 2)


def test_native_watching_follows_new_directories_but_not_new_packages(app: Path, run_reloadd: RunReloadd) -> None:
    make_tree(app, packages=IGNORED_PACKAGES)
    runner = run_reloadd(["server.js"], cwd=app)
    wait_starts(runner, app, 1)
    wanted = 1 + SOURCE_DIRS
    wait_for(lambda: inotify_watch_count(runner.pid) >= wanted, what=f"{wanted} watches; log:\n{runner.log()}")

    for index in range(IGNORED_PACKAGES, 2 * IGNORED_PACKAGES):  # an `npm install` after start
        (app / "node_modules" / f"pkg{index}" / "lib").mkdir(parents=True)
    (app / "src9").mkdir()
    (app / "src9" / "new.js").write_text("module.exports = 9;\n")
    hold_starts(runner, app, 2)
    touch(app / "src9" / "new.js")  # the new directory got its own watch
    hold_starts(runner, app, 3)
    assert inotify_watch_count(runner.pid) <= wanted + 1 + WATCH_SLACK


def test_inotify_watch_limit_falls_back_to_polling(app: Path, run_reloadd: RunReloadd) -> None:
    """nodemon dies with `watch ENOSPC` (#907); reloadd warns, polls that root, and keeps working.

    The limit really is tiny where user namespaces allow it (max_inotify_watches is per user
    namespace); elsewhere a wrapper (tests/inotify_fails.py) makes inotify fail with ENOSPC.
    """
    make_tree(app)
    if userns_can_limit_inotify():
        runner = run_reloadd(["server.js"], cwd=app, prefix=inotify_limit_prefix(SMALL_INOTIFY_LIMIT))
    else:
        runner = run_reloadd(["server.js"], cwd=app, prefix=failing_inotify_prefix("ENOSPC"))
    wait_starts(runner, app, 1)
    log = runner.wait_log("fs.inotify.max_user_watches")
    warning = log_lines_with(runner, "fs.inotify.max_user_watches")[0]
    assert re.search(r"fs\.inotify\.max_user_watches\D*\d+", warning), warning
    assert "poll" in log[log.index(warning) :], log
    assert runner.proc.poll() is None, log

    touch(app / f"src{SOURCE_DIRS - 1}" / "mod.js")  # a directory beyond the limit

    wait_starts(runner, app, 2, timeout=POLL_RESTART_BOUND)
    hold_starts(runner, app, 2)


# ---------------------------------------------------------------- long bursts

STREAM_SECONDS = 0.6  # a write stream many times the 20 ms grouping window, well under its 3 s cap
WRITE_GAP = 0.001  # between writes: far inside the window, and leaves reloadd a CPU on a 2-core box
STREAM_ATTEMPTS = 4  # streams tried before giving up on a box too busy to write one without a pause


def write_stream(directory: Path, first: int) -> tuple[int, float]:
    """Write new files for STREAM_SECONDS; return the next index and the longest pause between writes."""
    end = time.monotonic() + STREAM_SECONDS
    index, last, longest = first, time.monotonic(), 0.0
    while time.monotonic() < end:  # new names: the set of changed paths keeps growing
        (directory / f"m{index}.js").write_text(f"module.exports = {index};\n")
        index += 1
        now = time.monotonic()
        longest, last = max(longest, now - last), now
        time.sleep(WRITE_GAP)
    return index, longest


@pytest.mark.parametrize("mode", MODES)
def test_a_stream_of_writes_longer_than_the_quiet_window_is_one_restart(
    app: Path, run_reloadd: RunReloadd, mode: str
) -> None:
    """Writes that never pause (a sync, a build) stay one burst however long they last.

    watchfiles holds events while more keep coming; had it held them past the quiet window,
    the stream would reach the supervisor in late batches, each closing a burst of its own.
    A stream this test could not write without a pause as long as the window (a loaded box
    descheduled it) proves nothing either way: it is written again.
    """
    (app / "gen").mkdir()
    runner = run_reloadd(MODES[mode] + ["server.js"], cwd=app)
    wait_starts(runner, app, 1)
    hold_starts(runner, app, 1)

    index, pauses = 0, []
    for _ in range(STREAM_ATTEMPTS):
        before, restarts = settle(runner, app), restart_lines(runner)
        index, longest = write_stream(app / "gen", index)
        if longest < GROUP_QUIET:
            hold_starts(runner, app, before + 1)
            assert restart_lines(runner) == restarts + 1, runner.log()
            return
        pauses.append(round(longest, 3))
    pytest.fail(f"every stream paused for the grouping window or longer (longest pauses {pauses} s): box too busy")


# ---------------------------------------------------------------- roots that come and go


def appear_by_mkdir(root: Path) -> None:
    root.mkdir()
    (root / "late.js").write_text("module.exports = 'late';\n")


def appear_by_rename(root: Path) -> None:
    """A volume or a first sync landing in one go: the directory shows up already full."""
    staging = root.with_name(root.name + ".staging")
    staging.mkdir()
    (staging / "late.js").write_text("module.exports = 'late';\n")
    staging.rename(root)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("appear", [appear_by_mkdir, appear_by_rename], ids=["mkdir", "rename"])
def test_a_watch_root_created_after_start_is_watched(
    app: Path, run_reloadd: RunReloadd, appear: Callable[[Path], None], mode: str
) -> None:
    runner = run_reloadd(MODES[mode] + ["-w", "later/", "server.js"], cwd=app)
    wait_starts(runner, app, 1)
    hold_starts(runner, app, 1)

    appear(app / "later")

    hold_starts(runner, app, 2)
    touch(app / "later" / "late.js")
    hold_starts(runner, app, 3)


def vanish_by_rmtree(root: Path) -> None:
    shutil.rmtree(root)


def vanish_by_rename(root: Path) -> None:
    root.rename(root.with_name(root.name + ".old"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("vanish", [vanish_by_rmtree, vanish_by_rename], ids=["rmtree", "rename"])
def test_a_watch_root_that_vanishes_and_returns_is_watched_again(
    app: Path, run_reloadd: RunReloadd, vanish: Callable[[Path], None], mode: str
) -> None:
    (app / "src").mkdir()
    (app / "src" / "mod.js").write_text("module.exports = 1;\n")
    runner = run_reloadd(MODES[mode] + ["-w", "src/", "server.js"], cwd=app)
    wait_starts(runner, app, 1)

    vanish(app / "src")
    # Losing files may itself restart the app (nodemon counts removals); let that settle.
    settled = settle(runner, app)
    assert runner.proc.poll() is None, runner.log()

    appear_by_mkdir(app / "src")
    hold_starts(runner, app, settled + 1)
    touch(app / "src" / "late.js")
    hold_starts(runner, app, settled + 2)
    assert runner.proc.poll() is None, runner.log()


# ---------------------------------------------------------------- temporary files


def write_in_chunks(path: Path, text: str) -> None:
    """Write like a sync tool receiving blocks: several flushed writes to the same file."""
    with open(path, "w") as handle:
        for part in (text[: len(text) // 2], text[len(text) // 2 :]):
            handle.write(part)
            handle.flush()
            os.fsync(handle.fileno())
    os.utime(path, (1_600_000_000, 1_600_000_000))  # sync tools copy the source's mtime


TEMP_NAMES = {
    "syncthing": ".syncthing.mod.js.tmp",
    "syncthing-windows": "~syncthing~mod.js.tmp",
    "rsync": ".mod.js.Xq3ZpA",
}


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("temp_name", list(TEMP_NAMES.values()), ids=list(TEMP_NAMES))
def test_a_temp_file_renamed_into_place_restarts_once_at_the_rename(
    app: Path, run_reloadd: RunReloadd, temp_name: str, mode: str, ext: str
) -> None:
    (app / "mod.js").write_text("module.exports = 1;\n")
    runner = run_reloadd(MODES[mode] + EXTS[ext] + ["--verbose", "server.js"], cwd=app)
    wait_starts(runner, app, 1)

    temp = app / temp_name
    write_in_chunks(temp, "module.exports = 2;\n" * 50)
    hold_starts(runner, app, 1)
    assert restart_lines(runner) == 0, runner.log()

    temp.rename(app / "mod.js")

    hold_starts(runner, app, 2)
    assert restart_lines(runner) == 1, runner.log()
    changed = log_lines_with(runner, "changed:")
    assert any(line.endswith("mod.js") for line in changed), runner.log()
    assert not [line for line in changed if temp_name in line], runner.log()


def editor_noise(app: Path) -> None:
    """What vim, emacs and backup settings leave next to a file while editing it (not saving)."""
    for directory in (app, app / "src"):
        probe = directory / "4913"  # vim's can-I-write-here probe
        probe.write_text("")
        probe.unlink()
        (directory / ".mod.js.swp").write_bytes(b"b0VIM 9.0" + b"\0" * 100)
        (directory / ".mod.js.swx").write_bytes(b"b0VIM 9.0")
        (directory / ".mod.js.swp").write_bytes(b"b0VIM 9.0" + b"\1" * 100)
        (directory / "mod.js~").write_text("module.exports = 0;\n")
        os.symlink("user@host.1234:1700000000", directory / ".#mod.js")  # emacs lock: dangling on purpose
    for directory in (app, app / "src"):
        (directory / ".mod.js.swx").unlink()
        (directory / ".#mod.js").unlink()


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("mode", MODES)
def test_editor_temp_files_never_restart(app: Path, run_reloadd: RunReloadd, mode: str, ext: str) -> None:
    for directory in (app, app / "src"):
        directory.mkdir(exist_ok=True)
        (directory / "mod.js").write_text("module.exports = 1;\n")
    runner = run_reloadd(MODES[mode] + EXTS[ext] + ["server.js"], cwd=app)
    wait_starts(runner, app, 1)

    editor_noise(app)
    hold_starts(runner, app, 1)
    assert restart_lines(runner) == 0, runner.log()

    touch(app / "src" / "mod.js")  # the save itself: proves the watcher was listening all along
    hold_starts(runner, app, 2)


@pytest.mark.parametrize("how", ["flag", "config"])
def test_an_empty_ext_watches_every_extension(app: Path, run_reloadd: RunReloadd, how: str) -> None:
    """nodemon reads `-e ''` and `"ext": ""` as "all extensions"; the defaults would miss the template."""
    ignores = ["-i", "starts.log", "-i", "port"]  # the app's own output files
    if how == "config":
        (app / "nodemon.json").write_text('{"ext": ""}')
    runner = run_reloadd([*(["-e", ""] if how == "flag" else []), *ignores, "server.js"], cwd=app)
    wait_starts(runner, app, 1)
    touch(app / "page.html")
    wait_starts(runner, app, 2)


def test_verbose_explains_what_was_read_ignored_filtered_and_delayed(app: Path, run_reloadd: RunReloadd) -> None:
    """-V answers "why did it not restart?" as nodemon's --verbose does."""
    (app / "nodemon.json").write_text('{"ignore": ["*.draft.js", "starts.log", "port"], "delay": 300}')
    runner = run_reloadd(["-V", "server.js"], cwd=app)
    wait_starts(runner, app, 1)
    log = runner.log()
    assert f"reading config {app / 'nodemon.json'}" in log, log
    assert "ignoring: " in log and "**/node_modules/**" in log and "*.draft.js" in log, log
    touch(app / "note.draft.js")
    runner.wait_log("no restart for note.draft.js: ignored")
    touch(app / "notes.txt")
    log = runner.wait_log("no restart for notes.txt: extension not in js,mjs,cjs,json")
    assert "changes after filters (before/after): 1/0" in log, log
    touch(app / "version.js")
    runner.wait_log("delaying restart for 300ms")
    wait_starts(runner, app, 2)


# ---------------------------------------------------------------- idle

IDLE_WINDOW = 3.0  # seconds watched for wake-ups; the old 2 ms watcher step woke ~1,500 times in it
IDLE_WAKES = 1  # tolerated in that window (a stray signal); a periodic timer of even 1 s shows as 3
SETTLE_STEP = 0.5  # seconds between looks while waiting for the start's own work to end
SETTLE_QUIET_STEPS = 3  # consecutive quiet looks: a thread that was runnable but not yet scheduled
# on a loaded machine shows no switches for one look, then finishes its start-up work


def threads(pid: int) -> dict[str, tuple[str, int]]:
    """Each thread of ``pid`` ("tid name") with its state letter and its context switches so far."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        except OSError:  # the thread ended meanwhile
            continue
        switches = int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])
        found[f"{task.name} {status['Name'].strip()}"] = (status["State"].split()[0], switches)
    return found


def woken(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> dict[str, int]:
    """The threads that ran between two looks, with how often; a thread that came or went counts too."""
    names = before.keys() | after.keys()
    counts = {name: after.get(name, ("", 0))[1] - before.get(name, ("", 0))[1] for name in names}
    return {name: count for name, count in counts.items() if count or (name in before) != (name in after)}


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "no-warm"])
def test_an_idle_reloadd_does_not_wake_up(app: Path, run_reloadd: RunReloadd, warm: bool) -> None:
    runner = run_reloadd(["-V", *([] if warm else ["--no-warm"]), "server.js"], cwd=app)
    wait_starts(runner, app, 1)
    wait_for(lambda: (app / "port").exists(), what="the app to listen")  # its last write at start
    if warm:
        runner.wait_log("ready in")
    last = [threads(runner.pid)]
    quiet = [0]

    def settled() -> bool:  # the start's own events (the app's output, the warm process) are over
        now = threads(runner.pid)
        asleep = all(state == "S" for state, _ in now.values())
        quiet[0] = quiet[0] + 1 if asleep and not woken(last[0], now) else 0
        last[0] = now
        return quiet[0] >= SETTLE_QUIET_STEPS

    wait_for(settled, interval=SETTLE_STEP, what=f"reloadd to settle (last: {last[0]}); log:\n{runner.log()}")
    before = threads(runner.pid)
    time.sleep(IDLE_WINDOW)  # switches only grow, so one look at the end sees every wake-up in the window
    woke = woken(before, threads(runner.pid))
    assert sum(woke.values()) <= IDLE_WAKES, f"woke while idle: {woke}; log:\n{runner.log()}"
