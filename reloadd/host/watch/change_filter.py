"""Which raw changes the watcher reports: files that match the rules (or are extra files to watch),
directories that appear (to be watched) or go away, and not the echo of a file a scan just reported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Protocol

from ...output import out
from ..file_signature import FileSignature, file_signature
from .raw_changes import CHANGE_ADDED, CHANGE_DELETED, RawChanges

SCANNED_MEMORY = 10000  # files remembered from new-directory scans, to drop their echo events


class WatchRules(Protocol):
    """What the watcher asks of its rules: the supervisor's (setup/matching.py ``Rules``) or the
    sync's (sync/laptop/localview.py ``SyncRules``)."""

    skipped: str  # how --verbose names a change the rules leave out

    @property
    def roots(self) -> Sequence[Path]: ...

    @property
    def cwd(self) -> Path: ...

    def matches(self, path: str) -> bool: ...

    def prune(self, dir_path: str) -> bool: ...

    def skip_reason(self, path: str) -> Optional[str]: ...


class ChangeFilter:
    """Turns raw changes into the paths that restart the app (and, for ``reloadd sync``, directories)."""

    def __init__(self, rules: WatchRules, extra_files: set[str], report_dirs: bool) -> None:
        self.rules = rules
        self.extra_files = extra_files
        self.report_dirs = report_dirs  # also report directories created or removed (`reloadd sync` mirrors them)
        self._scanned: dict[str, Optional[FileSignature]] = {}  # files a new-directory scan reported

    def directory_events(self, raw: RawChanges, known: set[str]) -> tuple[list[str], bool, set[str]]:
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

    def matched(self, raw: RawChanges, known: set[str]) -> set[str]:
        """The changed files among ``raw`` that restart the app (directories are never changes)."""
        return {
            path
            for _, path in raw
            if path not in known
            and not os.path.isdir(path)
            and (path in self.extra_files or self.rules.matches(path))
            and not self._already_reported(path)
        }

    def explain(self, raw: RawChanges, known: set[str], matched: set[str]) -> None:
        """With --verbose, the files whose change the rules filtered out, and why ("why no restart?")."""
        skipped = [p for _, p in raw if p not in known and p not in matched and self._is_skipped_file(p)]
        if not skipped:
            return
        out.detail(f"changes after filters (before/after): {len(skipped) + len(matched)}/{len(matched)}")
        for path in sorted(skipped):
            out.detail(f"{self.rules.skipped} {os.path.relpath(path, self.rules.cwd)}: {self.rules.skip_reason(path)}")

    def _is_skipped_file(self, path: str) -> bool:
        return path not in self.extra_files and not os.path.isdir(path) and not self.rules.matches(path)

    def scanned_files(self, directories: list[str]) -> set[str]:
        """Files already inside directories that just appeared (``directories``: their walk): changes.

        The new notifier was started before this scan, so a file written in between is seen
        twice: here, and as an event a few milliseconds later. Remembering what the scan saw
        lets _already_reported drop that echo; under load it could otherwise arrive after the
        burst closed and cost a second restart (seen in the bench's 200-file burst).
        """
        matched: set[str] = set()
        if len(self._scanned) > SCANNED_MEMORY:
            self._scanned.clear()  # echoes come within milliseconds; what is left is stale
        for directory in directories:
            try:
                with os.scandir(directory) as entries:
                    found = [e for e in entries if not e.is_dir() and self.rules.matches(e.path)]
                    for entry in found:
                        self._scanned[entry.path] = file_signature(entry.path)
                    matched |= {entry.path for entry in found}
            except OSError:
                continue
        return matched

    def _already_reported(self, path: str) -> bool:
        """An event for a file a scan just reported, unchanged since: the scan's echo, not a change."""
        seen = self._scanned.pop(path, None)
        return seen is not None and seen == file_signature(path)

    def extra_dirs(self, poll_dirs: set[str]) -> set[str]:
        """The directories of extra files to watch (config files outside the roots) that are not polled."""
        return {
            parent
            for parent in (os.path.dirname(extra) for extra in self.extra_files)
            if os.path.isdir(parent) and parent not in poll_dirs
        }
