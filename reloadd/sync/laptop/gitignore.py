"""git's own ignore rules, answered the way ``git check-ignore`` answers them (no git needed).

Where the rules come from, highest priority first: the deepest ``.gitignore`` on the way to a
path (within one file the last matching line wins), shallower ones up to the repository's
top, ``.git/info/exclude``, then the user's ``core.excludesFile`` (or git's default
``$XDG_CONFIG_HOME/git/ignore``). A directory that is ignored hides everything below it: a
``!pattern`` cannot bring back a file whose parent directory is excluded, and ``.gitignore``
files inside it are never read.

The patterns' syntax, and the regular expressions they become once read, are wildmatch.py's.

The ``.gitignore`` files inside the synced tree are read through the tree's descriptors and
never through a symlink (git does not follow a symlinked ``.gitignore`` either).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

from .wildmatch import Pattern, Rules, parse

GITIGNORE = ".gitignore"
IGNORE_FILE_MAX = 1024 * 1024  # bytes of one ignore file read; a bigger one is not a project's ignore list

ReadFile = Callable[[str], Optional[bytes]]  # a directory relative to the synced root -> its .gitignore


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
        known = self._lists.get(parent)
        if known is not None and not known.patterns:
            # No rule applies in ``parent``, so none applies above it either (a directory's rules
            # are its parent's plus its own): the hot path of a walk outside a repository.
            return False
        if parent and self._dir_ignored(parent):
            return True
        return self._match(path, is_dir)

    def rules_in(self, directory: str) -> bool:
        """Some rule may apply to what ``directory`` holds (its own .gitignore or one above it, the
        repository's): when none does, ``ignored`` is False for every entry there, ``directory`` included."""
        return bool(self._rules(directory).patterns)

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
