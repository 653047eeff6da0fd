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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Union

from .matching import Rules
from .mounts import WatchMode, decide_mode, virtual_mount_points
from .output import out
from .poller import CHANGE_ADDED, CHANGE_DELETED, Poller, RawChanges, StopFlag

# How watchfiles groups raw events before handing them to us. The real grouping (a burst is
# one restart) happens in changes.Burst. watchfiles holds events while more keep coming, up to
# the debounce; that must stay under changes.GROUP_QUIET, or a write stream longer
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
# After the watcher thread hit an unexpected error it waits this long, then builds its notifiers
# again and looks for what changed meanwhile: a pause, so that an error that repeats at once
# (a file system gone bad) costs one log line a second rather than a spinning core.
WATCHER_RETRY_PAUSE = 1.0
# A file system stamps a change with its coarse clock (a jiffy behind time.time()): a catch-up
# scan counts files changed this long before the last event it heard as changed, to be sure.
CATCH_UP_MARGIN = 0.1
IN_ALL_EVENTS = 0xFFF  # linux/inotify.h: what a probe watch asks for (any mask will do)
# A walk past this many directories says so at once: a tree this big (`--watch /`) takes seconds
# and hundreds of MB to watch, and silence would look like a hang.
BIG_WALK_DIRS = 10_000
UNWATCHABLE_NAMED = 3  # directories named one by one in a warning; the rest are counted


@dataclass(frozen=True)
class WatchReport:
    """Everything the watcher thread tells the supervisor, in one call, so nothing is read across threads."""

    paths: frozenset[str]  # changed files that match the rules (absolute); may be empty
    busy: bool  # still adding new directories: keep the burst open
    settle: float  # seconds a burst stays open after its last change on this watcher


class Notifier(Protocol):
    """A source of raw changes for a fixed set of directories (each watched non-recursively).

    Implemented by InotifyNotifier (watchfiles' RustNotify) and by poller.Poller.
    """

    dirs: set[str]  # the directories it watches
    polls: bool  # True for the poller

    @property
    def settle(self) -> float:
        """Seconds a burst must stay open after its last change for this notifier to have seen all of it."""
        ...

    def wait(self, timeout_ms: int, stop: StopFlag) -> Union[RawChanges, str]:
        """Raw (change, path) pairs once something changed, else "timeout" or "stop"."""
        ...

    def close(self) -> None: ...


@dataclass
class RootState:
    path: Path
    mode: Optional[WatchMode] = None
    identity: Optional[tuple[int, int]] = None  # (st_dev, st_ino) while it exists


class InotifyNotifier:
    """watchfiles' RustNotify on the directories it was given (inotify on Linux)."""

    polls = False
    settle = 0.0  # inotify hears every change itself: nothing to wait for

    def __init__(self, rust: Any, dirs: set[str]) -> None:
        self.rust = rust
        self.dirs = dirs

    def wait(self, timeout_ms: int, stop: StopFlag) -> Union[RawChanges, str]:
        return self.rust.watch(NOTIFY_DEBOUNCE_MS, NOTIFY_STEP_MS, timeout_ms, stop)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.rust.close()


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


def _inotify_fds() -> set[int]:
    """This process's inotify descriptors (empty where /proc is not there to say)."""
    found: set[int] = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                found.add(int(fd))
        except (OSError, ValueError):
            continue
    return found


