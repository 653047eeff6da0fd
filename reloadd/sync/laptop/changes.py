"""One burst's batch: what to send and delete, found by comparing the directories the burst
touched with what was last sent (which also finds deleted and renamed directories and new
directories' contents)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

from ..shared.manifest import DIR, Entry, Manifest
from .compare import topmost
from .local import NotSynced
from .localview import LocalView

Current = dict[str, Optional[Entry]]  # path -> its entry now, None when it goes


def changes(view: LocalView, known: Manifest, root: Path, paths: set[str]) -> tuple[list[Entry], list[str]]:
    """What to send and delete for the burst of changed ``paths``, against ``known`` (what was last sent)."""
    current: Current = {}
    relatives = {os.path.relpath(path, root) for path in paths}
    relatives = {r for r in relatives if r != "." and not r.startswith("../") and view.utf8(r)}
    children = defaultdict(set)
    for path in known:
        parent, _, name = path.rpartition("/")
        children[parent].add(name)
    for relative in relatives:
        entry = current[relative] = view.entry(relative)
        if entry is not None and entry.kind == DIR and relative not in known:
            current.update(view.subtree(relative))  # a new directory: what it already holds
    for directory in _touched_dirs(known, relatives):
        _compare_dir(view, directory, children, current)
    sends: list[Entry] = []
    deletes = []
    for path, entry in sorted(current.items()):
        old = known.get(path)
        if entry is None and view.is_unknown(path):
            continue  # skipped (unreadable, a link now...): left as it is in the pod
        if entry is None:
            if old is not None:
                deletes.append(path)
        elif old is None or old != entry:
            if old is not None and old.kind != entry.kind:
                deletes.append(path)
            sends.append(entry)
    return sends, topmost(deletes)


def remember(known: Manifest, sends: list[Entry], deletes: list[str]) -> Manifest:
    """``known`` once a batch is in: the deleted paths (and what was under them) gone, the sent ones new."""
    for gone in deletes:
        known = {p: e for p, e in known.items() if p != gone and not p.startswith(f"{gone}/")}
    for entry in sends:
        known[entry.path] = entry
    return known


def _touched_dirs(known: Manifest, relatives: set[str]) -> set[str]:
    """The parents of changed paths; a parent the pods do not have yet (a directory renamed or
    created) makes its own parent touched too, so the old name is deleted and the new one made."""
    touched = set()
    for relative in relatives:
        directory = relative.rpartition("/")[0]
        touched.add(directory)
        while directory and directory not in known:
            directory = directory.rpartition("/")[0]
            touched.add(directory)
    return touched


def _compare_dir(view: LocalView, directory: str, children: Mapping[str, set[str]], current: Current) -> None:
    """List one touched directory: new entries (new directories with their contents), gone entries."""
    while True:
        try:
            names = view.tree.names(directory)
            break
        except NotSynced as exc:  # a component is a symlink now, or cannot be read: nothing below is touched
            view.skipped(exc)
            return
        except OSError:
            if not directory:
                return  # LOCAL_DIR itself: the loop's root check halts
            current[directory] = None  # removed (or replaced): the highest missing directory goes
            directory = directory.rpartition("/")[0]
    prefix = f"{directory}/" if directory else ""
    names = {name for name in names if view.utf8(prefix + name)}
    for name in names - children.get(directory, set()):
        entry = view.entry(prefix + name)
        if entry is not None and prefix + name not in current:
            current[prefix + name] = entry
            if entry.kind == DIR:
                current.update(view.subtree(prefix + name))
    for name in children.get(directory, set()) - names:
        current[prefix + name] = None
