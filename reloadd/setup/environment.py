"""reloadd's own environment variables for its settings (RELOADD_*, and nodemon's CHOKIDAR_USEPOLLING),
resolved here in one place, and the production rule: NODE_ENV=production turns watching off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional

from .production import is_production
from .switches import parse_bool
from .values import parse_log_format, parse_milliseconds, parse_seconds

ENV_OPTIONS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "RELOADD_STOP_TIMEOUT": ("stopTimeout", parse_seconds),
    "RELOADD_POLL": ("legacyWatch", parse_bool),
    "RELOADD_POLL_INTERVAL": ("pollingInterval", parse_milliseconds),
    "RELOADD_LOG_FORMAT": ("logFormat", parse_log_format),
    "RELOADD_WARM": ("warm", parse_bool),
}


def env_options(env: Mapping[str, str]) -> dict[str, Any]:
    """Config keys set by environment variables (empty variables count as unset)."""
    options: dict[str, Any] = {}
    for name, (key, parse) in ENV_OPTIONS.items():
        text = env.get(name, "").strip()
        if text:
            options[key] = parse(name, text)
    if "legacyWatch" not in options and _chokidar_polling(env):
        options["legacyWatch"] = True
    if _watch_switch(env) is False:
        options["watch"] = False
    return options


def _chokidar_polling(env: Mapping[str, str]) -> bool:
    """nodemon's (chokidar's) switch: anything but empty, 0 or false means poll. Never an error: not ours."""
    text = env.get("CHOKIDAR_USEPOLLING", "").strip().lower()
    return text not in ("", "0", "false")


def _watch_switch(env: Mapping[str, str]) -> Optional[bool]:
    """RELOADD_WATCH: 0 = never watch, 1 = watch even in production, unset = decide."""
    text = env.get("RELOADD_WATCH", "").strip()
    return parse_bool("RELOADD_WATCH", text) if text else None


def production_rule(merged: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """The same image must be safe in production: with NODE_ENV=production, supervise without watching
    (docs/behaviour.md "Production"). Takes ``watch`` out of ``merged``; returns the notice to log."""
    if not is_production(env) or _watch_switch(env) or merged.get("watch") is False:
        return []
    merged["watch"] = False
    return ["NODE_ENV=production: running as an init, not watching files (RELOADD_WATCH=1 watches anyway)"]