def _watched_inodes(fds: set[int]) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of every directory the inotify descriptors ``fds`` watch, from fdinfo:
    ``inotify wd:1 ino:20c2cd sdev:fe00000 ...`` (the kernel's dev_t: major << 20 | minor)."""
    found: set[tuple[int, int]] = set()
    for fd in fds:
        try:
            with open(f"/proc/self/fdinfo/{fd}") as info:
                lines = [line.split() for line in info if line.startswith("inotify wd:")]
        except OSError:
            continue
        for words in lines:
            fields = dict(word.split(":", 1) for word in words[1:] if ":" in word)
            sdev, ino = int(fields.get("sdev", "0"), 16), int(fields.get("ino", "0"), 16)
            found.add((os.makedev(sdev >> 20, sdev & 0xFFFFF), ino))
    return found


def _probe_watch(path: str) -> int:
    """Add an inotify watch on ``path`` in a fresh instance and drop it: 0, or the errno the kernel
    gave (ENOSPC when the watch limit is reached). watchfiles skips a directory it cannot watch
    without saying why; this is how reloadd finds out."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return ctypes.get_errno()
    try:
        wd = libc.inotify_add_watch(fd, os.fsencode(path), ctypes.c_uint32(IN_ALL_EVENTS))
        return 0 if wd >= 0 else ctypes.get_errno()
    finally:
        os.close(fd)


def _unwatched_reason(path: str) -> Optional[str]:
    """Why inotify holds no watch on the directory ``path``; None when the reason is the watch limit."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "vanished"
    except OSError as exc:
        return f"cannot be looked at ({exc.strerror})"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    code = _probe_watch(path)
    if code == errno.ENOSPC:
        return None
    if code == 0:  # watchable now: it was replaced while being watched, and its parent's events say so
        return "vanished"
    return f"cannot be watched ({os.strerror(code)})"


def _utf8(path: str) -> bool:
    """watchfiles takes paths as UTF-8 text: a name with other bytes (os.fsdecode'd) cannot be given to it."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def inotify_limit() -> str:
    """The watch limit in force: the global sysctl, or a lower per-user-namespace one (containers)."""
    values = []
    for source in ("/proc/sys/fs/inotify/max_user_watches", "/proc/sys/user/max_inotify_watches"):
        try:
            values.append(int(Path(source).read_text()))
        except (OSError, ValueError):
            continue
    return str(min(values)) if values else "unknown"


class Watcher:
    """Watches the roots of ``rules`` in a thread and tells ``report`` what changed (a WatchReport)."""

    def __init__(
        self,
        rules: Rules,
        legacy_watch: Optional[bool],
        poll_interval_ms: int,
        report: Callable[[WatchReport], None],
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
        self.remote_settle = 0.0  # REMOTE_SETTLE while a root is on a network or FUSE mount
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reloadd-watcher", daemon=True)
        self._notifiers: list[Notifier] = []
        self._inotify_failed = False
        self._failed = False  # the thread hit an unexpected error: rebuild and catch up before waiting again
        self._heard = time.time()  # wall clock (file ctimes are): inotify has delivered every change before it
        self._scanned: dict[str, Optional[tuple[int, int, int]]] = {}  # files a new-directory scan reported
        self._said_unwatchable: set[str] = set()  # directories already named as impossible to watch
        self._odd_names: set[str] = set()  # directories the last walk found a name that is not UTF-8 in
        self._said_odd: set[str] = set()  # of those, the ones polled (and said so) since the last rebuild
        self._said_big: set[str] = set()  # roots whose walk was reported as big
        self._virtual: set[str] = set()  # mount points of kernel views (/proc...): never walked into

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._rebuild(initial=True)
        self._send(set(), busy=False)  # the settle time of the notifiers just built
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
        return max([self.remote_settle, *(n.settle for n in self._notifiers)])

    def watch_count(self) -> int:
        return sum(len(n.dirs) for n in self._notifiers if not n.polls)

    def _send(self, paths: set[str], busy: bool) -> None:
        self.report(WatchReport(frozenset(paths), busy, self.settle))

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        """The watcher thread. An unexpected error is logged and watching starts again after a
        pause: a watcher that ended silently would leave the app supervised but never restarted."""
        last_root_check = time.monotonic()
        while not self._stop.is_set():
            try:
                if self._failed:
                    self._recover()
                raw = self._wait_for_raw()
                if raw:
                    self._handle(raw)
                if time.monotonic() - last_root_check >= ROOT_CHECK_INTERVAL_MS / 1000:
                    last_root_check = time.monotonic()
                    self._check_roots()
            except Exception as exc:  # noqa: BLE001 - the thread's one guard; the error is logged, not lost
                self._failed = True
                out.error(f"watcher failed ({type(exc).__name__}: {exc}); watching again in {WATCHER_RETRY_PAUSE:g}s")
                self._stop.wait(WATCHER_RETRY_PAUSE)

    def _recover(self) -> None:
        """After an unexpected error: new notifiers, and every change since the last one heard."""
        self._send(set(), busy=True)
        heard_by_inotify = self._inotify_dirs()
        self._rebuild()
        matched = self._matched(self._catch_up(heard_by_inotify | self._inotify_dirs()))
        self._failed = False
        out.info("watching again")
        self._send(matched, busy=False)

    def _wait_for_raw(self) -> RawChanges:
        """Wait on every notifier; one thread serves them all by giving each a short timeout."""
        if not self._notifiers:
            self._stop.wait(ROOT_CHECK_INTERVAL_MS / 1000)
            return set()
        timeout = ROOT_CHECK_INTERVAL_MS if len(self._notifiers) == 1 else SHARED_THREAD_TIMEOUT_MS
        changes: RawChanges = set()
        for notifier in list(self._notifiers):
            started = time.time()
            try:
                result = notifier.wait(timeout, self._stop)
            except RuntimeError as exc:
                # watchfiles fails a whole batch when one path in it cannot be decoded (a file
                # name that is not UTF-8) or a watched directory vanished under it: the batch
                # is lost, so rebuild and look for what changed since the last one it delivered.
                out.detail(f"watcher error, rebuilding and looking for what changed: {exc}")
                self._send(set(), busy=True)
                heard_by_inotify = self._inotify_dirs()
                self._rebuild()
                self._send(self._matched(self._catch_up(heard_by_inotify | self._inotify_dirs())), busy=False)
                return changes
            if isinstance(result, set):
                changes |= result
            if not notifier.polls:
                self._heard = started  # everything before this wait began has been delivered
        return changes

    def _inotify_dirs(self) -> set[str]:
        return set().union(*(n.dirs for n in self._notifiers if not n.polls))

    def _catch_up(self, directories: set[str]) -> RawChanges:
        """Entries of ``directories`` (inotify's, before and after a rebuild) changed since inotify
        last delivered: what a lost batch held. Pollers carry their own view over a rebuild;
        deletions cannot be seen this way."""
        since_ns = int((self._heard - CATCH_UP_MARGIN) * 1e9)
        self._heard = time.time()
        changes: RawChanges = set()
        for directory in directories:
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        st = entry.stat(follow_symlinks=False)
                        if max(st.st_ctime_ns, st.st_mtime_ns) >= since_ns:
                            changes.add((CHANGE_ADDED, entry.path))
            except OSError:
                continue
        return changes

    def _handle(self, raw: RawChanges) -> None:
        new_dirs: list[str] = []
        lost_dir = False
        known = self._known_dirs()
        removed_dirs: set[str] = set()
        for change, path in raw:
            if path in known:
                lost_dir = lost_dir or change == CHANGE_DELETED  # directory events are never changes themselves
                if self.report_dirs and change == CHANGE_DELETED:
                    removed_dirs.add(path)
            elif change != CHANGE_DELETED and os.path.isdir(path):
                if not os.path.islink(path) and not self.rules.prune(path):
                    new_dirs.append(path)
        matched = self._matched(raw, known) | removed_dirs
        if new_dirs or lost_dir:
            self._send(set(), busy=True)  # before the rebuild: the burst stays open while it runs
            self._rebuild()
            for directory in new_dirs:
                matched |= self._matching_files(directory)
                if self.report_dirs:
                    matched.add(directory)
            self._send(matched, busy=False)
        elif matched:
            self._send(matched, busy=False)
        if out.verbose:
            skipped = [p for _, p in raw if p not in known and p not in matched and self._is_skipped_file(p)]
            if skipped:
                self._explain(skipped, len(matched))

    def _is_skipped_file(self, path: str) -> bool:
        """A file whose change the rules filter out (--verbose says why, to answer "why no restart?")."""
        return path not in self.extra_files and not os.path.isdir(path) and not self.rules.matches(path)

    def _matched(self, raw: RawChanges, known: Optional[set[str]] = None) -> set[str]:
        """The changed files among ``raw`` that restart the app (directories are never changes)."""
        known = self._known_dirs() if known is None else known
        return {
            path
            for _, path in raw
            if path not in known
            and not os.path.isdir(path)
            and (path in self.extra_files or self.rules.matches(path))
            and not self._already_reported(path)
        }

    def _explain(self, skipped: list[str], kept: int) -> None:
        out.detail(f"changes after filters (before/after): {len(skipped) + kept}/{kept}")
        for path in sorted(skipped):
            out.detail(f"no restart for {os.path.relpath(path, self.rules.cwd)}: {self.rules.skip_reason(path)}")

    # -- roots -----------------------------------------------------------------------------
    def _check_roots(self) -> None:
        changed = [root for root in self.roots if _identity(root.path) != root.identity]
        if not changed:
            return
        self._send(set(), busy=True)
        self._rebuild()
        appeared: set[str] = set()
        for root in changed:
            if root.identity is not None:
                out.info(f"watch root {root.path} appeared: watching it")
                appeared |= self._matching_files(str(root.path))
            else:
                out.warn(f"watch root {root.path} disappeared: waiting for it to come back")
        self._send(appeared, busy=False)

    def _rebuild(self, initial: bool = False) -> None:
        """Build notifiers for the current roots (new ones first), then close the old ones."""
        inotify_dirs: set[str] = set()
        poll_dirs: set[str] = set()
        settle = 0.0
        self._odd_names = set()
        self._virtual = virtual_mount_points()
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
        self._poll_odd_names(inotify_dirs, poll_dirs)
        old, self._notifiers = self._notifiers, []
        if inotify_dirs:
            self._add_inotify(inotify_dirs, poll_dirs)
        if poll_dirs:
            previous = next((n.snapshot for n in old if isinstance(n, Poller)), None)
            poller = Poller(poll_dirs, self.poll_interval_ms, previous)
            self._notifiers.append(poller)
            out.detail(f"poller: {poller.describe()}")
        for notifier in old:
            notifier.close()

    def _poll_odd_names(self, inotify_dirs: set[str], poll_dirs: set[str]) -> None:
        """Move to the poller the directories whose own name, or a name inside, is not UTF-8.

        watchfiles hands paths over as text and fails a whole batch, the real changes in it
        included, on a name it cannot decode; an event about such a name comes from its
        directory's watch (even opening a subdirectory to list it makes one). The poller
        takes any name (os.fsdecode)."""
        odd = {d for d in inotify_dirs if d in self._odd_names or not _utf8(d)}
        for directory in sorted(odd - self._said_odd):
            out.info(f"polling {directory}: a name in it (or its own) is not UTF-8, which inotify here cannot report")
        self._said_odd = odd
        inotify_dirs -= odd
        poll_dirs |= odd

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

    def _inotify(self, dirs: set[str]) -> InotifyNotifier:
        from watchfiles._rust_notify import RustNotify

        fail = os.environ.get(INOTIFY_FAIL_ENV)
        if fail:
            code = getattr(errno, fail, errno.ENOSPC)
            raise OSError(code, os.strerror(code))
        before = _inotify_fds()
        rust = RustNotify(sorted(dirs), False, False, 0, False, True)
        new_fds = _inotify_fds() - before
        if not new_fds:
            return InotifyNotifier(rust, set(dirs))  # no /proc to check with (or not inotify): trust it
        missed = self._unwatched(dirs, _watched_inodes(new_fds))
        at_limit = [path for path, reason in missed.items() if reason is None]
        if at_limit:
            # watchfiles skips directories it cannot watch without saying so; the kernel said
            # ENOSPC for these: the watch limit, and a directory left out would never restart the app.
            rust.close()
            raise OSError(errno.ENOSPC, f"{len(at_limit)} of {len(dirs)} directories got no inotify watch")
        return InotifyNotifier(rust, set(dirs) - set(missed))

    def _unwatched(self, dirs: set[str], watched: set[tuple[int, int]]) -> dict[str, Optional[str]]:
        """The directories of ``dirs`` inotify holds no watch on, each with why (None: the watch limit).
        One that vanished since the walk is no concern: its parent's events bring it back if it returns."""
        missed: dict[str, Optional[str]] = {}
        at_limit = False
        for path in dirs:
            identity = _identity(Path(path))
            if identity is not None and identity in watched:
                continue
            if at_limit:  # the kernel said ENOSPC once: the rest is the same limit
                missed[path] = None if identity is not None else "vanished"
            else:
                missed[path] = _unwatched_reason(path)
                at_limit = missed[path] is None
        vanished = [path for path, reason in missed.items() if reason == "vanished"]
        if vanished:
            out.detail(f"{len(vanished)} dir(s) vanished before they could be watched, e.g. {vanished[0]}")
        new = sorted(
            p for p, reason in missed.items() if reason not in (None, "vanished") and p not in self._said_unwatchable
        )
        for path in new[:UNWATCHABLE_NAMED]:
            out.warn(f"cannot watch {path}: it {missed[path]}; changes inside it are not seen")
        if len(new) > UNWATCHABLE_NAMED:
            out.warn(f"cannot watch {len(new) - UNWATCHABLE_NAMED} more directories (run with -V for the list)")
            for path in new[UNWATCHABLE_NAMED:]:
                out.detail(f"cannot watch {path}: it {missed[path]}")
        self._said_unwatchable.update(new)
        return missed

    def _known_dirs(self) -> set[str]:
        known: set[str] = set()
        for notifier in self._notifiers:
            known |= notifier.dirs
        return known

    # -- walking ---------------------------------------------------------------------------
    def _walk(self, top: str) -> list[str]:
        """Every directory under ``top`` that is not pruned (symlinked directories are not followed).
        Directories holding a name that is not UTF-8 are noted in ``_odd_names``."""
        found = [top]
        stack = [top]
        while stack:
            current = stack.pop()
            try:
                with os.scandir(current) as entries:
                    for entry in entries:
                        if not _utf8(entry.name):
                            self._odd_names.add(current)
                        if self._walks_into(entry):
                            found.append(entry.path)
                            stack.append(entry.path)
            except OSError:
                continue  # vanished or unreadable: a later event or root check catches up
            if len(found) >= BIG_WALK_DIRS and top not in self._said_big:
                self._said_big.add(top)
                out.info(
                    f"walking {top}: over {BIG_WALK_DIRS} directories to watch so far; a tree this big takes "
                    "a while and much memory (narrow --watch, or --ignore what need not be watched)"
                )
        return found

    def _walks_into(self, entry: os.DirEntry[str]) -> bool:
        return (
            entry.is_dir(follow_symlinks=False) and entry.path not in self._virtual and not self.rules.prune(entry.path)
        )

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
