"""Mount detection: which mount a watched root lives on, and whether inotify can hear changes there.

inotify events are raised by the kernel's VFS for system calls made on *this* kernel. A file
system whose contents change elsewhere (an NFS server, the host behind a VM share, the backing
directory of a FUSE daemon) changes silently: the watch stays quiet and the app never restarts.
Those mounts are polled; everything else uses inotify.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from typing import NamedTuple, Optional

MOUNTINFO = "/proc/self/mountinfo"

# Network file systems: the server, or another client, writes without telling this kernel.
NETWORK_TYPES = frozenset(
    {
        "nfs",
        "nfs4",  # Kubernetes NFS volumes, AWS EFS, GCP Filestore
        "cifs",
        "smb3",  # Azure Files, Windows shares; smb3 is the kernel's alias type for cifs
        "smbfs",  # the pre-2.6.37 SMB client, still in old mountinfo dumps
        "ncpfs",
        "afs",
        "coda",
        "davfs",  # davfs2 (WebDAV shares)
    }
)

# Cluster and parallel file systems: other nodes write to the same storage behind this kernel's back.
CLUSTER_TYPES = frozenset(
    {
        "ceph",  # CephFS kernel client (ceph-fuse shows as fuse.ceph-fuse)
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "ocfs2",  # shared-disk cluster file systems: a ReadWriteMany block volume written by other nodes
        "gfs2",
        "orangefs",
        "pvfs2",
    }
)

# Host folders shared into a VM (Docker Desktop, minikube, WSL2, Vagrant): edits happen on the host,
# so the guest kernel that runs reloadd never sees the write.
VM_SHARE_TYPES = frozenset(
    {
        "9p",  # minikube mount, WSL2's /mnt/c (aname=drvfs), QEMU virtio-9p, Lima's default share
        # virtiofs is FUSE over virtio: host-side changes reach the guest only when it asks. The
        # FUSE notification work that would carry inotify events across ("fanotify/inotify for
        # FUSE and virtiofs", LWN 874000) was never merged; kata-containers/runtime#1505,
        # lima-vm/lima#615 and containers/podman#22343 all report no events for host edits.
        "virtiofs",
        # Docker Desktop >= 4.15 shows host bind mounts (virtiofs underneath) as "fakeowner". Docker
        # forwards some host events itself, but not reliably (deletes are lost: docker/for-mac#6350;
        # none at all on Windows: docker/for-win#12766), and a missed edit is a dev loop that hangs.
        "fakeowner",
        "vboxsf",  # VirtualBox shared folders (Vagrant's default synced folder)
        "vmhgfs",  # VMware host-guest file system, kernel module (vmhgfs-fuse is fuse.vmhgfs-fuse)
        "prl_fs",  # Parallels shared folders
        "drvfs",  # WSL1's Windows drives: edits from Windows programs are not WSL system calls
    }
)

# FUSE: the daemon serves whatever its backing store holds, and changes made to that store directly
# (bindfs's source written by a sync tool, sshfs's remote, Telepresence's volume mount) never pass
# through this kernel's FUSE mount. Every fuse.<subtype> is covered too (see polling_reason).
FUSE_TYPES = frozenset({"fuse"})
FUSE_SUBTYPE_PREFIX = "fuse."  # fuse.sshfs, fuse.grpcfuse (Docker Desktop), fuse.osxfs, fuse.bindfs...

# Not polled, on purpose: fuseblk is FUSE on a local block device (ntfs-3g, exfat-fuse). The daemon
# opens the device exclusively, so every write comes through this kernel's VFS, which raises the
# inotify events like it does for ext4. Listed so the decision is visible, not accidental.
LOCAL_FUSE_TYPES = frozenset({"fuseblk"})

POLLED_TYPES = NETWORK_TYPES | CLUSTER_TYPES | VM_SHARE_TYPES | FUSE_TYPES

# Kernel views, not files anyone edits: walking them under a broad watch (`--watch /`) costs
# minutes and hundreds of MB (/proc alone holds a directory per task and descriptor), and their
# entries come and go all the time. A walk never enters them below a watch root.
VIRTUAL_TYPES = frozenset(
    {
        "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
        "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc", "efivarfs",
        "autofs", "rpc_pipefs", "nsfs", "selinuxfs",
    }
)  # fmt: skip
# The same by place, for containers whose /dev is a plain tmpfs.
VIRTUAL_PATHS = frozenset({"/proc", "/sys", "/dev"})

UNKNOWN_REASON = "mount type unknown"
FORCED_POLL_REASON = "forced by -L/legacyWatch"
FORCED_NOTIFY_REASON = "forced by legacyWatch: false"

# mountinfo(5) fields: mount ID, parent ID, major:minor, root, mount point, mount options,
# zero or more optional fields, "-", fs type, mount source, super options.
FIRST_OPTIONAL_FIELD = 6
SEPARATOR = "-"

# The kernel writes space, tab, newline and backslash in paths as three-digit octal escapes (\040).
OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class Mount(NamedTuple):
    """One line of /proc/self/mountinfo, with its octal escapes decoded."""

    mount_id: int
    parent_id: int
    root: str
    mount_point: str
    fstype: str
    source: str
    options: str


class WatchMode(NamedTuple):
    """How one watch root is watched, and the reason the log gives for it."""

    poll: bool
    reason: str


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse /proc/<pid>/mountinfo text; lines that do not fit the format are skipped.

    Args:
        text: the file's contents.

    Returns:
        The mounts in file order (the kernel lists them in the order they were attached).
    """
    mounts = []
    for line in text.splitlines():
        mount = _parse_line(line)
        if mount is not None:
            mounts.append(mount)
    return mounts


