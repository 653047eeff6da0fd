"""Questions about paths that setup asks before anything runs (is the script there? is this a config
file?), answered without raising: a name the OS rejects, or a directory reloadd may not search,
is simply "no". And the directory reloadd was started in, which may have been removed."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError


def exists(path: Path) -> bool:
    """Path.exists that says no to names the OS rejects (too long, NUL byte) instead of raising."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def is_file(path: Path) -> bool:
    """Path.is_file that says no when the path cannot even be looked at (a $HOME reloadd may not
    search, a name too long) instead of raising."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def current_dir() -> Path:
    """os.getcwd(), or a usage error when the directory reloadd was started in has been removed."""
    try:
        return Path(os.getcwd())
    except OSError as exc:
        raise ConfigError(f"the current directory cannot be used ({exc.strerror}): cd to one that exists") from None
