"""The matching rules: which changed files restart the app, which directories are never looked at.

Watch entries are paths or globs (globs.py) matched inside the project (globset.py); the ignore
rules are a GlobSet; the ext filter lets a file through by its extension. Every pattern is
compiled to a regular expression once, when the rules are built: ``skip_reason`` runs for every
changed file and ``prune`` for every directory the watcher walks.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Optional

from .globs import (
    BELOW,
    SELF,
    anchor,
    escape_glob,
    expand_braces,
    glob_regex,
    has_magic,
    prefix_regexes,
    split_glob,
    unescape_glob,
)
from .globset import GlobSet, Locator, RegexGroup, absolute_path, rule_entries
from .settings import Settings

DEFAULT_WATCH = "*.*"  # nodemon's default: the working directory, recursively
WHOLE_DIRECTORY = ("*.*", ".", ".*")  # nodemon treats all three as "the working directory"
EVERYTHING_RULE = "**/*.*"  # the default rule once made relative: it does not bypass the ext filter
ALL_EXTENSIONS = "*"
ALL_EXTENSIONS_SHOWN = "*.*"


# Editor and sync-tool files that exist only while a real file is being written. The rename
# that publishes the real file is the change that counts (docs/behaviour.md "Watching").
TEMP_FILE_PATTERNS = (
    r"\.syncthing\..*\.tmp",  # Syncthing's download in progress (renamed over the target when done)
    r"~syncthing~.*\.tmp",  # the same on file systems where dotfiles are awkward
    r"\.reloadd-sync\..*\.tmp",  # `reloadd agent`'s staged file, renamed into place when its batch commits
    r".*\.sw[px]",  # vim's swap file and the .swx it creates to probe the directory
    r"\..*\.sw.",  # vim's further swap files (.swo, .swn, ...) when .swp is taken: always hidden
    r".*~",  # backup copies: vim's backupext, emacs, gedit
    r"\.#.*",  # emacs lock files (dangling symlinks)
    r"#.*#",  # emacs auto-save files
    r"4913",  # vim's "can I create a file here?" probe, deleted at once
    r".*___jb_(?:tmp|old)___",  # JetBrains IDEs' safe-write copies
)
_TEMP_FILE = re.compile("|".join(f"(?:{p})" for p in TEMP_FILE_PATTERNS), re.DOTALL)


def is_temp_file(name: str) -> bool:
    """Is ``name`` (a basename) an editor or sync-tool temporary file that must never restart the app?"""
    return _TEMP_FILE.fullmatch(name) is not None


def _normalise_extensions(extensions: list[str]) -> list[str]:
    cleaned = [e.strip().lstrip(".") for e in extensions]
    return [e for e in dict.fromkeys(cleaned) if e]


def _dedupe_roots(roots: list[Path]) -> list[Path]:
    """Drop repeated roots and roots inside another root, keeping the order they were named in."""
    unique = list(dict.fromkeys(roots))
    return [r for r in unique if not any(o != r and (o in r.parents) for o in unique)]


def _stat(path: Path) -> Optional[os.stat_result]:
    """The path's stat, or None when it cannot be had: missing, too long a name, unreadable parent.
    The watcher treats all of those as "not there yet"."""
    try:
        return path.stat()
    except (OSError, ValueError):
        return None


def _looks_like_file(path: Path) -> bool:
    """For a watch path that does not exist yet: ``app.js``, ``.env`` are files; ``src`` a directory."""
    return "." in path.name


class Rules:
    """The watch, ignore and extension rules of one configuration, compiled once.

    Args:
        settings: the effective configuration (``watch``, ``ignoreRoot``, ``ignore``).
        cwd: the working directory; relative patterns and paths are resolved against it.
        script: the running script (always restarts the app unless ignored), or None.
        extensions: what the ext filter lets through; ``["*"]`` (or nothing) means everything.
    """

    skipped = "no restart for"  # how --verbose names a change the rules filter out (see skip_reason)

    def __init__(self, settings: Settings, cwd: Path, script: Optional[str], extensions: list[str]) -> None:
        self.cwd = Path(absolute_path(str(cwd)))
        self._cwd = str(self.cwd)
        self._watch = rule_entries(settings.watch) if settings.watch is not False else []
        if settings.watch is not False and not self._watch:
            self._watch = [DEFAULT_WATCH]
        self._extensions = _normalise_extensions(extensions)
        self._all_extensions = not self._extensions or ALL_EXTENSIONS in self._extensions
        self._suffixes = tuple("." + e for e in self._extensions)
        self._script = absolute_path(os.path.join(self._cwd, script)) if script else None
        self._roots: list[Path] = []
        self._exact: set[str] = set()  # files named by a watch entry: they bypass the ext filter
        self._generic = RegexGroup()  # watch rules whose files go through the ext filter
        self._named = RegexGroup()  # watch globs such as `src/*.*` that bypass it, as in nodemon
        self._relevant = RegexGroup()  # directories that can hold a watched file
        for entry in self._watch:
            self._add_watch(entry)
        self.roots = _dedupe_roots(self._roots)
        self._root_set = {str(r) for r in self.roots}
        self._relevant_dirs = self._ancestors(self._exact | ({self._script} if self._script else set()))
        self._locator = Locator(self.cwd, self.roots)
        self._ignore_rules = list(settings.ignore_root) + list(settings.ignore)
        self._ignore = GlobSet(self._ignore_rules, self.cwd, self.roots)
        for group in (self._generic, self._named, self._relevant):
            group.compile()

    # -- building ---------------------------------------------------------------------------
    def _add_watch(self, entry: str) -> None:
        if entry in WHOLE_DIRECTORY:
            entry = DEFAULT_WATCH
        for pattern in expand_braces(entry):
            path = Path(os.path.normpath(os.path.join(self._cwd, unescape_glob(pattern))))
            if _stat(path) is not None or not has_magic(pattern):
                self._add_watch_path(path, pattern.endswith("/"))
            else:
                self._add_watch_glob(pattern)

    def _add_watch_path(self, path: Path, directory: bool) -> None:
        """A path without wildcards: a directory means everything below it, a file just itself."""
        st = _stat(path)
        is_dir = directory or (st is not None and stat.S_ISDIR(st.st_mode))
        if is_dir or st is None or not stat.S_ISREG(st.st_mode):  # a directory, or not there yet: both readings
            self._add_glob(self._generic, escape_glob(str(path)), BELOW)
        if not is_dir:
            self._exact.add(str(path))
        # Roots must be directories: a file is watched through its parent. A path that does not
        # exist yet is taken for a directory (a volume mounted late) unless its name looks like a file's.
        missing_dir = not is_dir and st is None and not _looks_like_file(path)
        self._roots.append(path if is_dir or missing_dir else path.parent)

    def _add_watch_glob(self, pattern: str) -> None:
        """A glob: the directory before its first wildcard is the root, the glob filters below it."""
        anchored = anchor(pattern.rstrip("/"), self._cwd)
        if pattern.endswith("/"):
            anchored += "/**"
        self._roots.append(self._glob_root(pattern))
        names_every_file = anchored.endswith("/*.*") and anchored != EVERYTHING_RULE
        if names_every_file:  # nodemon: "src/*.*" lets every file in src through, whatever its extension
            self._add_glob(self._named, anchored, SELF)
        self._add_glob(self._generic, anchored, BELOW)

    def _add_glob(self, group: RegexGroup, glob: str, extent: str) -> None:
        absolute, segments = split_glob(glob)
        group.add(absolute, glob_regex(absolute, segments, False, extent))
        for prefix in prefix_regexes(absolute, segments, False):
            self._relevant.add(absolute, prefix)

    def _glob_root(self, pattern: str) -> Path:
        literal: list[str] = []
        for segment in pattern.split("/"):
            if has_magic(segment):
                break
            literal.append(unescape_glob(segment))
        prefix = "/".join(literal) or ("/" if pattern.startswith("/") else ".")
        return Path(os.path.normpath(os.path.join(self._cwd, prefix)))

    @staticmethod
    def _ancestors(files: set[str]) -> set[str]:
        return {str(parent) for file in files for parent in Path(file).parents}

    # -- questions the watcher asks --------------------------------------------------------------
    def matches(self, path: str) -> bool:
        """Does a change to the file at absolute ``path`` restart the app?"""
        return self.skip_reason(path) is None

    def skip_reason(self, path: str) -> Optional[str]:
        """Why a change to the file at absolute ``path`` does not restart the app; None if it does."""
        path = absolute_path(path)
        if is_temp_file(os.path.basename(path)):
            return "an editor or sync temp file"
        relative = self._locator.relative(path)
        if self._ignore.match_located(relative, path, directory=False):
            return "ignored"
        if path == self._script or path in self._exact or self._named.match(relative, path):
            return None
        if not self._generic.match(relative, path):
            return "outside the watched paths"
        if self._all_extensions or path.endswith(self._suffixes):
            return None
        return f"extension not in {self.describe_ext()}"

    def prune(self, dir_path: str) -> bool:
        """Is the directory at absolute ``dir_path`` left out entirely (no watch, never scanned)?"""
        path = absolute_path(dir_path)
        if path in self._root_set:
            return False
        relative = self._locator.relative(path)
        if self._ignore.match_located(relative, path, directory=True):
            return True
        return not (path in self._relevant_dirs or self._relevant.match(relative, path))

    # -- what the startup log shows --------------------------------------------------------------
    def describe_watch(self) -> list[str]:
        """The watch entries as the user gave them (nodemon shows ``*.*`` by default)."""
        return list(self._watch)

    def describe_ignore(self) -> list[str]:
        """The ignore rules in force: ``ignoreRoot`` first, then ``ignore``, as nodemon's --verbose lists them."""
        return self._ignore_rules

    def describe_ext(self) -> str:
        return ALL_EXTENSIONS_SHOWN if self._all_extensions else ",".join(self._extensions)
