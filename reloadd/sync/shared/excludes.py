"""What a sync leaves out: protected names, ``ignoreRoot``, ``sync.exclude`` / ``--exclude`` globs, git's rules.

Protected names (``node_modules``, ``.git``) are left out at every depth whatever ``ignoreRoot``
says: the pod's ``node_modules`` was built for the pod's platform, and a repository's own
database is never project content. ``sync.include`` / ``--include NAME`` lifts the protection
(and drops ``ignoreRoot`` entries naming it). The protected names and the globs become one
list in the project's own matching rules (matching.GlobSet), sent to the agent as text, so
both sides leave out the same paths and the agent can refuse to delete inside them.

git's ignore rules (gitignore.py) are applied on the laptop only, on top of the globs: the
laptop drops every ignored path from the pod's manifest too, so an ignored path is never
sent, never replaced and never deleted.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from ...errors import ConfigError
from ...setup.globset import GlobSet
from .manifest import Exclude

PROTECTED = (".git", "node_modules")  # never read, written or deleted by a sync unless included by name


def check_include(names: list[str], where: str) -> list[str]:
    """The names ``sync.include`` / ``--include`` may lift the protection of."""
    for name in names:
        if name not in PROTECTED:
            raise ConfigError(
                f"{where}: {name!r} is not a protected name (only {', '.join(PROTECTED)}); "
                "other paths are synced unless ignoreRoot, sync.exclude or .gitignore leave them out"
            )
    return list(dict.fromkeys(names))


def sync_globs(ignore_root: list[str], excludes: list[str], include: Collection[str]) -> list[str]:
    """The globs both sides leave out: the protected names not included, ignoreRoot (without the
    entries naming an included name), ``sync.exclude`` and ``--exclude``."""
    protected = [f"{name}/" for name in PROTECTED if name not in include]
    kept = [glob for glob in ignore_root if not set(glob.split("/")) & set(include)]
    return list(dict.fromkeys(protected + kept + excludes))


def excluder(root: str, globs: list[str]) -> Exclude:
    """The exclude test both sides use: (path relative to ``root``, is a directory) -> leave out."""
    # Called for every entry of every walk: ``path`` is already relative to the GlobSet's base
    # and normalised, so the matchers skip normpath and locating (half of a walk's time).
    files, dirs = GlobSet(globs, Path(root)).matchers()

    def exclude(path: str, is_dir: bool) -> bool:
        return dirs(path) if is_dir else files(path)

    return exclude