def _parse_line(line: str) -> Optional[Mount]:
    fields = line.split()  # safe: whitespace inside paths is always escaped
    try:
        separator = fields.index(SEPARATOR, FIRST_OPTIONAL_FIELD)
        mount_id, parent_id = int(fields[0]), int(fields[1])
    except (ValueError, IndexError):
        return None
    tail = fields[separator + 1 :]
    if not tail:
        return None
    tail += [""] * (3 - len(tail))  # very old kernels and hand-written dumps may lack source/options
    root, mount_point = (_unescape(field) for field in fields[3:5])
    fstype, source, options = (_unescape(field) for field in tail[:3])
    return Mount(mount_id, parent_id, root, mount_point, fstype, source, options)


def _unescape(field: str) -> str:
    return OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def mount_for(path: str, mounts: list[Mount]) -> Optional[Mount]:
    """The mount that serves ``path`` (symlinks resolved), or None when no mount contains it.

    Lookup follows the mount tree like the kernel's path walk: from the root mount, step into the
    child mounted closest to the root along the path, until no child contains it. So the longest
    visible mount point wins, the last mount stacked on one mount point wins, and a mount hidden
    by a later mount over one of its ancestors is skipped. Without a usable tree (parent IDs that
    do not connect), the longest mount point containing the path wins, the last one on ties.

    Args:
        path: a file or directory; it need not exist yet.
        mounts: from parse_mountinfo.
    """
    target = resolve(path)
    inside = [mount for mount in mounts if _contains(mount.mount_point, target)]
    if not inside:
        return None
    return _walk_tree(inside) or _longest(inside)


def resolve(path: str) -> str:
    """``path`` absolute with symlinks resolved; a part that does not exist yet is kept as written.

    realpath in its default, non-strict mode resolves the nearest existing ancestor and appends
    the rest, which is what a root that appears later (a volume mounted late) needs.
    """
    return os.path.realpath(os.path.abspath(path))


def _contains(mount_point: str, target: str) -> bool:
    if mount_point == "/":
        return True
    # Compare whole components: /app contains /app/x, not /application.
    return target == mount_point or target.startswith(mount_point.rstrip("/") + "/")


def _walk_tree(inside: list[Mount]) -> Optional[Mount]:
    """Descend from the single root mount; None when the parent links do not form that tree."""
    ids = {mount.mount_id for mount in inside}
    # A mount containing the target has a parent containing it too, so in a consistent table the
    # only mount whose parent is missing is the namespace (or chroot) root.
    roots = [mount for mount in inside if mount.parent_id not in ids or mount.parent_id == mount.mount_id]
    if len(roots) != 1:
        return None
    children: defaultdict[int, list[Mount]] = defaultdict(list)
    for mount in inside:
        if mount is not roots[0]:
            children[mount.parent_id].append(mount)
    if _reachable(roots[0], children) != len(inside):
        return None  # parent links with a cycle: not a real mount table
    current = roots[0]
    while children[current.mount_id]:
        # The path walk meets the shallowest child first; it hides any sibling mounted deeper.
        current = min(reversed(children[current.mount_id]), key=lambda mount: len(mount.mount_point))
    return current


def _reachable(root: Mount, children: defaultdict[int, list[Mount]]) -> int:
    """How many mounts the tree below ``root`` holds, ``root`` included."""
    count, pending = 0, [root]
    while pending:
        count += 1
        pending.extend(children[pending.pop().mount_id])
    return count


def _longest(inside: list[Mount]) -> Mount:
    best = inside[0]
    for mount in inside[1:]:
        if len(mount.mount_point) >= len(best.mount_point):
            best = mount
    return best


def polling_reason(mount: Mount) -> Optional[str]:
    """Why ``mount`` has to be polled (e.g. "nfs4 mount"), or None when inotify hears its changes."""
    fstype = mount.fstype
    if fstype in LOCAL_FUSE_TYPES:
        return None
    if fstype in POLLED_TYPES or fstype.startswith(FUSE_SUBTYPE_PREFIX):
        return f"{fstype} mount"
    return None


def decide_mode(path: str, legacy_watch: Optional[bool], mountinfo_path: str = MOUNTINFO) -> WatchMode:
    """Poll or use inotify for the watch root ``path``.

    Args:
        path: the watch root; it may not exist yet.
        legacy_watch: True forces polling, False forces inotify, None decides by the mount.
        mountinfo_path: the mount table to read (a seam for tests).

    Returns:
        The mode, with the reason to log. An unreadable table means inotify ("mount type unknown").
    """
    if legacy_watch is True:
        return WatchMode(True, FORCED_POLL_REASON)
    if legacy_watch is False:
        return WatchMode(False, FORCED_NOTIFY_REASON)
    mount = mount_for(path, read_mounts(mountinfo_path))
    if mount is None:
        return WatchMode(False, UNKNOWN_REASON)
    reason = polling_reason(mount)
    if reason is not None:
        return WatchMode(True, reason)
    return WatchMode(False, f"{mount.fstype} mount")


def virtual_mount_points(mountinfo_path: str = MOUNTINFO) -> set[str]:
    """Where kernel views (proc, sysfs, cgroup...) are mounted, plus /proc, /sys and /dev themselves."""
    return set(VIRTUAL_PATHS) | {m.mount_point for m in read_mounts(mountinfo_path) if m.fstype in VIRTUAL_TYPES}


def read_mounts(mountinfo_path: str = MOUNTINFO) -> list[Mount]:
    """The mount table, or an empty one when it cannot be read (no /proc, not Linux)."""
    try:
        # surrogateescape: paths that are not UTF-8 decode the way os.fsdecode (and realpath) does.
        with open(mountinfo_path, encoding="utf-8", errors="surrogateescape") as handle:
            return parse_mountinfo(handle.read())
    except OSError:
        return []
