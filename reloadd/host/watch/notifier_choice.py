"""Which notifier hears each watch root: inotify (or watchfiles, where libc has no inotify) or the
poller, per mount (mounts.py says which mounts inotify cannot hear); and what is done when inotify
cannot be had (the watch limit, ENOSPC: nodemon dies of it, #907): warn, and poll instead.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional

from ...output import out
from .folders import Signature
from .mounts import WatchMode, decide_mode
from .notifiers import Notifier, NotifierKind, WatchfilesNotifier, open_inotify
from .poller import Poller

# The kernel caches a network or FUSE file's attributes (FUSE's default attr_timeout is 1 s,
# NFS's acregmin 3 s but its change is only seen after that anyway): a file replaced on the far
# side shows its new size up to that long after a new file next to it is listed. A sync that
# edits one file and adds another would be split into two restarts, and node could read the
# edited file cut to its old length. So on such mounts a burst stays open this long after its
# last change.
REMOTE_SETTLE = 1.0
VANISHED_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})  # a directory gone (or replaced) since the walk
UNWATCHABLE_NAMED = 3  # directories named one by one in a warning; the rest are counted


def inotify_limit() -> str:
    """The watch limit in force: the global sysctl, or a lower per-user-namespace one (containers)."""
    values = []
    for source in ("/proc/sys/fs/inotify/max_user_watches", "/proc/sys/user/max_inotify_watches"):
        try:
            values.append(int(Path(source).read_text()))
        except (OSError, ValueError):
            continue
    return str(min(values)) if values else "unknown"


def _unwatched_reason(code: int) -> str:
    """Why inotify_add_watch failed with errno ``code`` (not the watch limit), in a phrase."""
    if code in VANISHED_ERRNOS:
        return "vanished"
    if code == errno.EACCES:
        return "cannot be read (permission denied)"
    return f"cannot be watched ({os.strerror(code)})"


class NotifierChoice:
    """Chooses between notifications and polling for each root, and builds the notifiers chosen."""

    def __init__(self, notifier: NotifierKind, legacy_watch: Optional[bool], poll_interval_ms: int, wake_fd: int):
        self.notifier = notifier
        self.legacy_watch = legacy_watch
        self.poll_interval_ms = poll_interval_ms
        self.wake_fd = wake_fd  # ends an inotify notifier's blocking wait
        self.inotify_failed = False  # from then on every root is polled (unless --no-legacy-watch)
        self._said_unwatchable: set[str] = set()  # directories already named as impossible to watch

    def mode_for(self, path: Path) -> WatchMode:
        if self.inotify_failed and self.legacy_watch is not False:
            if self.notifier == "watchfiles":
                return WatchMode(True, "watchfiles unavailable")
            return WatchMode(True, f"inotify unavailable (fs.inotify.max_user_watches = {inotify_limit()})")
        return decide_mode(str(path), self.legacy_watch)

    def announce(self, path: Path, mode: WatchMode) -> None:
        verb = (
            f"polling {path} every {self.poll_interval_ms}ms" if mode.poll else f"watching {path} with {self.notifier}"
        )
        out.info(f"{verb}: {mode.reason}")

    @staticmethod
    def settle_for(path: Path, mode: WatchMode) -> float:
        """REMOTE_SETTLE for a root polled because its mount is a network or FUSE one, else 0."""
        return REMOTE_SETTLE if mode.poll and decide_mode(str(path), None).poll else 0.0

    def build(
        self, inotify_dirs: set[str], poll_dirs: set[str], previous: Optional[dict[str, Signature]]
    ) -> list[Notifier]:
        """The notifiers for these directories; ``previous``: the old poller's view, carried over."""
        notifiers: list[Notifier] = []
        if inotify_dirs:
            notifier = self._notifications(inotify_dirs)
            if notifier is None:
                poll_dirs = poll_dirs | inotify_dirs
            else:
                notifiers.append(notifier)
        if poll_dirs:
            poller = Poller(poll_dirs, self.poll_interval_ms, previous)
            notifiers.append(poller)
            out.detail(f"poller: {poller.describe()}")
        return notifiers

    def _notifications(self, dirs: set[str]) -> Optional[Notifier]:
        """The notifier for the directories not polled; None if it cannot be had (they are polled)."""
        if self.notifier == "watchfiles":
            try:
                return WatchfilesNotifier(set(dirs))
            except (OSError, RuntimeError, ImportError) as exc:
                self.inotify_failed = True
                out.warn(f"cannot use watchfiles ({type(exc).__name__}: {exc}); polling instead")
                return None
        try:
            notifier, failed = open_inotify(dirs, self.wake_fd)
        except (OSError, RuntimeError) as exc:
            self.inotify_failed = True
            out.warn(
                f"cannot use inotify ({exc}); polling instead. Raise fs.inotify.max_user_watches "
                f"(now {inotify_limit()}) to get notifications back: sysctl fs.inotify.max_user_watches=524288"
            )
            return None
        self._report_unwatched({path: _unwatched_reason(code) for path, code in failed.items()})
        return notifier

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
