"""The app's environment: config ``env`` as defaults under reloadd's own environment, and the
project's ``node_modules/.bin`` first on PATH, as nodemon does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .settings import Settings

LOCAL_BIN = Path("node_modules") / ".bin"  # nodemon puts the project's tools first on PATH


def child_env(settings: Settings, base_env: Mapping[str, str], cwd: Path) -> dict[str, str]:
    """The app's environment.

    Args:
        settings: config ``env`` supplies defaults; the caller's environment wins
            (docs/behaviour.md "Deliberate differences").
        base_env: reloadd's own environment.
        cwd: the app's working directory, whose ``node_modules/.bin`` goes first on PATH.

    Returns:
        A new mapping of strings.
    """
    env = {key: env_value(value) for key, value in settings.env.items()}
    env.update(base_env)
    local_bin = str(cwd / LOCAL_BIN)
    parts = (env.get("PATH") or os.defpath).split(os.pathsep)
    env["PATH"] = os.pathsep.join([local_bin, *(part for part in parts if part != local_bin)])
    return env


def env_value(value: Any) -> str:
    """Stringify as JavaScript would: true -> "true", 8000.0 -> "8000"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
