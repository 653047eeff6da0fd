"""The matching rules: which changed files restart the app, which directories are never looked at.

Patterns are minimatch-like globs (``**``, ``*``, ``?``, ``[...]``, ``{a,b}``), as in nodemon,
with one deliberate difference (docs/behaviour.md): they are matched against the path *inside the
project* (relative to the working directory, or to the watch root for paths outside it), not
against the whole absolute path. nodemon turns ``tmp/*`` into ``**/tmp/*`` and tests it
against ``/tmp/x/server.js``, so a project living under ``/tmp`` is ignored entirely.

Every pattern is compiled to a regular expression once, when the rules are built: ``matches``
runs for every changed file and ``prune`` for every directory the watcher walks.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Optional

from ..errors import ConfigError
from .settings import Settings

DEFAULT_WATCH = "*.*"  # nodemon's default: the working directory, recursively
WHOLE_DIRECTORY = ("*.*", ".", ".*")  # nodemon treats all three as "the working directory"
EVERYTHING_RULE = "**/*.*"  # the default rule once made relative: it does not bypass the ext filter
ALL_EXTENSIONS = "*"
ALL_EXTENSIONS_SHOWN = "*.*"
COMMENT = "#"
MAGIC = frozenset("*?[")  # after brace expansion, these make a segment a pattern rather than a name
MAX_BRACE_EXPANSION = 1024  # `{1..100000}` in a watch list is a typo, not a request for 100,000 rules

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

# One path segment. Without `dot`, wildcards do not match a leading '.', as in minimatch with
# dot:false: that is how dotfiles stay out unless a watch entry spells out the dot itself.
_ANY_SEGMENT = {True: r"[^/]+", False: r"(?!\.)[^/]+"}
_NO_DOT = r"(?!\.)"
_STAR = "[^/]*"

# What a match on a path means for the paths below it.
SELF, BELOW, UNDER = "self", "below", "under"  # the path only / it or anything below / only below it

_POSIX_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r"\s",
    "xdigit": "0-9A-Fa-f",
    "word": r"\w",
}
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)|([a-zA-Z])\.\.([a-zA-Z])")


def is_temp_file(name: str) -> bool:
    """Is ``name`` (a basename) an editor or sync-tool temporary file that must never restart the app?"""
    return _TEMP_FILE.fullmatch(name) is not None


# ------------------------------------------------------------------------------ braces


def _skip_escape(text: str, index: int) -> int:
    """The index after the character at ``index``: two characters for a backslash escape."""
    return index + 2 if text[index] == "\\" else index + 1


def _closing_brace(text: str, start: int) -> Optional[int]:
    depth, index = 0, start
    while index < len(text):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index = _skip_escape(text, index)
    return None


def _split_alternatives(body: str) -> list[str]:
    parts, depth, start, index = [], 0, 0, 0
    while index < len(body):
        char = body[index]
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(body[start:index])
            start = index + 1
        index = _skip_escape(body, index)
    return parts + [body[start:]]


def _range(body: str) -> Optional[list[str]]:
    """``1..3`` -> 1 2 3, ``a..c`` -> a b c, ``01..10`` keeps the padding; None when not a range."""
    found = _RANGE.fullmatch(body)
    if not found:
        return None
    if found.group(3):
        low, high = ord(found.group(3)), ord(found.group(4))
        step = 1 if high >= low else -1
        return [chr(code) for code in range(low, high + step, step)]
    first, last = found.group(1), found.group(2)
    low, high = int(first), int(last)
    if abs(high - low) >= MAX_BRACE_EXPANSION:
        raise ConfigError(f"pattern range {{{body}}} expands to more than {MAX_BRACE_EXPANSION} patterns")
    padded = any(len(n.lstrip("-")) > 1 and n.lstrip("-").startswith("0") for n in (first, last))
    width = max(len(first), len(last)) if padded else 0
    step = 1 if high >= low else -1
    return [str(n).zfill(width) for n in range(low, high + step, step)]


def _first_brace(text: str) -> Optional[tuple[str, list[str], str]]:
    """Split ``text`` at its first expandable ``{...}``: (before, alternatives, after)."""
    index = 0
    while index < len(text):
        if text[index] == "{":
            close = _closing_brace(text, index)
            if close is not None:
                body = text[index + 1 : close]
                parts = _split_alternatives(body)
                alternatives = parts if len(parts) > 1 else _range(body)
                if alternatives is not None:
                    return text[:index], alternatives, text[close + 1 :]
        index = _skip_escape(text, index)
    return None


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{a,b}`` and ``{1..3}`` (nested too) into plain globs; other braces stay literal."""
    done: list[str] = []
    pending = [pattern]
    while pending:
        current = pending.pop()
        split = _first_brace(current)
        if split is None:
            done.append(current)
            continue
        before, alternatives, after = split
        pending.extend(before + alt + after for alt in reversed(alternatives))
        if len(done) + len(pending) > MAX_BRACE_EXPANSION:
            raise ConfigError(f"pattern {pattern!r} expands to more than {MAX_BRACE_EXPANSION} patterns")
    return done


