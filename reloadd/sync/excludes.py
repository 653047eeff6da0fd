"""What a sync leaves out: ``ignoreRoot``, ``sync.exclude`` / ``--exclude`` globs, and ``.gitignore`` files.

Everything becomes one list of globs in the project's own matching rules (matching.GlobSet,
paths relative to the synced directory), so that the list can be sent to the agent as text and
both sides leave out exactly the same paths: an excluded path is never sent and never deleted.

``.gitignore`` lines are translated: a pattern without an inner ``/`` matches at any depth
below its file's directory, one with a ``/`` is anchored there, a trailing ``/`` means
directories only. Negations (``!keep.me``) are not supported and are skipped. When a
``.gitignore`` changes, the laptop side collects them again and resyncs (laptop.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..matching import GlobSet, escape_glob
from .manifest import Exclude

GITIGNORE = ".gitignore"
ALWAYS_EXCLUDED = [".git/"]  # a repository's own database is never synced, whatever ignoreRoot says


def gitignore_globs(text: str, directory: str) -> list[str]:
    """The globs for one ``.gitignore`` file in ``directory`` (relative to the synced root, "" for it)."""
    globs = []
    prefix = escape_glob(directory) + "/" if directory else ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#") or line.startswith("!"):
            continue
        line = line.removeprefix("\\")  # `\#name`: a name that starts with # or !
        anchored = line.startswith("/") or "/" in line.rstrip("/")
        line = line.lstrip("/")
        if anchored:
            globs.append(f"./{prefix}{line}")
        elif prefix:
            globs.append(f"./{prefix}**/{line}")
        else:
            globs.append(line)
    return globs


def collect(root: Path, base_globs: list[str]) -> list[str]:
    """``base_globs`` plus the globs of every ``.gitignore`` in the tree not itself excluded."""
    globs = ALWAYS_EXCLUDED + list(base_globs)
    excluded = GlobSet(globs, root)
    stack = [""]
    while stack:
        relative = stack.pop()
        directory = root / relative if relative else root
        gitignore = directory / GITIGNORE
        if gitignore.is_file() and not gitignore.is_symlink():
            try:
                globs += gitignore_globs(gitignore.read_text(errors="replace"), relative)
            except OSError:
                pass
            excluded = GlobSet(globs, root)
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    child = f"{relative}/{entry.name}" if relative else entry.name
                    if entry.is_dir(follow_symlinks=False) and not excluded.matches_dir(str(root / child)):
                        stack.append(child)
        except OSError:
            continue
    return list(dict.fromkeys(globs))


def excluder(root: str, globs: list[str]) -> Exclude:
    """The exclude test both sides use: (path relative to ``root``, is a directory) -> leave out."""
    compiled = GlobSet(globs, Path(root))
    base = root.rstrip("/")

    def exclude(path: str, is_dir: bool) -> bool:
        absolute = f"{base}/{path}"
        return compiled.matches_dir(absolute) if is_dir else compiled.matches(absolute)

    return exclude
