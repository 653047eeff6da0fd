"""The plan: everything the supervisor needs to run the app, derived from the command line and
config files. Built whole before anything is started, at startup and on every config reload,
so that a reload that would fail fails before the running app is touched."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .command import Command
from .matching import Rules
from .settings import Settings


@dataclass
class Plan:
    settings: Settings
    command: Command
    env: dict[str, str]
    cwd: Path
    rules: Rules
    files: list[Path] = field(default_factory=list)  # config files in use: editing one reloads it
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    candidates: list[Path] = field(default_factory=list)  # config files not in use that would be read: watched

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.cwd)
