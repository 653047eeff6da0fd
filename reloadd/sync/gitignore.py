"""git's own ignore rules, answered the way ``git check-ignore`` answers them (no git needed).

Where the rules come from, highest priority first: the deepest ``.gitignore`` on the way to a
path (within one file the last matching line wins), shallower ones up to the repository's
top, ``.git/info/exclude``, then the user's ``core.excludesFile`` (or git's default
``$XDG_CONFIG_HOME/git/ignore``). A directory that is ignored hides everything below it: a
``!pattern`` cannot bring back a file whose parent directory is excluded, and ``.gitignore``
files inside it are never read.

Pattern syntax (gitignore(5)): ``#`` comments, ``\\#``/``\\!`` escapes, ``!`` negation,
trailing spaces dropped unless escaped, a trailing ``/`` for directories only, a pattern
without an inner ``/`` matching a name at any depth, one with a ``/`` anchored at its file's
directory, ``*``/``?``/``[...]`` not crossing ``/``, and ``**`` in ``**/x``, ``x/**``,
``x/**/y`` crossing directories. Patterns become regular expressions once, when read.

The ``.gitignore`` files inside the synced tree are read through the tree's descriptors and
never through a symlink (git does not follow a symlinked ``.gitignore`` either).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

GITIGNORE = ".gitignore"
IGNORE_FILE_MAX = 1024 * 1024  # bytes of one ignore file read; a bigger one is not a project's ignore list
_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}

ReadFile = Callable[[str], Optional[bytes]]  # a directory relative to the synced root -> its .gitignore


@dataclass(frozen=True)
class Pattern:
    base: str  # the directory of the file it came from, relative to the repository's top ("" for the top)
    regex: re.Pattern[str]
    negative: bool
    dir_only: bool
    basename_only: bool  # no inner "/": matched against the last component at any depth

    def on_full_path(self) -> str:
        """The pattern as a regular expression for the whole path from the repository's top."""
        if self.basename_only:
            return f"(?:.*/)?(?:{self.regex.pattern})"
        return f"{re.escape(self.base)}/(?:{self.regex.pattern})" if self.base else f"(?:{self.regex.pattern})"


class Rules:
    """The patterns that apply inside one directory, lowest priority first, as one regex per kind.

    The last matching pattern decides; one alternation of them all, highest priority first, finds
    it in a single match (the alternation is tried in order, and each alternative is one group).
    """

    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns
        self._compiled: dict[bool, tuple[Optional[re.Pattern[str]], list[Pattern]]] = {}

    def decide(self, full: str, is_dir: bool) -> Optional[Pattern]:
        """The pattern that decides for ``full`` (a path from the repository's top), or None."""
        compiled = self._compiled.get(is_dir)
        if compiled is None:
            order = [p for p in reversed(self.patterns) if is_dir or not p.dir_only]
            regex = re.compile("|".join(f"({p.on_full_path()})" for p in order), re.DOTALL) if order else None
            compiled = self._compiled[is_dir] = (regex, order)
        regex, order = compiled
        match = regex.fullmatch(full) if regex is not None else None
        return order[match.lastindex - 1] if match is not None and match.lastindex else None


def parse(text: str, base: str) -> list[Pattern]:
    """The patterns of one ignore file whose directory is ``base`` (relative to the repository's top)."""
    patterns = []
    for raw in text.split("\n"):
        line = _trim(raw.removesuffix("\r"))
        if not line or line.startswith("#"):
            continue
        negative = line.startswith("!")
        if negative:
            line = line[1:]
        dir_only = line.endswith("/")
        if dir_only:
            line = line[:-1]
        if not line:
            continue
        basename_only = "/" not in line
        regex = translate(line.removeprefix("/"))
        if regex is not None:
            patterns.append(Pattern(base, re.compile(regex, re.DOTALL), negative, dir_only, basename_only))
    return patterns


def _trim(line: str) -> str:
    """Trailing spaces go, unless escaped with a backslash (the backslash stays: it escapes the space)."""
    end = len(line)
    index = 0
    keep = 0
    while index < end:
        if line[index] == "\\" and index + 1 < end:
            index += 2
            keep = index
            continue
        if line[index] != " ":
            keep = index + 1
        index += 1
    return line[:keep]


