"""LOCAL_DIR as the sync sees it: the rules that leave paths out (the globs, git's ignore rules),
the walks through local.LocalTree, and the paths skipped as unreadable (neither sent nor deleted)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from ...output import out
from ...setup.matching import is_temp_file
from ..shared.excludes import excluder
from ..shared.manifest import DIR, LINK, Entry, Exclude, Listings, Manifest, escaped, flat, is_utf8
from .gitignore import GITIGNORE, IGNORE_FILE_MAX, GitIgnore
from .gitignore import load as load_gitignore
from .local import LocalTree, NotSynced

_NOT_PLAIN = re.compile(r"(?:^|/)\.{0,2}(?:/|$)")  # an empty, "." or ".." component: relpath normalises it


class SyncRules:
    """What the watcher reports (host/watch/change_filter.py ``WatchRules``): every file under the root
    that the sync does not exclude (dotfiles too)."""

    skipped = "not synced:"

    def __init__(self, root: Path, exclude: Exclude) -> None:
        self.roots = [root]
        self.cwd = root
        self._root = str(root)
        self._prefix = self._root.rstrip("/") + "/"
        self._exclude_rule = exclude

    def _relative(self, path: str) -> Optional[str]:
        # The watcher's paths are the root joined with plain names: cut the prefix (relpath costs
        # ~7 us a call, and the watcher's start asks once per directory of the tree).
        if path.startswith(self._prefix):
            relative = path[len(self._prefix) :]
            if not _NOT_PLAIN.search(relative):
                return relative
        relative = os.path.relpath(path, self._root)
        return None if relative == "." or relative.startswith("../") else relative

    def matches(self, path: str) -> bool:
        return self.skip_reason(path) is None

    def prune(self, dir_path: str) -> bool:
        relative = self._relative(dir_path)
        return relative is not None and self._exclude_rule(relative, True)

    def skip_reason(self, path: str) -> Optional[str]:
        """Why a changed path is left out (-V says it); None when it is synced."""
        relative = self._relative(path)
        if relative is None:
            return "outside the synced directory"
        if is_temp_file(os.path.basename(path)):
            return "an editor or sync temp file"
        if self._exclude_rule(relative, os.path.isdir(path) and not os.path.islink(path)):
            return "excluded (a protected name, ignoreRoot, sync.exclude, --exclude or git's ignore rules)"
        return None


class LocalView:
    """The synced tree under LOCAL_DIR, read only through the descriptors of ``tree``."""

    def __init__(self, root: Path, globs: list[str], env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.tree = LocalTree(str(root))
        self.globs = globs  # protected names, ignoreRoot, sync.exclude, --exclude: what the agent leaves out
        self.unknown: set[str] = set()  # paths skipped (unreadable, odd...): neither sent nor deleted
        self.rules_exclude: Exclude = excluder(str(root), self.globs)
        self.gitignore: Optional[GitIgnore] = None
        self.without_gitignore: set[str] = set()  # directories the running walk listed without one
        self.warned: set[str] = set()  # warnings already given (each is said once)
        self.load_rules()

    def replace_tree(self, tree: LocalTree) -> None:
        """LOCAL_DIR was replaced: read the new directory from now on."""
        self.tree.close()
        self.tree = tree

    def load_rules(self) -> None:
        """git's rules read afresh (the .gitignore files are read through the tree's descriptors)."""
        self.gitignore = load_gitignore(self.root, self._read_gitignore, self.env)

    def _read_gitignore(self, directory: str) -> Optional[bytes]:
        if directory in self.without_gitignore:  # just listed: no need to open its path to find none
            return None
        return self.tree.read_small(f"{directory}/{GITIGNORE}" if directory else GITIGNORE, IGNORE_FILE_MAX)

    def exclude(self, path: str, is_dir: bool) -> bool:
        """Left out of the sync (never sent, never deleted): the globs, git's rules, or skipped as unreadable."""
        return self.excluded(path, is_dir) or self.is_unknown(path)

    def excluded(self, path: str, is_dir: bool) -> bool:
        if self.rules_exclude(path, is_dir):
            return True
        return self.gitignore is not None and self.gitignore.ignored(path, is_dir)

    def is_unknown(self, path: str) -> bool:
        if not self.unknown:
            return False
        parts = path.split("/")
        return any("/".join(parts[:count]) in self.unknown for count in range(1, len(parts) + 1))

    def skipped(self, problem: NotSynced) -> None:
        """A path the walk cannot sync: said once, then left as it is in the pod."""
        self.unknown.add(problem.path)
        if problem.message not in self.warned:
            self.warned.add(problem.message)
            out.warn(problem.message)

    def walk(self) -> Listings:
        """The whole tree, walked through descriptors, by directory (as the digests take it); what
        cannot be synced is named and left unknown."""
        self.unknown = set()
        return self._walk("")

    def subtree(self, directory: str) -> Manifest:
        """The tree below ``directory``, by path; git's rules are read from the directories the walk lists."""
        return flat(self._walk(directory))

    def _walk(self, directory: str) -> Listings:
        try:
            found = self.tree.scan(directory, self._exclude_in, self.skipped, self._listed)
        finally:
            self.without_gitignore = set()  # a later read (a .gitignore just made) looks at the tree
        for entries in found.values():
            for entry in [entry for entry in entries if entry.kind == LINK and not self._portable(entry)]:
                entries.remove(entry)
        return found

    def _exclude_in(self, directory: str) -> Exclude:
        """The test for the entries of ``directory`` (just listed): the globs alone where none of git's
        rules applies there, as in most directories (no call into the git rules per entry then)."""
        if self.gitignore is None or not self.gitignore.rules_in(directory):
            return self.rules_exclude
        return self.excluded

    def _listed(self, directory: str, names: set[str]) -> None:
        if GITIGNORE not in names:
            self.without_gitignore.add(directory)

    def _portable(self, entry: Entry) -> bool:
        """Symlinks go across only when they resolve inside the tree (by the real tree); others are skipped."""
        if entry.kind != LINK:
            return True
        try:
            self.tree.check_link(entry.path, entry.target)
            return True
        except NotSynced as exc:
            self.skipped(exc)
            return False

    def entry(self, relative: str) -> Optional[Entry]:
        """The entry at ``relative`` now; None when it is gone, excluded, or skipped (then recorded as unknown)."""
        try:
            entry = self.tree.entry(relative)
        except NotSynced as exc:
            self.skipped(exc)
            return None
        except OSError:
            return None
        if entry is None or self.excluded(relative, entry.kind == DIR) or not self._portable(entry):
            return None
        self.unknown.discard(relative)
        return entry

    def utf8(self, relative: str) -> bool:
        """Names that are not UTF-8 cannot travel in the protocol: skipped, named once with escapes."""
        if not is_utf8(relative):
            self.skipped(NotSynced(relative, f"skipping {escaped(relative)}: its name is not UTF-8"))
            return False
        return True
