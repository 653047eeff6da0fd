"""Matching paths against globs inside the project: GlobSet (ignore-style lists, for ignore rules,
hot paths and sync excludes) and the compiled regex groups the watch rules share with it.

Patterns are matched against the path *inside the project* (relative to the working directory,
or to the watch root for paths outside it), not against the whole absolute path: one deliberate
difference from nodemon (docs/behaviour.md). nodemon turns ``tmp/*`` into ``**/tmp/*`` and tests
it against ``/tmp/x/server.js``, so a project living under ``/tmp`` is ignored entirely.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Optional

from ..errors import ConfigError
from .globs import BELOW, UNDER, anchor, expand_braces, glob_regex, literal_needle, split_glob

COMMENT = "#"


class RegexGroup:
    """Regexes for paths relative to the project and for absolute paths, each compiled into one."""

    def __init__(self) -> None:
        self._sources: dict[bool, list[str]] = {False: [], True: []}
        self._compiled: dict[bool, Optional[re.Pattern[str]]] = {False: None, True: None}
        # Plain text each relative pattern's matches hold (globs.literal_needle): a relative path
        # holding none of it cannot match, and a substring test costs a third of the regex.
        # None once a pattern without one is added (or one added without saying).
        self._needles: Optional[list[str]] = []
        self._relative: Callable[[str], bool] = lambda relative: False  # compile() sets it: _relative_test

    def add(self, absolute: bool, regex: str, needle: str = "") -> None:
        self._sources[absolute].append(regex)
        if absolute or self._needles is None:
            return
        if needle:
            self._needles.append(needle)
        else:
            self._needles = None

    def compile(self) -> RegexGroup:
        for absolute, sources in self._sources.items():
            unique = list(dict.fromkeys(sources))
            try:
                self._compiled[absolute] = re.compile("|".join(f"(?:{s})" for s in unique)) if unique else None
            except re.error as exc:  # config validation runs check_glob first: this is a second net
                raise ConfigError(f"invalid glob: {exc.msg}") from None
        self._relative = self._relative_test()
        return self

    def _relative_test(self) -> Callable[[str], bool]:
        """The relative patterns as one function: the plain text first, the regex only on a hit."""
        regex = self._compiled[False]
        if regex is None:
            return lambda relative: False
        fullmatch, needles = regex.fullmatch, self._needles
        if needles is None:
            return lambda relative: bool(relative) and fullmatch(relative) is not None

        def test(relative: str) -> bool:  # "" holds no needle: it never matches
            for needle in needles:
                if needle in relative:
                    return fullmatch(relative) is not None
            return False

        return test

    def match(self, relative: str, path: str) -> bool:
        if self._relative(relative):
            return True
        absolute_re = self._compiled[True]
        return absolute_re is not None and absolute_re.fullmatch(path) is not None

    def matcher(self, base: str) -> Callable[[str], bool]:
        """``match`` as a function of the relative path alone, for paths relative to ``base`` (the
        absolute path, built only when an absolute pattern needs it, is ``base/relative``): a
        walk asks it for every entry of the tree, and without absolute patterns it is one call."""
        relative_test, absolute_re = self._relative, self._compiled[True]
        if absolute_re is None:
            return relative_test
        fullmatch = absolute_re.fullmatch
        return lambda relative: relative_test(relative) or fullmatch(f"{base}/{relative}") is not None


class Locator:
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


def rule_entries(patterns: list[str]) -> list[str]:
    """The patterns that are not empty and not ``#`` comments."""
    return [p for p in patterns if p.strip() and not p.lstrip().startswith(COMMENT)]


def absolute_path(path: str) -> str:
    """``path`` made absolute and normalised (``..`` resolved as text: symlinks are not followed)."""
    return os.path.normpath(path) if path.startswith("/") else os.path.abspath(path)


class GlobSet:
    """A list of ignore-style globs (dot files included), matched inside the project.

    A relative pattern matches at any depth; a pattern matching a directory matches everything
    below it; a trailing ``/`` matches directories only; ``./x`` and absolute patterns are anchored.
    """

    def __init__(self, patterns: list[str], base: Path, roots: Optional[list[Path]] = None) -> None:
        self._base = Path(absolute_path(str(base)))
        self._locator = Locator(self._base, roots or [])
        self._files, self._dirs = RegexGroup(), RegexGroup()
        for entry in rule_entries(patterns):
            for pattern in expand_braces(entry):
                self._add(pattern)
        self._files.compile()
        self._dirs.compile()

    def _add(self, pattern: str) -> None:
        absolute, segments = split_glob(anchor(pattern.rstrip("/") or "/", str(self._base)))
        directories_only = pattern.endswith("/") and len(pattern) > 1
        needle = literal_needle(segments)
        self._files.add(absolute, glob_regex(absolute, segments, True, UNDER if directories_only else BELOW), needle)
        self._dirs.add(absolute, glob_regex(absolute, segments, True, BELOW), needle)

    def matches(self, path: str) -> bool:
        """Does the file at absolute ``path`` (or a directory above it) match a pattern?"""
        path = absolute_path(path)
        return self._files.match(self._locator.relative(path), path)

    def matches_dir(self, path: str) -> bool:
        """Does the directory at absolute ``path`` (or one above it) match a pattern?"""
        path = absolute_path(path)
        return self._dirs.match(self._locator.relative(path), path)

    def match_located(self, relative: str, path: str, directory: bool) -> bool:
        """``matches``/``matches_dir`` for a caller that has already located ``path``."""
        return (self._dirs if directory else self._files).match(relative, path)

    def matchers(self) -> tuple[Callable[[str], bool], Callable[[str], bool]]:
        """``matches`` and ``matches_dir`` for paths already relative to the base and normalised
        (the hot path of a walk: no normpath, no locating)."""
        base = str(self._base).rstrip("/")
        return self._files.matcher(base), self._dirs.matcher(base)