def translate(pattern: str) -> Optional[str]:
    """A wildmatch pattern (with git's path rules) as a regular expression; None if it can never match."""
    out: list[str] = []
    index, end = 0, len(pattern)
    while index < end:
        char = pattern[index]
        if char == "*":
            stars = index
            while index < end and pattern[index] == "*":
                index += 1
            double = index - stars >= 2
            after_slash = stars == 0 or pattern[stars - 1] == "/"
            before_slash = index == end or pattern[index] == "/" or pattern.startswith("\\/", index)
            if double and after_slash and before_slash:
                if index == end:
                    out.append(".*")
                else:
                    out.append("(?:.*/)?")  # "**/": zero or more directories
                    index += 2 if pattern[index] == "\\" else 1
            else:
                out.append("[^/]*")
            continue
        if char == "?":
            out.append("[^/]")
        elif char == "[":
            found = _bracket(pattern, index)
            if found is None:
                return None  # an unterminated or malformed class: git's wildmatch gives up on the pattern
            regex, index = found
            out.append(regex)
            continue
        elif char == "\\":
            if index + 1 >= end:
                return None  # a trailing backslash matches nothing
            index += 1
            out.append(re.escape(pattern[index]))
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def _bracket(pattern: str, start: int) -> Optional[tuple[str, int]]:
    """``[...]`` at ``start``: (regex, index after the class), or None when it never closes."""
    index = start + 1
    negated = pattern[index : index + 1] in ("!", "^")
    index += negated
    items: list[str] = []
    previous: Optional[str] = None  # the last single character, which a "-" makes the start of a range
    while index < len(pattern) and (pattern[index] != "]" or not items and previous is None):
        if pattern[index] == "-" and previous is not None and pattern[index + 1 : index + 2] not in ("", "]"):
            high = _one_char(pattern, index + 1)
            if high is None:
                return None
            char, index = high  # the range's start already matched as itself (so "[z-a]" matches "z", as in git)
            if ord(previous) <= ord(char):
                items.append(f"{_set_char(previous)}-{_set_char(char)}")
            previous = None
            continue
        item = _class_item(pattern, index)
        if item is None:
            return None
        items.append(item[0])
        previous, index = item[1], item[2]
    if index >= len(pattern):
        return None
    body = "".join(items)
    if negated:
        return (f"[^/{body}]", index + 1)
    return (f"(?!/)[{body}]" if body else "(?!)", index + 1)


def _class_item(pattern: str, index: int) -> Optional[tuple[str, Optional[str], int]]:
    """One item of a class: (regex, the character if it is a single one, next index); None aborts."""
    if pattern.startswith("[:", index):
        close = pattern.find("]", index + 2)
        if close < 0:
            return None
        if pattern[close - 1] == ":" and close - 1 >= index + 2:
            name = pattern[index + 2 : close - 1]
            return (_CLASSES[name], None, close + 1) if name in _CLASSES else None
    found = _one_char(pattern, index)
    if found is None:
        return None
    return (_set_char(found[0]), found[0], found[1])


def _one_char(pattern: str, index: int) -> Optional[tuple[str, int]]:
    """The character at ``index`` (a backslash escapes the next one) and the index after it."""
    if pattern[index] == "\\":
        index += 1
    if index >= len(pattern):
        return None
    return (pattern[index], index + 1)


def _set_char(char: str) -> str:
    return "\\" + char if char in "\\]^-[" else char


class GitIgnore:
    """``ignored(path, is_dir)`` for paths relative to the synced root, as git would answer."""

    def __init__(self, prefix: str, outer: list[Pattern], read: ReadFile) -> None:
        self._prefix = prefix  # the synced root relative to the repository's top ("" when they are the same)
        self._outer = outer  # excludesFile, info/exclude, and the .gitignore files above the synced root
        self._read = read
        self._lists: dict[str, Rules] = {}
        self._ignored_dirs: dict[str, bool] = {}

    def ignored(self, path: str, is_dir: bool) -> bool:
        parent = path.rpartition("/")[0]
        if parent and self._dir_ignored(parent):
            return True
        return self._match(path, is_dir)

    def _dir_ignored(self, directory: str) -> bool:
        known = self._ignored_dirs.get(directory)
        if known is None:
            parent = directory.rpartition("/")[0]
            known = (bool(parent) and self._dir_ignored(parent)) or self._match(directory, True)
            self._ignored_dirs[directory] = known
        return known

    def _match(self, path: str, is_dir: bool) -> bool:
        rules = self._rules(path.rpartition("/")[0])
        if not rules.patterns:  # most trees outside a repository: every walked path asks
            return False
        full = f"{self._prefix}/{path}" if self._prefix else path
        pattern = rules.decide(full, is_dir)
        return pattern is not None and not pattern.negative

    def _rules(self, directory: str) -> Rules:
        """The rules inside ``directory``: its parent's, plus its own .gitignore's lines if it has one."""
        found = self._lists.get(directory)
        if found is None:
            above = self._rules(directory.rpartition("/")[0]) if directory else Rules(self._outer)
            text = self._read(directory)
            base = "/".join(part for part in (self._prefix, directory) if part)
            own = parse(text.decode(errors="replace"), base) if text else []
            found = Rules(above.patterns + own) if own else above
            self._lists[directory] = found
        return found


