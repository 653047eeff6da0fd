"""The watcher: turns file-system activity under the watch roots into matched changed paths.

reloadd's own inotify reader (inotify.py) does the OS work. Watching a root recursively would
put an inotify watch on every directory, node_modules included (40,000 directories in a large
app: the ENOSPC limit nodemon users hit, #907), and would make a poller stat every file in them.
So reloadd walks the tree itself, prunes ignored directories, and watches the remaining
directories one by one, non-recursively. A directory created later is added by rebuilding the
notifier (new one first; then what the old one still holds is read, and it is closed, so nothing
is missed in between) and scanning the new directory, whose files count as changes.

Idle, the watcher thread blocks in one ``select`` on the inotify descriptor and a wake pipe,
with no timeout: no periodic wake-ups. A timeout is armed only when something needs one: a
poller's next tick (polled mounts), or a look at roots that are missing or not watched by
inotify. A root watched by inotify says itself when it is deleted or moved.

Measured on the bench tree (2,000 files in 200 dirs + node_modules 40,000 files in 4,000
dirs): recursive watchfiles holds ~4,200 inotify watches and polls 42,000 files; the pruned
set holds 201 watches and polls 2,000 files (bench/ prints both). Polling is reloadd's own
(poller.py explains why).

Where libc has no inotify (macOS, the BSDs: ``reloadd sync`` runs on a laptop), the same pruned
directories are handed to watchfiles (FSEvents on macOS) behind the same Notifier interface;
its wait wakes every few milliseconds to look at its change set, so the idle cost there is
watchfiles'. Which one is used is decided by what libc offers, not by the platform's name.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Protocol, Union

from ..output import out
from ..setup.matching import Rules
from .inotify import Inotify, QueueOverflow
from .mounts import WatchMode, decide_mode, virtual_mount_points
from .pid1 import wake_pipe
from .poller import Poller
from .raw_changes import CHANGE_ADDED, CHANGE_DELETED, RawChanges, StopFlag

NotifierKind = Literal["inotify", "watchfiles"]  # what hears changes on mounts that are not polled
NOTIFIER_WHY = {
    "inotify": "reloadd's own inotify reader",
    "watchfiles": "no inotify in libc: watchfiles, FSEvents on macOS",
}

# Roots that are missing, or polled (a poller cannot say its root was replaced), are looked at
# this often; a root watched by inotify reports its own deletion or move.
ROOT_CHECK_INTERVAL_MS = 1000
POLLER_NUDGE_MS = 1  # a poller whose tick is due is asked to wait this long: it polls once, then returns
# The kernel caches a network or FUSE file's attributes (FUSE's default attr_timeout is 1 s,
# NFS's acregmin 3 s but its change is only seen after that anyway): a file replaced on the far
# side shows its new size up to that long after a new file next to it is listed. A sync that
# edits one file and adds another would be split into two restarts, and node could read the
# edited file cut to its old length. So on such mounts a burst stays open this long after its
# last change.
REMOTE_SETTLE = 1.0
SCANNED_MEMORY = 10000  # files remembered from new-directory scans, to drop their echo events
INOTIFY_FAIL_ENV = "RELOADD_INOTIFY_FAIL"  # test hook: make inotify fail with this errno name (e.g. ENOSPC)
VANISHED_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})  # a directory gone (or replaced) since the walk
# After the watcher thread hit an unexpected error it waits this long, then builds its notifiers
# again and looks for what changed meanwhile: a pause, so that an error that repeats at once
# (a file system gone bad) costs one log line a second rather than a spinning core.
WATCHER_RETRY_PAUSE = 1.0
# A file system stamps a change with its coarse clock (a jiffy behind time.time()): a catch-up
# scan counts files changed this long before the last event it heard as changed, to be sure.
CATCH_UP_MARGIN = 0.1
# A walk past this many directories says so at once: a tree this big (`--watch /`) takes seconds
# and hundreds of MB to watch, and silence would look like a hang.
BIG_WALK_DIRS = 10_000
# How watchfiles groups raw events (where it is the notifier): it looks at its change set every
# step and holds events while more keep coming, up to the debounce, which must stay under
# bursts.GROUP_QUIET or a long write stream would arrive after its burst closed.
WATCHFILES_STEP_MS = 2
WATCHFILES_DEBOUNCE_MS = 10
UNWATCHABLE_NAMED = 3  # directories named one by one in a warning; the rest are counted


@dataclass(frozen=True)
class WatchReport:
    """Everything the watcher thread tells the supervisor, in one call, so nothing is read across threads."""

    paths: frozenset[str]  # changed files that match the rules (absolute); may be empty
    busy: bool  # still adding new directories: keep the burst open
    settle: float  # seconds a burst stays open after its last change on this watcher


class Notifier(Protocol):
    """A source of raw changes for a fixed set of directories (each watched non-recursively).

    Implemented by InotifyNotifier (inotify.py) and by poller.Poller.
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
    """reloadd's inotify reader on the directories it was given (non-recursive watches)."""

    polls = False
    settle = 0.0  # inotify hears every change itself: nothing to wait for

    def __init__(self, inotify: Inotify, dirs: set[str], wake_fd: int) -> None:
        self.inotify = inotify
        self.dirs = dirs
        self.wake_fd = wake_fd

    @property
    def fd(self) -> int:
        return self.inotify.fd

    def wait(self, timeout_ms: int, stop: StopFlag) -> Union[RawChanges, str]:
        if stop.is_set():
            return "stop"
        if not self.inotify.wait(timeout_ms / 1000, self.wake_fd):
            return "stop" if stop.is_set() else "timeout"
        return self.inotify.read()

    def close(self) -> None:
        self.inotify.close()


