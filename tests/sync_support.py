"""Helpers for tests of ``reloadd sync``: a laptop dir, a pod dir, and the sync between them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import psutil
from support import Reloadd, wait_for

SYNCED = "] synced "  # the laptop's line after each batch
IN_SYNC = "] in sync with "  # ...or after a resync that had nothing to send
SYNCED_JSON = '"event": "synced"'  # either, with --log-format json


def control_env(base: Path) -> dict[str, str]:
    """A private channel directory per test, so parallel tests' supervisors never hear each other."""
    directory = base / "control"
    directory.mkdir(mode=0o700, exist_ok=True)
    return {"RELOADD_CONTROL_DIR": str(directory)}


def start_sync(
    run_reloadd: Callable[..., Reloadd], laptop: Path, pod: Path, *extra: str, env: Optional[dict[str, str]] = None
) -> Reloadd:
    """``reloadd sync LAPTOP --transport env --to POD``: the agent runs on this machine, as through kubectl."""
    sync = run_reloadd(
        ["sync", str(laptop), "--transport", "env", "--to", str(pod), *extra],
        laptop,
        env={**control_env(laptop.parent), **(env or {})},
    )
    wait_for(lambda: first_sync_done(sync) or sync.proc.poll() is not None, what=f"the first sync:\n{sync.log()}")
    return sync


def first_sync_done(sync: Reloadd) -> bool:
    log = sync.log()
    return SYNCED in log or IN_SYNC in log or SYNCED_JSON in log


def agents_of(sync: Reloadd) -> list[psutil.Process]:
    """The `reloadd agent` processes the sync started (directly, or under a transport command)."""
    try:
        children = psutil.Process(sync.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "agent" in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by content, directories as "/", symlinks as "-> target"."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found[relative] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                found[relative] = "/"
            else:
                found[relative] = path.read_text(errors="replace")
    return found