# ------------------------------------------------------------------------------ globs to regexes


def escape_glob(text: str) -> str:
    """Make a literal path safe to embed in a glob (a working directory may contain ``[``)."""
    return re.sub(r"([\\*?\[\]{}])", r"\\\1", text)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def has_magic(text: str) -> bool:
    """Does ``text`` contain an unescaped ``*``, ``?`` or ``[``?"""
    index = 0
    while index < len(text):
        if text[index] in MAGIC:
            return True
        index = _skip_escape(text, index)
    return False


def _class_item(segment: str, index: int) -> tuple[str, int]:
    """One item of a ``[...]`` class as regex text, and the index after it."""
    char = segment[index]
    if segment.startswith("[:", index):
        end = segment.find(":]", index + 2)
        name = segment[index + 2 : end] if end > 0 else ""
        if name in _POSIX_CLASSES:
            return _POSIX_CLASSES[name], end + 2
    if char == "\\" and index + 1 < len(segment):
        return re.escape(segment[index + 1]), index + 2
    if char == "-":
        return "-", index + 1  # a range inside the class; a dash first or last is literal in regexes too
    return re.escape(char), index + 1


def _char_class(segment: str, start: int) -> Optional[tuple[str, int]]:
    """Translate the ``[...]`` starting at ``start``; None when it is not closed (then ``[`` is literal)."""
    index = start + 1
    negate = index < len(segment) and segment[index] in "!^"
    index += negate
    first = index
    items: list[str] = []
    while index < len(segment):
        if segment[index] == "]" and index > first:  # a `]` right after `[` is a member, as in shells
            body = "".join(items)
            return ("[^/" + body + "]" if negate else "(?!/)[" + body + "]"), index + 1
        item, index = _class_item(segment, index)
        items.append(item)
    return None


def _segment_regex(segment: str, dot: bool) -> str:
    """One path segment of a glob (no ``/``, not ``**``) as regex text."""
    if segment == "*.*":
        segment = "*"  # nodemon patches minimatch so that "*.*" matches names without an extension too
    out: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "[":
            translated = _char_class(segment, index)
            if translated is not None:
                out.append(translated[0])
                index = translated[1]
                continue
        if char == "\\" and index + 1 < len(segment):
            out.append(re.escape(segment[index + 1]))
        elif char != "*" or out[-1:] != [_STAR]:  # `a**b` is `a*b`; repeated stars only slow the regex down
            out.append({"*": _STAR, "?": "[^/]"}.get(char) or re.escape(char))
        index = _skip_escape(segment, index)
    regex = "".join(out)
    starts_with_dot = segment.startswith((".", "\\."))
    return regex if dot or starts_with_dot else _NO_DOT + regex


def check_glob(pattern: str) -> None:
    """Raise ValueError (saying why) for a glob that cannot be compiled: a reversed range such as
    ``[z-a]``, or braces that expand to too many patterns. Every regex reloadd builds is made of
    these segments, so a glob that passes here compiles in any rule."""
    try:
        expanded = expand_braces(pattern)
    except ConfigError as exc:
        raise ValueError(exc.message) from None
    for alternative in expanded:
        for segment in alternative.split("/"):
            if not segment or segment == "**":
                continue
            try:
                re.compile(_segment_regex(segment, True))
            except re.error as exc:
                raise ValueError(f"invalid glob {pattern!r}: {exc.msg}") from None


def _segments(text: str) -> tuple[bool, list[str]]:
    """(absolute, segments) of a glob, with empty segments and repeated ``**`` collapsed."""
    segments: list[str] = []
    for segment in text.split("/"):
        if segment and not (segment == "**" and segments[-1:] == ["**"]):
            segments.append(segment)
    return text.startswith("/"), segments


