"""Soft reload (``hot``): changes that only match the hot globs are handed to the running app
instead of restarting it. The app gets a signal and reads the changed paths from a file."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Optional

from ..setup.globset import GlobSet
from ..setup.settings import HotConfig, signal_number

HOT_FILE_ENV = "RELOADD_HOT_FILE"  # where the app finds the list of changed paths


class SoftReload:
    def __init__(self) -> None:
        self.globs: Optional[GlobSet] = None  # None: soft reload is not configured
        self.signal = 0
        self._file: Optional[Path] = None  # kept across config reloads: the app was told this path

    def configure(self, settings: Optional[HotConfig], cwd: Path) -> None:
        enabled = settings is not None and bool(settings.paths)
        self.globs = GlobSet(settings.paths, cwd) if settings is not None and enabled else None
        self.signal = signal_number(settings.signal) if settings is not None and enabled else 0

    @property
    def enabled(self) -> bool:
        return self.globs is not None

    def applies(self, paths: list[str]) -> bool:
        globs = self.globs
        return globs is not None and bool(paths) and all(globs.matches(path) for path in paths)

    @property
    def file(self) -> Path:
        """The hand-over file, in a private temporary directory made on first use."""
        if self._file is None:
            self._file = Path(tempfile.mkdtemp(prefix="reloadd-")) / "hot-changes"
            self._file.write_text("")
        return self._file

    def hand_over(self, paths: list[str]) -> None:
        """Write the changed paths, one a line; the app never reads a half-written list."""
        partial = self.file.with_name(self.file.name + ".new")
        partial.write_text("".join(path + "\n" for path in paths))
        partial.replace(self.file)

    def cleanup(self) -> None:
        if self._file is not None:
            shutil.rmtree(self._file.parent, ignore_errors=True)
            self._file = None
