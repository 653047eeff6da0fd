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

The notifiers (notifiers.py) hear the changes; which one hears each root is chosen per mount
(notifier_choice.py); lost notifications are caught up by looking (catch_up.py); what is
reported is filtered by the rules (change_filter.py). This module runs the thread that ties
them together and tells the supervisor, one WatchReport at a time.
"""

from __future__ import annotations

import os
import select
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional

from ...output import out
from ..pid1 import wake_pipe
from .catch_up import CatchUp
from .change_filter import ChangeFilter, WatchRules
from .mounts import WatchMode, virtual_mount_points
from .notifier_choice import NotifierChoice
from .notifiers import NOTIFIER_WHY, InotifyNotifier, Notifier, NotifierKind, WatchfilesNotifier, native_notifier
from .poller import Poller
from .raw_changes import RawChanges

# Roots that are missing, or polled (a poller cannot say its root was replaced), are looked at
# this often; a root watched by inotify reports its own deletion or move.
ROOT_CHECK_INTERVAL_MS = 1000
POLLER_NUDGE_MS = 1  # a poller whose tick is due is asked to wait this long: it polls once, then returns
# After the watcher thread hit an unexpected error it waits this long, then builds its notifiers
# again and looks for what changed meanwhile: a pause, so that an error that repeats at once
# (a file system gone bad) costs one log line a second rather than a spinning core.
WATCHER_RETRY_PAUSE = 1.0
# A walk past this many directories says so at once: a tree this big (`--watch /`) takes seconds
# and hundreds of MB to watch, and silence would look like a hang.
BIG_WALK_DIRS = 10_000


class WatchReport(NamedTuple):
    """Everything the watcher thread tells the supervisor, in one call, so nothing is read across threads."""

    paths: frozenset[str]  # changed files that match the rules (absolute); may be empty
    busy: bool  # still adding new directories: keep the burst open
    settle: float  # seconds a burst stays open after its last change on this watcher


@dataclass
class RootState:
    path: Path
    mode: Optional[WatchMode] = None
    identity: Optional[tuple[int, int]] = None  # (st_dev, st_ino) while it exists


def _identity(path: Path) -> Optional[tuple[int, int]]:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(path) else None


class Watcher:
    """Watches the roots of ``rules`` in a thread and tells ``report`` what changed (a WatchReport)."""

    def __init__(
        self,
        rules: WatchRules,
        legacy_watch: Optional[bool],
        poll_interval_ms: int,
        report: Callable[[WatchReport], None],
        extra_files: Optional[list[Path]] = None,
        report_dirs: bool = False,
        notifier: Optional[NotifierKind] = None,
    ) -> None:
        self.rules = rules
        self.report = report
        self.filter = ChangeFilter(rules, {str(p) for p in extra_files or []}, report_dirs)
        self.roots = [RootState(root) for root in rules.roots]
        self.remote_settle = 0.0  # REMOTE_SETTLE while a root is on a network or FUSE mount
        self._stop = threading.Event()
        self.notifier: NotifierKind = notifier or native_notifier()  # None: what libc offers
        self._wake_read, self._wake_write = wake_pipe()  # stop() ends a blocking wait
        self.choice = NotifierChoice(self.notifier, legacy_watch, poll_interval_ms, self._wake_read)
        self._thread = threading.Thread(target=self._run, name="reloadd-watcher", daemon=True)
        self._notifiers: list[Notifier] = []
        self._failed = False  # the thread hit an unexpected error: rebuild and catch up before waiting again
        self._catch_up = CatchUp()
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
        """Notifications were lost (an unexpected error, a queue overflow): new notifiers, and every
        change since the last batch delivered, found by looking (catch_up.py)."""
        self._send(set(), busy=True)
        heard_by_inotify = self._inotify_dirs()
        self._rebuild()
        lost = self._catch_up.scan(heard_by_inotify | self._inotify_dirs())
        matched = self.filter.matched(lost, self._known_dirs())
        if self._failed:
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
        drained = self._catch_up.take_drained()
        if drained:
            return drained
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
            # The kernel's queue overflowed (or watchfiles failed a batch): events were lost.
            out.detail(f"watcher error, rebuilding and looking for what changed: {exc}")
            self._recover()
            return set()
        if inotify is not None or watchfiles is not None:
            self._catch_up.delivered_up_to(started)  # everything before this wait began has been delivered
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

    def _handle(self, raw: RawChanges) -> None:
        known = self._known_dirs()
        new_dirs, lost_dir, removed_dirs = self.filter.directory_events(raw, known)
        matched = self.filter.matched(raw, known) | removed_dirs
        if new_dirs or lost_dir:
            self._send(set(), busy=True)  # before the rebuild: the burst stays open while it runs
            self._rebuild()
            for directory in new_dirs:
                matched |= self.filter.scanned_files(self._walk(directory))
                if self.filter.report_dirs:
                    matched.add(directory)
            self._send(matched, busy=False)
        elif matched:
            self._send(matched, busy=False)
        if out.verbose:
            self.filter.explain(raw, known, matched)

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
                appeared |= self.filter.scanned_files(self._walk(str(root.path)))
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
            mode = self.choice.mode_for(root.path)
            if initial or mode != root.mode:
                self.choice.announce(root.path, mode)
            root.mode = mode
            settle = max(settle, self.choice.settle_for(root.path, mode))
            (poll_dirs if mode.poll else inotify_dirs).update(self._walk(str(root.path)))
        self.remote_settle = settle
        inotify_dirs |= self.filter.extra_dirs(poll_dirs)
        old = self._notifiers
        previous = next((n.snapshot for n in old if isinstance(n, Poller)), None)
        self._notifiers = self.choice.build(inotify_dirs, poll_dirs, previous)
        for notifier in old:
            if isinstance(notifier, InotifyNotifier):
                self._catch_up.drain(notifier)
            notifier.close()

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
                        # The file test first, inline: most entries are files, and a call each
                        # would cost a big tree's start more than the directories' checks.
                        if entry.is_dir(follow_symlinks=False) and self._walks_into(entry.path):
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

    def _walks_into(self, directory: str) -> bool:
        return directory not in self._virtual and not self.rules.prune(directory)