def _compile(absolute: bool, segments: list[str], dot: bool, extent: str) -> str:
    """Regex text for a glob given as segments; ``extent`` says what a match means for paths below."""
    any_segment = _ANY_SEGMENT[dot]
    if not segments:  # "/" (or "**" collapsed to nothing): everything
        return "/.*" if absolute else ".*"
    out = "/" if absolute else ""
    separate = False  # does the next segment need a "/" in front?
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment != "**":
            out += ("/" if separate else "") + _segment_regex(segment, dot)
            separate = True
        elif separate:  # `a/**` matches a itself and anything below; `a/**/b` matches a/b too
            out += f"(?:/{any_segment})*"
        elif last:  # `**` alone
            out += f"(?:{any_segment}(?:/{any_segment})*)?"
        else:  # a leading `**/`: zero or more directories
            out += f"(?:{any_segment}/)*"
    ends_with_globstar = segments[-1:] == ["**"]
    if extent == BELOW and not ends_with_globstar:
        out += f"(?:/{any_segment})*"
    elif extent == UNDER:
        out += f"(?:/{any_segment})+"
    return out


def _prefixes(absolute: bool, segments: list[str], dot: bool) -> list[str]:
    """Regex texts for the directories a glob can match something inside of (for pruning)."""
    found = [_compile(absolute, segments[:count], dot, SELF) for count in range(1, len(segments))]
    return found + [_compile(absolute, segments, dot, BELOW)]


def _anchor(pattern: str, base: str) -> str:
    """Make a pattern absolute or any-depth: ``./x`` is under ``base``, ``x`` is ``**/x``."""
    if pattern.startswith("/"):
        return os.path.normpath(pattern)
    if pattern in (".", "..") or pattern.startswith(("./", "../")):
        return os.path.normpath(escape_glob(base) + "/" + pattern)
    relative = os.path.normpath(pattern)
    return relative if relative == "**" or relative.startswith("**/") else "**/" + relative


class _RegexGroup:
    """Regexes for paths relative to the project and for absolute paths, each compiled into one."""

    def __init__(self) -> None:
        self._sources: dict[bool, list[str]] = {False: [], True: []}
        self._compiled: dict[bool, Optional[re.Pattern[str]]] = {False: None, True: None}

    def add(self, absolute: bool, regex: str) -> None:
        self._sources[absolute].append(regex)

    def compile(self) -> _RegexGroup:
        for absolute, sources in self._sources.items():
            unique = list(dict.fromkeys(sources))
            try:
                self._compiled[absolute] = re.compile("|".join(f"(?:{s})" for s in unique)) if unique else None
            except re.error as exc:  # config validation runs check_glob first: this is a second net
                raise ConfigError(f"invalid glob: {exc.msg}") from None
        return self

    def match(self, relative: str, path: str) -> bool:
        relative_re, absolute_re = self._compiled[False], self._compiled[True]
        if relative and relative_re is not None and relative_re.fullmatch(relative):
            return True
        return absolute_re is not None and absolute_re.fullmatch(path) is not None


class _Locator:
    """Turns an absolute path into the path that relative patterns are matched against."""

    def __init__(self, base: Path, roots: list[Path]) -> None:
        others = sorted((str(r) for r in roots if r != base), key=len, reverse=True)
        self._bases = [str(base)] + others  # the working directory first, then the deepest root

    def relative(self, path: str) -> str:
        """Relative to the working directory, else to the watch root holding it, else to ``/``."""
        for base in self._bases:
            if path == base:
                return ""
            prefix = base.rstrip("/") + "/"
            if path.startswith(prefix):
                return path[len(prefix) :]
        return path.lstrip("/")


def _entries(patterns: list[str]) -> list[str]:
    """The patterns that are not empty and not ``#`` comments."""
    return [p for p in patterns if p.strip() and not p.lstrip().startswith(COMMENT)]


def _absolute(path: str) -> str:
    return os.path.normpath(path) if path.startswith("/") else os.path.abspath(path)


