"""The watcher: turns file-system activity under the watch roots into matched changed paths.

watchfiles (Rust notify) does the OS work. Handing it a root recursively would put an inotify
watch on every directory, node_modules included (40,000 directories in a large app: the
ENOSPC limit nodemon users hit, #907), and would make its poller stat every file in them.
So reloadd walks the tree itself, prunes ignored directories, and hands watchfiles the
remaining directories one by one, non-recursively. A directory created later is added by
rebuilding the notifier (new one first, then the old one closed, so nothing is missed in
between) and scanning the new directory, whose files count as changes.

Measured on the bench tree (2,000 files in 200 dirs + node_modules 40,000 files in 4,000
dirs): recursive watchfiles holds ~4,200 inotify watches and polls 42,000 files; the pruned
set holds 201 watches and polls 2,000 files (bench/ prints both). Polling is reloadd's own
(poller.py explains why).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .matching import Rules
from .mounts import WatchMode, decide_mode
from .output import out
from .poller import CHANGE_DELETED, Poller

# How watchfiles groups raw events before handing them to us. The real grouping (a burst is
# one restart) happens in ChangeGroup. watchfiles holds events while more keep coming, up to
# the debounce; that must stay under the supervisor's GROUP_QUIET, or a write stream longer
# than the quiet window (a sync, a build, files landing in a directory just being scanned) is
# delivered as one late batch after the burst was closed: two restarts (seen under load with
# the old 200 ms).
NOTIFY_STEP_MS = 2
NOTIFY_DEBOUNCE_MS = 10
ROOT_CHECK_INTERVAL_MS = 1000  # how often roots that are missing (or were replaced) are looked at
# With an inotify and a polling notifier, each waits this long in turn: a poller's tick, or an
# event, is late by at most this much (the poller promises interval + 100 ms with ~10 ms spare).
SHARED_THREAD_TIMEOUT_MS = 5
# The kernel caches a network or FUSE file's attributes (FUSE's default attr_timeout is 1 s,
# NFS's acregmin 3 s but its change is only seen after that anyway): a file replaced on the far
# side shows its new size up to that long after a new file next to it is listed. A sync that
# edits one file and adds another would be split into two restarts, and node could read the
# edited file cut to its old length. So on such mounts a burst stays open this long after its
# last change.
REMOTE_SETTLE = 1.0
SCANNED_MEMORY = 10000  # files remembered from new-directory scans, to drop their echo events
INOTIFY_FAIL_ENV = "RELOADD_INOTIFY_FAIL"  # test hook: make inotify fail with this errno name (e.g. ENOSPC)


@dataclass
class RootState:
    path: Path
    mode: Optional[WatchMode] = None
    identity: Optional[tuple[int, int]] = None  # (st_dev, st_ino) while it exists


@dataclass
class Notifier:
    """One watchfiles RustNotify (inotify) or one Poller, and the directories it holds."""

    impl: Any
    poll: bool
    dirs: set[str]

    def wait(self, timeout_ms: int, stop: threading.Event) -> Union[set[tuple[int, str]], str]:
        if self.poll:
            return self.impl.watch(timeout_ms, stop)  # type: ignore[no-any-return]
        return self.impl.watch(NOTIFY_DEBOUNCE_MS, NOTIFY_STEP_MS, timeout_ms, stop)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.impl.close()


def _identity(path: Path) -> Optional[tuple[int, int]]:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(path) else None


def _file_signature(path: str) -> Optional[tuple[int, int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def inotify_watches() -> int:
    """inotify watches held by this process (all its inotify instances), from /proc/self/fdinfo."""
    count = 0
    try:
        fds = os.listdir("/proc/self/fdinfo")
    except OSError:
        return 0
    for fd in fds:
        try:
            with open(f"/proc/self/fdinfo/{fd}") as info:
                count += info.read().count("inotify wd:")
        except OSError:
            continue
    return count


def inotify_limit() -> str:
    """The watch limit in force: the global sysctl, or a lower per-user-namespace one (containers)."""
    values = []
    for source in ("/proc/sys/fs/inotify/max_user_watches", "/proc/sys/user/max_inotify_watches"):
        try:
            values.append(int(Path(source).read_text()))
        except (OSError, ValueError):
            continue
    return str(min(values)) if values else "unknown"


@dataclass
class ChangeGroup:
    """Groups changed paths into bursts: one restart for one save, one checkout, one sync.

    A burst is any run of changes whose gaps stay within ``quiet`` seconds, however long it
    lasts, up to ``cap`` seconds; ``busy`` (the watcher adding new directories) keeps it open.
    """

    quiet: float
    cap: float
    paths: set[str] = field(default_factory=set)
    first: Optional[float] = None
    last: float = 0.0

    def add(self, paths: set[str], now: float) -> None:
        if not paths:
            return
        if self.first is None:
            self.first = now
        self.last = now
        self.paths |= paths

    def ready(self, now: float, busy: bool) -> bool:
        if self.first is None:
            return False
        if now - self.first >= self.cap:
            return True
        return not busy and now - self.last >= self.quiet

    def wait_time(self, now: float) -> Optional[float]:
        if self.first is None:
            return None
        return max(0.0, min(self.last + self.quiet, self.first + self.cap) - now)

    def take(self) -> tuple[set[str], float]:
        paths, first = self.paths, self.first or time.time()
        self.paths, self.first = set(), None
        return paths, first


class Watcher:
    """Watches the roots of ``rules`` in a thread and reports matched changes through ``report``."""

    def __init__(
        self,
        rules: Rules,
        legacy_watch: Optional[bool],
        poll_interval_ms: int,
        report: Callable[[set[str]], None],
        extra_files: Optional[list[Path]] = None,
        report_dirs: bool = False,
    ) -> None:
        self.rules = rules
        self.report_dirs = report_dirs  # also report directories created or removed (`reloadd sync` mirrors them)
        self.legacy_watch = legacy_watch
        self.poll_interval_ms = poll_interval_ms
        self.report = report
        self.extra_files = {str(p) for p in extra_files or []}
        self.roots = [RootState(root) for root in rules.roots]
        self.busy = False
        self.remote_settle = 0.0  # REMOTE_SETTLE while a root is on a network or FUSE mount
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reloadd-watcher", daemon=True)
        self._notifiers: list[Notifier] = []
        self._inotify_failed = False
        self._scanned: dict[str, Optional[tuple[int, int, int]]] = {}  # files a new-directory scan reported

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._rebuild(initial=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for notifier in self._notifiers:
            notifier.close()
        self._notifiers = []

    @property
    def settle(self) -> float:
        """Seconds a burst stays open after its last change: a poller reports one tick at a time."""
        polled: list[float] = [n.impl.burst_quiet for n in self._notifiers if n.poll]
        return max([self.remote_settle, *polled])

    def watch_count(self) -> int:
        return sum(len(n.dirs) for n in self._notifiers if not n.poll)

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        last_root_check = time.monotonic()
        while not self._stop.is_set():
            raw = self._wait_for_raw()
            if raw:
                self._handle(raw)
            if time.monotonic() - last_root_check >= ROOT_CHECK_INTERVAL_MS / 1000:
                last_root_check = time.monotonic()
                self._check_roots()

    def _wait_for_raw(self) -> set[tuple[int, str]]:
        """Wait on every notifier; one thread serves them all by giving each a short timeout."""
        if not self._notifiers:
            self._stop.wait(ROOT_CHECK_INTERVAL_MS / 1000)
            return set()
        timeout = ROOT_CHECK_INTERVAL_MS if len(self._notifiers) == 1 else SHARED_THREAD_TIMEOUT_MS
        changes: set[tuple[int, str]] = set()
        for notifier in list(self._notifiers):
            try:
                result = notifier.wait(timeout, self._stop)
            except RuntimeError as exc:  # a watched directory vanished under the notifier
                out.detail(f"watcher error, rebuilding: {exc}")
                self._rebuild()
                return changes
            if isinstance(result, set):
                changes |= result
        return changes

    def _handle(self, raw: set[tuple[int, str]]) -> None:
        matched: set[str] = set()
        new_dirs: list[str] = []
        lost_dir = False
        known = self._known_dirs()
        for change, path in raw:
            if path in known:
                lost_dir = lost_dir or change == CHANGE_DELETED  # directory events are never changes themselves
                if self.report_dirs and change == CHANGE_DELETED:
                    matched.add(path)
            elif change != CHANGE_DELETED and path not in known and os.path.isdir(path):
                if not os.path.islink(path) and not self.rules.prune(path):
                    new_dirs.append(path)
            elif (path in self.extra_files or self.rules.matches(path)) and not self._already_reported(path):
                matched.add(path)
        if new_dirs or lost_dir:
            self.busy = True
            try:
                self._rebuild()
                for directory in new_dirs:
                    matched |= self._matching_files(directory)
                    if self.report_dirs:
                        matched.add(directory)
            finally:
                self.busy = False
        if matched:
            self.report(matched)

    # -- roots -----------------------------------------------------------------------------
    def _check_roots(self) -> None:
        changed = [root for root in self.roots if _identity(root.path) != root.identity]
        if not changed:
            return
        self.busy = True
        try:
            self._rebuild()
            appeared: set[str] = set()
            for root in changed:
                if root.identity is not None:
                    out.info(f"watch root {root.path} appeared: watching it")
                    appeared |= self._matching_files(str(root.path))
                else:
                    out.warn(f"watch root {root.path} disappeared: waiting for it to come back")
        finally:
            self.busy = False
        if appeared:
            self.report(appeared)

    def _rebuild(self, initial: bool = False) -> None:
        """Build notifiers for the current roots (new ones first), then close the old ones."""
        inotify_dirs: set[str] = set()
        poll_dirs: set[str] = set()
        settle = 0.0
        for root in self.roots:
            root.identity = _identity(root.path)
            if root.identity is None:
                if initial:
                    out.info(f"watch root {root.path} does not exist yet: watching for it to appear")
                continue
            mode = self._mode_for(root.path)
            if initial or mode != root.mode:
                verb = (
                    f"polling {root.path} every {self.poll_interval_ms}ms"
                    if mode.poll
                    else f"watching {root.path} with inotify"
                )
                out.info(f"{verb}: {mode.reason}")
            root.mode = mode
            if mode.poll and decide_mode(str(root.path), None).poll:
                settle = REMOTE_SETTLE
            (poll_dirs if mode.poll else inotify_dirs).update(self._walk(str(root.path)))
        self.remote_settle = settle
        for extra in self.extra_files:
            parent = os.path.dirname(extra)
            if os.path.isdir(parent) and parent not in poll_dirs:
                inotify_dirs.add(parent)
        old, self._notifiers = self._notifiers, []
        if inotify_dirs:
            self._add_inotify(inotify_dirs, poll_dirs)
        if poll_dirs:
            previous = next((n.impl.snapshot for n in old if n.poll), None)
            poller = Poller(poll_dirs, self.poll_interval_ms, previous)
            self._notifiers.append(Notifier(poller, True, poll_dirs))
            out.detail(f"poller: {poller.describe()}")
        for notifier in old:
            notifier.close()

    def _mode_for(self, path: Path) -> WatchMode:
        if self._inotify_failed and self.legacy_watch is not False:
            return WatchMode(True, f"inotify unavailable (fs.inotify.max_user_watches = {inotify_limit()})")
        return decide_mode(str(path), self.legacy_watch)

    def _add_inotify(self, dirs: set[str], poll_dirs: set[str]) -> None:
        try:
            self._notifiers.append(self._inotify(dirs))
        except (OSError, RuntimeError) as exc:
            self._inotify_failed = True
            out.warn(
                f"cannot use inotify ({exc}); polling instead. Raise fs.inotify.max_user_watches "
                f"(now {inotify_limit()}) to get notifications back: sysctl fs.inotify.max_user_watches=524288"
            )
            poll_dirs |= dirs

    def _inotify(self, dirs: set[str]) -> Notifier:
        from watchfiles._rust_notify import RustNotify

        fail = os.environ.get(INOTIFY_FAIL_ENV)
        if fail:
            code = getattr(errno, fail, errno.ENOSPC)
            raise OSError(code, os.strerror(code))
        before = inotify_watches()
        rust = RustNotify(sorted(dirs), False, False, 0, False, True)
        added = inotify_watches() - before
        if added < len(dirs):
            # watchfiles skips directories it cannot watch without saying so; the watch limit
            # (ENOSPC) is the usual reason, and a directory it skipped would never restart the app.
            rust.close()
            raise OSError(errno.ENOSPC, f"only {added} of {len(dirs)} directories got an inotify watch")
        return Notifier(rust, False, set(dirs))

    def _known_dirs(self) -> set[str]:
        known: set[str] = set()
        for notifier in self._notifiers:
            known |= notifier.dirs
        return known

    # -- walking ---------------------------------------------------------------------------
    def _walk(self, top: str) -> list[str]:
        """Every directory under ``top`` that is not pruned (symlinked directories are not followed)."""
        found = [top]
        stack = [top]
        while stack:
            current = stack.pop()
            try:
                with os.scandir(current) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False) and not self.rules.prune(entry.path):
                            found.append(entry.path)
                            stack.append(entry.path)
            except OSError:
                continue  # vanished or unreadable: a later event or root check catches up
        return found

    def _matching_files(self, top: str) -> set[str]:
        """Files already inside a directory that just appeared: they count as changes.

        The new notifier was started before this scan, so a file written in between is seen
        twice: here, and as an event a few milliseconds later. Remembering what the scan saw
        lets _already_reported drop that echo; under load it could otherwise arrive after the
        burst closed and cost a second restart (seen in the bench's 200-file burst).
        """
        matched: set[str] = set()
        if len(self._scanned) > SCANNED_MEMORY:
            self._scanned.clear()  # echoes come within milliseconds; what is left is stale
        for directory in self._walk(top):
            try:
                with os.scandir(directory) as entries:
                    found = [e for e in entries if not e.is_dir() and self.rules.matches(e.path)]
                    for entry in found:
                        self._scanned[entry.path] = _file_signature(entry.path)
                    matched |= {entry.path for entry in found}
            except OSError:
                continue
        return matched

    def _already_reported(self, path: str) -> bool:
        """An event for a file a scan just reported, unchanged since: the scan's echo, not a change."""
        seen = self._scanned.pop(path, None)
        return seen is not None and seen == _file_signature(path)
