"""Helpers for watching tests on real file systems: bindfs mounts, raw inotify, watch counting.

The point of these tests is that reloadd decides per mount between inotify and polling, so they
need file systems where inotify really fails: a FUSE mount (bindfs) whose underlying directory
is written behind its back, and a user namespace with a tiny inotify watch limit.
"""

from __future__ import annotations

import ctypes
import os
import platform
import select
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Callable, Optional

import psutil
import pytest

FUSE_DEVICE = Path("/dev/fuse")
MOUNT_TIMEOUT = 10.0  # seconds bindfs gets to show up in mountinfo
COMMAND_TIMEOUT = 10.0  # seconds any mount/unmount/unshare helper command may take

# Tried in order: fuse3's and fuse2's unprivileged unmounters, then a lazy unmount that always
# detaches the mount even while a process still has its cwd on it (reloadd, node).
UNMOUNT_COMMANDS = (["fusermount3", "-u"], ["fusermount", "-u"], ["umount", "-l"])

# inotify(7) constants; Python's stdlib has no binding.
IN_NONBLOCK = os.O_NONBLOCK
IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_ALL_CHANGES = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)

# kcmp(2) tells whether two tasks share one fd table (threads do, unless one unshared it).
SYS_KCMP = {"x86_64": 312, "aarch64": 272}
KCMP_FILES = 2

# /proc/sys/user/max_inotify_watches is per user namespace; a new namespace may lower it.
USERNS_WATCH_LIMIT = "/proc/sys/user/max_inotify_watches"
INOTIFY_FAILS = Path(__file__).with_name("inotify_fails.py")  # where the limit cannot be set

_libc = ctypes.CDLL(None, use_errno=True)


def fuse_missing_reason() -> Optional[str]:
    """Why FUSE tests cannot run here, or None when /dev/fuse and bindfs are both present."""
    if not FUSE_DEVICE.exists():
        return f"{FUSE_DEVICE} is missing (container without FUSE)"
    if shutil.which("bindfs") is None:
        return "bindfs is not installed (apt-get install bindfs)"
    return None


def mount_entry(path: Path) -> Optional[tuple[str, str]]:
    """(mount point, fs type) from /proc/self/mountinfo for the mount exactly at ``path``."""
    target = os.path.realpath(path)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        # Fields after the " - " separator are: fs type, source, super options.
        after = fields[fields.index("-") + 1 :]
        if _unescape(fields[4]) == target:
            return target, after[0]
    return None