class GlobSet:
    """A list of ignore-style globs (dot files included), matched inside the project.

    A relative pattern matches at any depth; a pattern matching a directory matches everything
    below it; a trailing ``/`` matches directories only; ``./x`` and absolute patterns are anchored.
    """

    def __init__(self, patterns: list[str], base: Path, roots: Optional[list[Path]] = None) -> None:
        self._base = Path(_absolute(str(base)))
        self._locator = _Locator(self._base, roots or [])
        self._files, self._dirs = _RegexGroup(), _RegexGroup()
        for entry in _entries(patterns):
            for pattern in expand_braces(entry):
                self._add(pattern)
        self._files.compile()
        self._dirs.compile()

    def _add(self, pattern: str) -> None:
        absolute, segments = _segments(_anchor(pattern.rstrip("/") or "/", str(self._base)))
        directories_only = pattern.endswith("/") and len(pattern) > 1
        self._files.add(absolute, _compile(absolute, segments, True, UNDER if directories_only else BELOW))
        self._dirs.add(absolute, _compile(absolute, segments, True, BELOW))

    def matches(self, path: str) -> bool:
        """Does the file at absolute ``path`` (or a directory above it) match a pattern?"""
        path = _absolute(path)
        return self._files.match(self._locator.relative(path), path)

    def matches_dir(self, path: str) -> bool:
        """Does the directory at absolute ``path`` (or one above it) match a pattern?"""
        path = _absolute(path)
        return self._dirs.match(self._locator.relative(path), path)

    def match_located(self, relative: str, path: str, directory: bool) -> bool:
        """``matches``/``matches_dir`` for a caller that has already located ``path`` (the hot path)."""
        return (self._dirs if directory else self._files).match(relative, path)


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
        self.cwd = Path(_absolute(str(cwd)))
        self._cwd = str(self.cwd)
        self._watch = _entries(settings.watch) if settings.watch is not False else []
        if settings.watch is not False and not self._watch:
            self._watch = [DEFAULT_WATCH]
        self._extensions = _normalise_extensions(extensions)
        self._all_extensions = not self._extensions or ALL_EXTENSIONS in self._extensions
        self._suffixes = tuple("." + e for e in self._extensions)
        self._script = _absolute(os.path.join(self._cwd, script)) if script else None
        self._roots: list[Path] = []
        self._exact: set[str] = set()  # files named by a watch entry: they bypass the ext filter
        self._generic = _RegexGroup()  # watch rules whose files go through the ext filter
        self._named = _RegexGroup()  # watch globs such as `src/*.*` that bypass it, as in nodemon
        self._relevant = _RegexGroup()  # directories that can hold a watched file
        for entry in self._watch:
            self._add_watch(entry)
        self.roots = _dedupe_roots(self._roots)
        self._root_set = {str(r) for r in self.roots}
        self._relevant_dirs = self._ancestors(self._exact | ({self._script} if self._script else set()))
        self._locator = _Locator(self.cwd, self.roots)
        self._ignore_rules = list(settings.ignore_root) + list(settings.ignore)
        self._ignore = GlobSet(self._ignore_rules, self.cwd, self.roots)
        for group in (self._generic, self._named, self._relevant):
            group.compile()

    # -- building ---------------------------------------------------------------------------
    def _add_watch(self, entry: str) -> None:
        if entry in WHOLE_DIRECTORY:
            entry = DEFAULT_WATCH
        for pattern in expand_braces(entry):
            path = Path(os.path.normpath(os.path.join(self._cwd, _unescape(pattern))))
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
        anchored = _anchor(pattern.rstrip("/"), self._cwd)
        if pattern.endswith("/"):
            anchored += "/**"
        self._roots.append(self._glob_root(pattern))
        names_every_file = anchored.endswith("/*.*") and anchored != EVERYTHING_RULE
        if names_every_file:  # nodemon: "src/*.*" lets every file in src through, whatever its extension
            self._add_glob(self._named, anchored, SELF)
        self._add_glob(self._generic, anchored, BELOW)

    def _add_glob(self, group: _RegexGroup, glob: str, extent: str) -> None:
        absolute, segments = _segments(glob)
        group.add(absolute, _compile(absolute, segments, False, extent))
        for prefix in _prefixes(absolute, segments, False):
            self._relevant.add(absolute, prefix)

    def _glob_root(self, pattern: str) -> Path:
        literal: list[str] = []
        for segment in pattern.split("/"):
            if has_magic(segment):
                break
            literal.append(_unescape(segment))
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
        path = _absolute(path)
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
        path = _absolute(dir_path)
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