class WatchfilesNotifier:
    """watchfiles' RustNotify on the directories it was given (non-recursive), where libc has no inotify.

    It has no descriptor to select on: the watcher thread waits in it, and it looks at ``stop``
    every step."""

    polls = False
    settle = 0.0  # the OS tells it of every change (FSEvents on macOS)

    def __init__(self, dirs: set[str]) -> None:
        from watchfiles._rust_notify import RustNotify  # only where it is used: Linux never loads it

        self.rust: Any = RustNotify(sorted(dirs), False, False, 0, False, True)
        self.dirs = dirs

    def wait(self, timeout_ms: int, stop: StopFlag) -> Union[RawChanges, str]:
        """Raw changes, "timeout" or "stop"; ``timeout_ms`` 0 waits until something happens or ``stop`` is set."""
        result = self.rust.watch(WATCHFILES_DEBOUNCE_MS, WATCHFILES_STEP_MS, timeout_ms, stop)
        if isinstance(result, set):
            return {(int(change), str(path)) for change, path in result}
        return str(result)

    def close(self) -> None:
        self.rust.close()


def notifier_kind(libc: object) -> NotifierKind:
    """inotify when ``libc`` has it (Linux); otherwise watchfiles (FSEvents on macOS, kqueue on the BSDs)."""
    return "inotify" if hasattr(libc, "inotify_init1") else "watchfiles"


def native_notifier() -> NotifierKind:
    """The notifier this machine's libc allows."""
    return notifier_kind(ctypes.CDLL(None))


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


