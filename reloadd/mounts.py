"""Mount detection (interim version; the full one with the real-world table is being written)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

POLLED_TYPES = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse", "vboxsf", "ceph", "glusterfs"})


@dataclass(frozen=True)
class Mount:
    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    fstype: str
    source: str
    options: str


@dataclass(frozen=True)
class WatchMode:
    poll: bool
    reason: str


def _unescape(text: str) -> str:
    return text.encode().decode("unicode_escape") if "\\" in text else text


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 3:
            continue
        mounts.append(
            Mount(int(fields[0]), int(fields[1]), _unescape(fields[3]), _unescape(fields[4]), tail[0], tail[1], tail[2])
        )
    return mounts


def mount_for(path: str, mounts: list[Mount]) -> Optional[Mount]:
    real = os.path.realpath(path)
    best: Optional[Mount] = None
    for mount in mounts:
        point = mount.mount_point
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = mount
    return best


def polling_reason(mount: Mount) -> Optional[str]:
    if mount.fstype in POLLED_TYPES or mount.fstype.startswith("fuse."):
        return f"{mount.fstype} mount"
    return None


def decide_mode(path: str, legacy_watch: Optional[bool], mountinfo_path: str = "/proc/self/mountinfo") -> WatchMode:
    if legacy_watch is True:
        return WatchMode(True, "forced by -L/legacyWatch")
    if legacy_watch is False:
        return WatchMode(False, "forced by legacyWatch: false")
    try:
        with open(mountinfo_path) as handle:
            mounts = parse_mountinfo(handle.read())
    except OSError:
        return WatchMode(False, "mount type unknown")
    mount = mount_for(path, mounts)
    if mount is None:
        return WatchMode(False, "mount type unknown")
    reason = polling_reason(mount)
    return WatchMode(True, reason) if reason else WatchMode(False, f"{mount.fstype} mount")
