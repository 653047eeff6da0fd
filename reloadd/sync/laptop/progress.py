"""What the laptop side says about its batches: the initial sync's progress line, the line each
batch or (re)connection ends with (and its paths with -V), and the app's lines from the pod."""

from __future__ import annotations

import os
import sys
import time
from typing import Optional

from ...output import out
from ..shared.manifest import DIR, Entry
from .session import Session
from .transport import Where

PROGRESS_INTERVAL = 0.2  # seconds between progress-line updates on a terminal
LINES_SHOWN = 20  # failed paths or pod warnings printed one per line; the rest are counted
MS = 1000.0


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def human_duration(ms: int) -> str:
    """``41 ms`` for a quick batch; seconds from one second up, where a count of ms reads badly (8.1 s)."""
    return f"{ms} ms" if ms < MS else f"{ms / MS:.1f} s"


class Progress:
    """The initial sync's progress line, redrawn in place on a terminal (nothing elsewhere)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self.files = 0
        self.bytes = 0
        self.started = time.monotonic()
        self.shown = 0.0

    def add(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        now = time.monotonic()
        if self.enabled and now - self.shown >= PROGRESS_INTERVAL:
            self.shown = now
            rate = self.bytes / max(now - self.started, 1e-3)
            line = f"syncing {self.files}/{self.total} files, {human_size(self.bytes)} ({human_size(int(rate))}/s)"
            sys.stderr.write(f"\r[reloadd] {line}\033[K")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class Phases:
    """Where a (re)connection's time went, phase by phase, for the closing line and -V."""

    def __init__(self, began: Optional[float]) -> None:
        self.began = time.monotonic() if began is None else began
        self.last = self.began
        self.parts: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.parts.append((name, now - self.last))
        self.last = now

    def total(self) -> float:
        return time.monotonic() - self.began

    def describe(self) -> str:
        return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.parts)


def where_shown(session: Session, where: Where) -> str:
    """The pod's name, or the remote directory when a transport other than kubectl reaches it."""
    return session.name if not session.root or where.transport is None else session.root


def say_batch(where: str, written: list[Entry], deletes: list[str], size: int, started: float) -> None:
    """The line a live batch ends with; ``written``: its entries the pod did not refuse."""
    elapsed = round((time.monotonic() - started) * MS)
    count, what = _what(written, deletes, size)
    if not written:
        message = f"deleted {len(deletes)} in {where} in {human_duration(elapsed)}"
    else:
        message = f"synced {what} to {where} in {human_duration(elapsed)}"
    out.status(message, event="synced", target=where, files=count, bytes=size, deleted=len(deletes), ms=elapsed)
    _list_sent(written, deletes)


def say_start(where: str, written: list[Entry], deletes: list[str], size: int, files: int, timer: Phases) -> None:
    """The line that ends a (re)connection: how long the user waited since it began, and for what."""
    seconds = timer.total()
    count, what = _what(written, deletes, size)
    compared = f"{files:,} file{'' if files == 1 else 's'} compared"
    if not written and not deletes:
        message = f"in sync with {where} ({compared}, nothing to send) in {seconds:.2f} s"
    elif not written:
        message = f"in sync with {where} ({compared}, deleted {len(deletes)}) in {seconds:.2f} s"
    else:
        message = f"synced {what} to {where} ({compared}) in {seconds:.2f} s"
    fields = {"files": count, "bytes": size, "deleted": len(deletes), "compared": files}
    out.status(message, event="synced", target=where, ms=round(seconds * MS), **fields)
    out.detail(f"  took {timer.describe()}")
    _list_sent(written, deletes)


def _what(written: list[Entry], deletes: list[str], size: int) -> tuple[int, str]:
    """How many entries were written, and "N files (SIZE)[ and deleted M]"."""
    count = sum(1 for entry in written if entry.kind != DIR)
    files = f"{count} file" + ("" if count == 1 else "s")
    if not count:  # only directories made
        count = len(written)
        files = f"{count} director" + ("y" if count == 1 else "ies")
    gone = f" and deleted {len(deletes)}" if deletes else ""
    return count, f"{files} ({human_size(size)}){gone}"


def _list_sent(entries: list[Entry], deletes: list[str]) -> None:
    for entry in entries:
        out.detail(f"  {entry.path}{'/' if entry.kind == DIR else ''}")
    for path in deletes:
        out.detail(f"  deleted {path}")


def show_log(where: str, stream: str, line: str) -> None:
    """A line the app wrote in the pod (--logs): on stdout, prefixed by the pod (a JSON line with
    --log-format json, on stderr with reloadd's own)."""
    if out.json_lines:
        out.info(line, event="log", target=where, stream=stream)
        return
    try:
        sys.stdout.write(f"{where} | {line}\n")
        sys.stdout.flush()
    except OSError:
        pass  # nobody reads the laptop's stdout any more: the sync goes on


def process_age() -> float:
    """Seconds since this process started (its interpreter and imports are part of the user's wait),
    or 0 where /proc cannot tell (macOS): then the wait is counted from the sync's own start."""
    try:
        with open("/proc/self/stat", "rb") as stat_file:
            fields = stat_file.read().rpartition(b")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # starttime, field 22: clock ticks after boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0
