"""The two things that halt the sync instead of being mirrored (mutagen's safety halt): LOCAL_DIR
itself going away, and one change that would delete every file of the tree, or more than half of
a tree of MASS_DELETE_MIN_FILES or more. Each decides and says; the loop stops and resumes."""

from __future__ import annotations

import os
import stat
import sys
import termios
from enum import Enum
from pathlib import Path
from typing import Optional

from ...output import out
from ..shared.manifest import DIR, Entry, Manifest
from .local import LocalTree

# A change halts when it would leave the tree without files, or with less than half of them
# when it had at least this many (a small project losing half its files is a normal edit).
MASS_DELETE_MIN_FILES = 10
CONFIRM = {b"y", b"yes"}  # typed (then Enter) on the terminal: go ahead with a halted mass delete
ROOT_OK, ROOT_GONE, ROOT_REPLACED = "ok", "gone", "replaced"


class RootStep(Enum):
    """What the loop does after a look at LOCAL_DIR."""

    NONE = "nothing to do"
    HALT = "stop watching: it just went away"
    RESUME = "watch (the new tree, if one is given) and resync"


class RootGuard:
    """Halt while LOCAL_DIR is gone (nothing is deleted); resume when a directory is back at its path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.halted: Optional[str] = None  # why LOCAL_DIR is gone, while the sync waits for it

    def state(self, tree: LocalTree) -> tuple[str, str]:
        """Is LOCAL_DIR still the directory ``tree`` opened? (state, what happened, in words)"""
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            return ROOT_GONE, "is gone (deleted or moved away)"
        except OSError as exc:
            return ROOT_GONE, f"cannot be read ({exc.strerror})"
        if not stat.S_ISDIR(st.st_mode):
            return ROOT_GONE, "is no longer a directory"
        if (st.st_dev, st.st_ino) != tree.identity:
            return ROOT_REPLACED, "was replaced by another directory (moved away and made again, or a mount changed)"
        return ROOT_OK, ""

    def intact(self, tree: LocalTree) -> bool:
        """LOCAL_DIR is the directory ``tree`` opened, and the sync is not halted."""
        return self.halted is None and self.state(tree)[0] == ROOT_OK

    def look(self, tree: LocalTree) -> tuple[RootStep, Optional[LocalTree]]:
        """One look at LOCAL_DIR: what to do, and the newly opened directory when it was replaced."""
        state, words = self.state(tree)
        opened = None
        if state == ROOT_REPLACED:
            try:
                opened = LocalTree(str(self.root))
            except OSError as exc:
                state, words = ROOT_GONE, f"cannot be opened ({exc.strerror})"
        if state == ROOT_GONE:
            if self.halted is not None:
                return RootStep.NONE, None
            self.halted = words
            out.error(
                f"halted: {self.root} {words}; nothing is deleted in the pod. "
                "Waiting for the directory to come back (or stop with Ctrl-C)"
            )
            return RootStep.HALT, None
        if state == ROOT_OK and self.halted is None:
            return RootStep.NONE, None
        if self.halted is not None:
            out.info(f"{self.root} is back: resyncing")
        else:
            out.warn(f"{self.root} {words}: watching the new one and resyncing")
        self.halted = None
        return RootStep.RESUME, opened


class MassDeleteHold:
    """A change that deletes too much is held until the files are back or the user confirms."""

    def __init__(self, root: Path, allowed: bool) -> None:
        self.root = root
        self.allowed = allowed  # --allow-mass-delete
        self.held: Optional[set[str]] = None  # the changed paths of a halted mass delete
        self.confirmed = False  # the user typed y: send the held mass delete

    def reset(self) -> None:
        self.held, self.confirmed = None, False

    def _mass(self, before: Manifest, sends: list[Entry], deletes: list[str]) -> Optional[tuple[int, int]]:
        return None if self.allowed else mass_delete(before, sends, deletes)

    def halts(self, known: Manifest, paths: set[str], sends: list[Entry], deletes: list[str]) -> bool:
        """Whether the burst of ``paths`` is held (said once) rather than sent."""
        mass = None if self.confirmed else self._mass(known, sends, deletes)
        if mass is None:
            if self.held is not None:
                out.info("resuming: " + ("going ahead as confirmed" if self.confirmed else "the files are back"))
            self.reset()
            return False
        if self.held is None:
            removed, total = mass
            key = "type y and Enter to delete them in the pod, or " if sys.stdin.isatty() else ""
            _drop_typed_ahead()  # only an answer typed after the question may confirm it
            out.error(
                f"halted: this change would delete {removed} of the {total} files the pod has from {self.root} "
                f"(all of them, or more than half of {MASS_DELETE_MIN_FILES} or more); nothing was sent. "
                f"Put the files back to resume; {key}start the sync with --allow-mass-delete"
            )
        self.held = paths
        return True

    def resync_deletes(self, local: Manifest, remote: Manifest, deletes: list[str]) -> list[str]:
        """A resync's deletes of pod-only files (--delete), unless they remove too much of the pod's tree."""
        mass = self._mass(remote, list(local.values()), deletes)
        if mass is None:
            return deletes
        out.error(
            f"not deleting {mass[0]} of the pod's {mass[1]} files that {self.root} does not have: all of them, "
            f"or more than half of {MASS_DELETE_MIN_FILES} or more (--allow-mass-delete deletes them)"
        )
        return [path for path in deletes if path in local]

    def typed(self) -> None:
        """A line from the terminal while a mass delete is held: y (or yes) sends it."""
        try:
            line = os.read(sys.stdin.fileno(), 4096)
        except OSError:
            return
        if line.strip().lower() in CONFIRM:
            self.confirmed = True
        else:
            out.info("still halted: nothing is deleted in the pod until the files are back, or y and Enter")


def mass_delete(before: Manifest, sends: list[Entry], deletes: list[str]) -> Optional[tuple[int, int]]:
    """(files lost, files before) when a batch leaves the tree ``before`` without files, or with less
    than half of them when it had MASS_DELETE_MIN_FILES or more; None for an ordinary change.

    Counted on the result, so renaming a big directory (delete + send) or a checkout that swaps
    many files for others is not a mass delete.
    """
    if not deletes:
        return None
    files = {path for path, entry in before.items() if entry.kind != DIR}
    gone = set(deletes)
    removed = {path for path in files if path in gone or any(parent in gone for parent in _parents(path))}
    after = (files - removed) | {entry.path for entry in sends if entry.kind != DIR}
    if not removed:
        return None
    if not after or (len(files) >= MASS_DELETE_MIN_FILES and 2 * len(after) < len(files)):
        return len(removed - after), len(files)
    return None


def _drop_typed_ahead() -> None:
    """Forget what was typed on the terminal before now (a "y" typed ahead must not answer a later halt)."""
    try:
        if sys.stdin.isatty():
            termios.tcflush(sys.stdin.fileno(), termios.TCIFLUSH)
    except (OSError, ValueError, termios.error):
        pass  # no terminal to flush: nothing typed ahead is read either


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:count]) for count in range(1, len(parts))]