def _unwatched_reason(code: int) -> Optional[str]:
    """Why inotify_add_watch failed with errno ``code``, in a phrase; None for the watch limit."""
    if code == errno.ENOSPC:
        return None
    if code in VANISHED_ERRNOS:
        return "vanished"
    if code == errno.EACCES:
        return "cannot be read (permission denied)"
    return f"cannot be watched ({os.strerror(code)})"


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
        notifier: Optional[NotifierKind] = None,
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
        self.notifier: NotifierKind = notifier or native_notifier()  # None: what libc offers
        self._wake_read, self._wake_write = wake_pipe()  # stop() ends a blocking wait
        self._thread = threading.Thread(target=self._run, name="reloadd-watcher", daemon=True)
        self._notifiers: list[Notifier] = []
        self._inotify_failed = False
        self._failed = False  # the thread hit an unexpected error: rebuild and catch up before waiting again
        self._heard = time.time()  # wall clock (file ctimes are): inotify has delivered every change before it
        self._scanned: dict[str, Optional[tuple[int, int, int]]] = {}  # files a new-directory scan reported
        self._drained: RawChanges = set()  # events a replaced inotify instance still held: handled next
        self._said_unwatchable: set[str] = set()  # directories already named as impossible to watch
        self._said_big: set[str] = set()  # roots whose walk was reported as big
        self._virtual: set[str] = set()  # mount points of kernel views (/proc...): never walked into

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        out.detail(f"notifier: {self.notifier} ({NOTIFIER_WHY[self.notifier]})")
        self._rebuild(initial=True)
        self._send(set(), busy=False)  # the settle time of the notifiers just built
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close everything; a second call does nothing (its descriptors are gone)."""
        if self._wake_write < 0:
            return
        self._stop.set()
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass  # already woken: the pipe is full
        self._thread.join(timeout=2)
        for notifier in self._notifiers:
            notifier.close()
        self._notifiers = []
        os.close(self._wake_write)
        self._wake_write = -1
        if not self._thread.is_alive():  # a thread stuck past the join still selects on it
            os.close(self._wake_read)

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
        self._last_root_check = time.monotonic()
        while not self._stop.is_set():
            try:
                if self._failed:
                    self._recover()
                raw = self._wait_for_raw()
                if raw:
                    self._handle(raw)
                if self._roots_due(time.monotonic()) == 0.0 or self._root_lost():
                    self._last_root_check = time.monotonic()
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
        """Block until inotify has events, a poller's tick is due or the roots must be looked at.

        One ``select`` with only the timeouts actually armed: with every root watched by
        inotify and present, none at all."""
        now = time.monotonic()
        waits = [self._roots_due(now), *(max(0.0, n.next_tick - now) for n in self._pollers())]
        armed = [w for w in waits if w is not None]
        timeout = min(armed) if armed else None
        if self._drained:
            changes, self._drained = self._drained, set()
            return changes
        inotify = self._inotify_notifier()
        watchfiles = self._watchfiles_notifier()
        started = time.time()
        changes = set()
        try:
            if watchfiles is not None:
                # No descriptor to select on: wait in watchfiles itself (0: until a change or stop).
                result = watchfiles.wait(0 if timeout is None else max(1, int(timeout * 1000)), self._stop)
                if isinstance(result, set):
                    changes |= result
            else:
                watched = [self._wake_read] + ([inotify.fd] if inotify is not None else [])
                try:
                    readable, _, _ = select.select(watched, [], [], timeout)
                except InterruptedError:
                    readable = []
                if inotify is not None and inotify.fd in readable:
                    changes |= inotify.inotify.read()
        except RuntimeError as exc:
            # The kernel's queue overflowed (or watchfiles failed a batch): events were lost, so
            # rebuild and look for what changed since the last batch delivered.
            out.detail(f"watcher error, rebuilding and looking for what changed: {exc}")
            self._send(set(), busy=True)
            heard_by_inotify = self._inotify_dirs()
            self._rebuild()
            self._send(self._matched(self._catch_up(heard_by_inotify | self._inotify_dirs())), busy=False)
            return set()
        if inotify is not None or watchfiles is not None:
            self._heard = started  # everything before this wait began has been delivered
        for poller in self._pollers():
            if poller.next_tick <= time.monotonic():
                result = poller.wait(POLLER_NUDGE_MS, self._stop)  # a due tick polls at once
                if isinstance(result, set):
                    changes |= result
        return changes

    def _pollers(self) -> list[Poller]:
        return [n for n in self._notifiers if isinstance(n, Poller)]

    def _inotify_notifier(self) -> Optional[InotifyNotifier]:
        return next((n for n in self._notifiers if isinstance(n, InotifyNotifier)), None)

    def _watchfiles_notifier(self) -> Optional[WatchfilesNotifier]:
        return next((n for n in self._notifiers if isinstance(n, WatchfilesNotifier)), None)

    def _roots_due(self, now: float) -> Optional[float]:
        """Seconds until the roots must be looked at (0: now); None when inotify watches every root
        (watchfiles does not say that a watched root itself went away: those are looked at)."""
        inotify = self._inotify_notifier()
        watched = inotify.dirs if inotify is not None else set()
        if all(root.identity is not None and str(root.path) in watched for root in self.roots):
            return None
        return max(0.0, self._last_root_check + ROOT_CHECK_INTERVAL_MS / 1000 - now)

    def _root_lost(self) -> bool:
        """inotify said a watched directory was deleted, moved or unmounted: a root may be gone."""
        inotify = self._inotify_notifier()
        if inotify is None or not inotify.inotify.lost_self:
            return False
        inotify.inotify.lost_self = False
        return True

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
        known = self._known_dirs()
        new_dirs, lost_dir, removed_dirs = self._directory_events(raw, known)
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

    def _directory_events(self, raw: RawChanges, known: set[str]) -> tuple[list[str], bool, set[str]]:
        """(directories new to the watch, whether a watched one went away, the removed ones to report)."""
        new_dirs: list[str] = []
        lost_dir = False
        removed_dirs: set[str] = set()
        for change, path in raw:
            if path in known:
                lost_dir = lost_dir or change == CHANGE_DELETED  # directory events are never changes themselves
                if self.report_dirs and change == CHANGE_DELETED:
                    removed_dirs.add(path)
                if change == CHANGE_ADDED and os.path.isdir(path) and not os.path.islink(path):
                    # Deleted and made again under the same name: a new directory whose files may
                    # have been written before the rebuild watches it, so they are looked for too.
                    new_dirs.append(path)
            elif change != CHANGE_DELETED and os.path.isdir(path):
                if not os.path.islink(path) and not self.rules.prune(path):
                    new_dirs.append(path)
        return new_dirs, lost_dir, removed_dirs

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
            out.detail(f"{self.rules.skipped} {os.path.relpath(path, self.rules.cwd)}: {self.rules.skip_reason(path)}")

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
                    else f"watching {root.path} with {self.notifier}"
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
            previous = next((n.snapshot for n in old if isinstance(n, Poller)), None)
            poller = Poller(poll_dirs, self.poll_interval_ms, previous)
            self._notifiers.append(poller)
            out.detail(f"poller: {poller.describe()}")
        for notifier in old:
            if isinstance(notifier, InotifyNotifier):
                self._drain(notifier)
            notifier.close()

    def _drain(self, old: InotifyNotifier) -> None:
        """Keep what ``old`` heard after its last read and before the new watches existed: a file
        made there (during a rebuild under churn) would otherwise be lost with the old instance."""
        try:
            self._drained |= old.inotify.drain()
        except QueueOverflow:
            self._drained |= self._catch_up(old.dirs)  # lost events: look at its directories instead

    def _mode_for(self, path: Path) -> WatchMode:
        if self._inotify_failed and self.legacy_watch is not False:
            if self.notifier == "watchfiles":
                return WatchMode(True, "watchfiles unavailable")
            return WatchMode(True, f"inotify unavailable (fs.inotify.max_user_watches = {inotify_limit()})")
        return decide_mode(str(path), self.legacy_watch)

    def _add_inotify(self, dirs: set[str], poll_dirs: set[str]) -> None:
        """The notifier for the directories not polled; if it cannot be had, they are polled."""
        if self.notifier == "watchfiles":
            try:
                self._notifiers.append(WatchfilesNotifier(set(dirs)))
            except (OSError, RuntimeError, ImportError) as exc:
                self._inotify_failed = True
                out.warn(f"cannot use watchfiles ({type(exc).__name__}: {exc}); polling instead")
                poll_dirs |= dirs
            return
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
        fail = os.environ.get(INOTIFY_FAIL_ENV)
        if fail:
            code = getattr(errno, fail, errno.ENOSPC)
            raise OSError(code, os.strerror(code))
        inotify = Inotify()
        failed: dict[str, int] = {}
        for directory in sorted(dirs):
            code = inotify.add(directory)
            if code == errno.ENOSPC:
                # A directory left out would never restart the app: poll them all instead.
                inotify.close()
                missing = len(dirs) - len(inotify.paths)
                raise OSError(errno.ENOSPC, f"{missing} of {len(dirs)} directories got no inotify watch")
            if code:
                failed[directory] = code
        self._report_unwatched({path: _unwatched_reason(code) or "" for path, code in failed.items()})
        return InotifyNotifier(inotify, set(dirs) - set(failed), self._wake_read)

    def _report_unwatched(self, missed: dict[str, str]) -> None:
        """Say which directories inotify could not watch, and why. One that vanished since the walk
        is no concern: its parent's events bring it back if it returns."""
        vanished = [path for path, reason in missed.items() if reason == "vanished"]
        if vanished:
            out.detail(f"{len(vanished)} dir(s) vanished before they could be watched, e.g. {vanished[0]}")
        new = sorted(p for p, reason in missed.items() if reason != "vanished" and p not in self._said_unwatchable)
        for path in new[:UNWATCHABLE_NAMED]:
            out.warn(f"cannot watch {path}: it {missed[path]}; changes inside it are not seen")
        if len(new) > UNWATCHABLE_NAMED:
            out.warn(f"cannot watch {len(new) - UNWATCHABLE_NAMED} more directories (run with -V for the list)")
            for path in new[UNWATCHABLE_NAMED:]:
                out.detail(f"cannot watch {path}: it {missed[path]}")
        self._said_unwatchable.update(new)

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