def _unescape(mount_point: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        mount_point = mount_point.replace(escaped, plain)
    return mount_point


def mount_bindfs(src: Path, mnt: Path) -> None:
    """Mount ``src`` on ``mnt`` with bindfs (as root it adds allow_other) and wait until it is live."""
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bindfs", str(src), str(mnt)], check=True, timeout=COMMAND_TIMEOUT, capture_output=True)
    end = time.monotonic() + MOUNT_TIMEOUT
    while mount_entry(mnt) is None:
        if time.monotonic() > end:
            raise AssertionError(f"bindfs mount on {mnt} did not appear in /proc/self/mountinfo")
        time.sleep(0.02)


def unmount(mnt: Path) -> None:
    """Detach ``mnt``, trying the gentle unmounters first; never raises, so finalizers stay quiet."""
    for command in UNMOUNT_COMMANDS:
        if mount_entry(mnt) is None:
            return
        if shutil.which(command[0]) is None:
            continue
        subprocess.run(command + [str(mnt)], timeout=COMMAND_TIMEOUT, capture_output=True, check=False)


@contextmanager
def bindfs_mount(src: Path, mnt: Path) -> Iterator[Path]:
    """A bindfs view of ``src`` at ``mnt`` for the duration of the block."""
    mount_bindfs(src, mnt)
    try:
        yield mnt
    finally:
        unmount(mnt)


class Inotify:
    """A bare inotify instance (no library in between), to prove what the kernel reports."""

    def __init__(self) -> None:
        self.fd = _libc.inotify_init1(IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")

    def watch(self, directory: Path, mask: int = IN_ALL_CHANGES) -> None:
        if _libc.inotify_add_watch(self.fd, os.fsencode(directory), mask) < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(directory))

    def names(self, timeout: float) -> set[str]:
        """Names from every event that arrives within ``timeout`` seconds of the first wait."""
        found: set[str] = set()
        while select.select([self.fd], [], [], timeout)[0]:
            found |= _event_names(os.read(self.fd, 65536))
            timeout = 0.1  # drain what follows the first batch, then stop
        return found

    def close(self) -> None:
        os.close(self.fd)


def _event_names(buffer: bytes) -> set[str]:
    names = set()
    offset = 0
    while offset < len(buffer):
        _wd, _mask, _cookie, length = EVENT_HEADER.unpack_from(buffer, offset)
        start = offset + EVENT_HEADER.size
        names.add(os.fsdecode(buffer[start : start + length].rstrip(b"\0")))
        offset = start + length
    return names


def inotify_names_seen(watched: Path, actions: Callable[[], None], timeout: float = 5.0) -> set[str]:
    """Watch ``watched`` with raw inotify, run ``actions``, return the file names inotify reported."""
    notify = Inotify()
    try:
        notify.watch(watched)
        actions()
        return notify.names(timeout)
    finally:
        notify.close()


def inotify_watch_count(pid: int) -> int:
    """inotify watches held by ``pid`` and its descendants, each fd table counted once.

    Watches show up as ``inotify wd:`` lines in /proc/<pid>/fdinfo/<fd>. Threads share their
    process's fd table, so a thread's table is read only when kcmp says it is a different one
    (a thread that called unshare(CLONE_FILES)); watchers running in threads are still counted
    through the shared table.
    """
    instances: set[str] = set()
    for proc in _tree(pid):
        for task in _own_fd_table_tasks(proc.pid):
            instances |= _inotify_instances(f"/proc/{proc.pid}/task/{task}/fdinfo")
    return sum(instance.count("inotify wd:") for instance in instances)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _own_fd_table_tasks(pid: int) -> list[int]:
    """The leader, plus any thread whose fd table is not the leader's."""
    try:
        tasks = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []
    return [pid] + [tid for tid in tasks if tid != pid and not _shares_fd_table(pid, tid)]


def _shares_fd_table(pid: int, tid: int) -> bool:
    number = SYS_KCMP.get(platform.machine())
    if number is None:
        return True  # no kcmp here: assume the pthread default, a shared table
    result = _libc.syscall(number, pid, tid, KCMP_FILES, 0, 0)
    # An error (ESRCH: the thread is gone, ENOSYS: no CONFIG_KCMP) means nothing extra to count.
    return bool(result == 0 or result < 0)


def _inotify_instances(fdinfo_dir: str) -> set[str]:
    """Each inotify descriptor's watch lines. A child between fork and exec holds copies of its
    parent's descriptors (close-on-exec ones too, until the exec): the same instance, counted once."""
    found: set[str] = set()
    try:
        entries = os.listdir(fdinfo_dir)
    except (FileNotFoundError, ProcessLookupError):
        return found
    for entry in entries:
        try:
            text = Path(fdinfo_dir, entry).read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # fd closed while we were reading
        if "inotify wd:" in text:
            found.add("".join(line for line in text.splitlines(keepends=True) if line.startswith("inotify wd:")))
    return found


@cache
def userns_can_limit_inotify() -> bool:
    """Whether an unprivileged user namespace can lower its own inotify watch limit here."""
    probe = f'echo 2 > {USERNS_WATCH_LIMIT} && test "$(cat {USERNS_WATCH_LIMIT})" = 2'
    try:
        done = subprocess.run(
            ["unshare", "--user", "--map-root-user", "sh", "-c", probe],
            timeout=COMMAND_TIMEOUT,
            capture_output=True,
            check=False,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def inotify_limit_prefix(limit: int) -> list[str]:
    """argv prefix that runs the rest of argv in a user namespace allowing only ``limit`` watches.

    unshare and sh both exec, so the pid Popen reports is reloadd's own.
    """
    script = f'echo {limit} > {USERNS_WATCH_LIMIT} && exec "$0" "$@"'
    return ["unshare", "--user", "--map-root-user", "sh", "-c", script]


def failing_inotify_prefix(errno_name: str) -> list[str]:
    """argv prefix that runs reloadd with every inotify instance refused with ``errno_name`` (inotify_fails.py)."""
    return [sys.executable, str(INOTIFY_FAILS), errno_name]


def hold(condition: Callable[[], object], seconds: float, what: str, interval: float = 0.02) -> None:
    """Fail as soon as ``condition`` turns false within ``seconds``; a bounded negative check."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not condition():
            raise AssertionError(f"{what} stopped holding")
        time.sleep(interval)
    if not condition():
        raise AssertionError(f"{what} stopped holding")


# Runs a command as nobody: as root every directory is readable, so "unreadable" needs another user.
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
needs_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)

# A simulated dev pod (reloadd as PID 1 in a PID namespace, the app on a FUSE mount) needs all of these.
DEVPOD_MARKS = [
    pytest.mark.fuse,
    pytest.mark.pid1,
    pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces and FUSE mounts need root"),
    pytest.mark.skipif(fuse_missing_reason() is not None, reason=fuse_missing_reason() or ""),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is not installed"),
]