def load(root: Path, read: ReadFile, env: dict[str, str]) -> GitIgnore:
    """git's rules for the tree at ``root``: its repository (if any), the user's excludes file."""
    top = _repository_top(root)
    outer: list[Pattern] = []
    excludes = _excludes_file(top, env)
    if excludes is not None:
        outer += parse(_read_text(excludes), "")
    if top is None:
        return GitIgnore("", outer, read)
    git_dir = _git_dir(top)
    if git_dir is not None:
        outer += parse(_read_text(git_dir / "info" / "exclude"), "")
    prefix = root.relative_to(top).as_posix() if root != top else ""
    for directory in _between(top, root):
        base = directory.relative_to(top).as_posix() if directory != top else ""
        outer += parse(_read_text(directory / GITIGNORE, follow=False), base)
    return GitIgnore(prefix, outer, read)


def _between(top: Path, root: Path) -> Iterator[Path]:
    """The directories from the repository's top down to (not including) the synced root."""
    if root == top:
        return
    yield top
    for part in root.relative_to(top).parts[:-1]:
        top = top / part
        yield top


def _repository_top(root: Path) -> Optional[Path]:
    for directory in (root, *root.parents):
        if (directory / ".git").exists():
            return directory
    return None


def _git_dir(top: Path) -> Optional[Path]:
    """``.git``, or where a ``.git`` file (a worktree, a submodule) points; its common dir holds info/."""
    dot_git = top / ".git"
    if dot_git.is_dir():
        return dot_git
    text = _read_text(dot_git)
    if not text.startswith("gitdir:"):
        return None
    git_dir = (top / text[len("gitdir:") :].strip()).resolve()
    common = _read_text(git_dir / "commondir").strip()
    return (git_dir / common).resolve() if common else git_dir


def _excludes_file(top: Optional[Path], env: dict[str, str]) -> Optional[Path]:
    """core.excludesFile from the repository's, the user's and the system's config; git's default otherwise."""
    home = env.get("HOME", "")
    xdg = env.get("XDG_CONFIG_HOME") or (f"{home}/.config" if home else "")
    configs = [] if env.get("GIT_CONFIG_NOSYSTEM") else [Path("/etc/gitconfig")]
    if xdg:
        configs.append(Path(xdg) / "git" / "config")
    if home:
        configs.append(Path(home) / ".gitconfig")
    if top is not None and (top / ".git").is_dir():
        configs.append(top / ".git" / "config")
    value: Optional[str] = None
    for config in configs:
        value = _config_value(_read_text(config), "core", "excludesfile") or value
    if value is None:
        return Path(xdg) / "git" / "ignore" if xdg else None
    if value.startswith("~/") and home:
        return Path(home) / value[2:]
    return Path(value)


def _config_value(text: str, section: str, key: str) -> Optional[str]:
    """The last ``key`` in ``[section]`` of one git config file (the simple forms people write)."""
    current = ""
    value = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            current = line[1:].split("]", 1)[0].strip().split(" ", 1)[0].lower()
            continue
        if current != section or "=" not in line or line.startswith(("#", ";")):
            continue
        name, _, rest = line.partition("=")
        if name.strip().lower() == key:
            value = _config_string(rest)
    return value


def _config_string(rest: str) -> str:
    """A config value: quotes removed, an unquoted ``#`` or ``;`` starts a comment."""
    result = []
    quoted = False
    index = 0
    while index < len(rest):
        char = rest[index]
        if char == '"':
            quoted = not quoted
        elif char == "\\" and index + 1 < len(rest):
            index += 1
            result.append({"n": "\n", "t": "\t"}.get(rest[index], rest[index]))
        elif char in "#;" and not quoted:
            break
        else:
            result.append(char)
        index += 1
    return "".join(result).strip()


def _read_text(path: Path, follow: bool = True) -> str:
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, IGNORE_FILE_MAX).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)
