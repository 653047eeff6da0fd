"""Globs to regular expressions: minimatch-like patterns (``**``, ``*``, ``?``, ``[...]``, ``{a,b}``,
``{1..3}``), as in nodemon, turned into regex text for globset.py and the matching rules.

A path segment's wildcards do not match a leading ``.`` unless asked to (minimatch's dot:false),
and ``*.*`` also matches names without an extension, as nodemon patches minimatch to do.
"""

from __future__ import annotations

import os
import re
from typing import Optional

from ..errors import ConfigError

MAGIC = frozenset("*?[")  # after brace expansion, these make a segment a pattern rather than a name
MAX_BRACE_EXPANSION = 1024  # `{1..100000}` in a watch list is a typo, not a request for 100,000 rules

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


def unescape_glob(text: str) -> str:
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


def split_glob(text: str) -> tuple[bool, list[str]]:
    """(absolute, segments) of a glob, with empty segments and repeated ``**`` collapsed."""
    segments: list[str] = []
    for segment in text.split("/"):
        if segment and not (segment == "**" and segments[-1:] == ["**"]):
            segments.append(segment)
    return text.startswith("/"), segments


def glob_regex(absolute: bool, segments: list[str], dot: bool, extent: str) -> str:
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


def literal_needle(segments: list[str]) -> str:
    """The longest run of plain characters in a glob's segments ("" if none): every path the glob
    matches holds it as it is, so a path without it needs no regex (the walks' hot path)."""
    best = ""
    for segment in segments:
        if segment == "*.*":
            continue  # matches names without a dot too (see _segment_regex)
        run, index = "", 0
        while index < len(segment) and segment[index] != "[":  # a class's letters are not plain
            char = segment[index]
            if char in "*?\\":
                best, run = max(best, run, key=len), ""
            else:
                run += char
            index = _skip_escape(segment, index)
        best = max(best, run, key=len)
    return best


def prefix_regexes(absolute: bool, segments: list[str], dot: bool) -> list[str]:
    """Regex texts for the directories a glob can match something inside of (for pruning)."""
    found = [glob_regex(absolute, segments[:count], dot, SELF) for count in range(1, len(segments))]
    return found + [glob_regex(absolute, segments, dot, BELOW)]


def anchor(pattern: str, base: str) -> str:
    """Make a pattern absolute or any-depth: ``./x`` is under ``base``, ``x`` is ``**/x``."""
    if pattern.startswith("/"):
        return os.path.normpath(pattern)
    if pattern in (".", "..") or pattern.startswith(("./", "../")):
        return os.path.normpath(escape_glob(base) + "/" + pattern)
    relative = os.path.normpath(pattern)
    return relative if relative == "**" or relative.startswith("**/") else "**/" + relative
