"""Raw changes, as every notifier hands them to the watcher: (kind, path) pairs, with watchfiles'
kind values, so the inotify reader, the poller and watchfiles all look alike."""

from __future__ import annotations

from typing import Protocol

CHANGE_ADDED, CHANGE_MODIFIED, CHANGE_DELETED = 1, 2, 3  # watchfiles.Change values, so both look alike

RawChanges = set[tuple[int, str]]


class StopFlag(Protocol):
    def is_set(self) -> bool: ...
