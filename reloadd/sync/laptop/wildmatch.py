"""gitignore(5) patterns as regular expressions: one ignore file's lines, parsed once, when read.

Pattern syntax: ``#`` comments, ``\\#``/``\\!`` escapes, ``!`` negation, trailing spaces dropped
unless escaped, a trailing ``/`` for directories only, a pattern without an inner ``/`` matching
a name at any depth, one with a ``/`` anchored at its file's directory, ``*``/``?``/``[...]`` not
crossing ``/``, and ``**`` in ``**/x``, ``x/**``, ``x/**/y`` crossing directories (git's
wildmatch). ``Rules`` answers which pattern of a list decides a path, in one match.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

_CLASSES = {  # the POSIX classes a bracket may name ([[:alpha:]]), as the body of a regex set
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


class Pattern(NamedTuple):
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
