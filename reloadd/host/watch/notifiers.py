"""The notifiers that hear changes in the directories the watcher gives them, one interface for all:
reloadd's own inotify reader (inotify.py) where libc has inotify, watchfiles (FSEvents on macOS,
kqueue on the BSDs) where it has not, and the poller (poller.py) for mounts inotify cannot hear.

Where libc has no inotify (macOS, the BSDs: ``reloadd sync`` runs on a laptop), the same pruned
directories are handed to watchfiles behind the same Notifier interface; its wait wakes every
few milliseconds to look at its change set, so the idle cost there is watchfiles'. Which one is
used is decided by what libc offers, not by the platform's name.
"""

from __future__ import annotations

import ctypes
import errno
from typing import Any, Literal, Protocol, Union

from .inotify import Inotify
from .raw_changes import RawChanges, StopFlag

NotifierKind = Literal["inotify", "watchfiles"]  # what hears changes on mounts that are not polled
NOTIFIER_WHY = {
    "inotify": "reloadd's own inotify reader",
    "watchfiles": "no inotify in libc: watchfiles, FSEvents on macOS",
}
# How watchfiles groups raw events (where it is the notifier): it looks at its change set every
# step and holds events while more keep coming, up to the debounce, which must stay under
# bursts.GROUP_QUIET or a long write stream would arrive after its burst closed.
WATCHFILES_STEP_MS = 2
WATCHFILES_DEBOUNCE_MS = 10


class Notifier(Protocol):
    """A source of raw changes for a fixed set of directories (each watched non-recursively).

    Implemented by InotifyNotifier, WatchfilesNotifier and poller.Poller.
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


def open_inotify(dirs: set[str], wake_fd: int) -> tuple[InotifyNotifier, dict[str, int]]:
    """An inotify notifier on ``dirs``, and the errno of each directory it could not watch.

    Raises:
        OSError: no inotify instance, or the watch limit (ENOSPC) was reached before every
            directory had a watch: a directory left out would never restart the app, so then
            they must all be polled instead.
    """
    inotify = Inotify()
    failed: dict[str, int] = {}
    for directory in sorted(dirs):
        code = inotify.add(directory)
        if code == errno.ENOSPC:
            inotify.close()
            missing = len(dirs) - len(inotify.paths)
            raise OSError(errno.ENOSPC, f"{missing} of {len(dirs)} directories got no inotify watch")
        if code:
            failed[directory] = code
    return InotifyNotifier(inotify, set(dirs) - set(failed), wake_fd), failed


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
