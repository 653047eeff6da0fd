"""Mount detection: mountinfo parsing, mount lookup, and the poll-or-inotify decision per watch root.

The mountinfo lines are modelled on what real setups show (Kubernetes NFS volumes, minikube mount,
Docker Desktop, Telepresence, container roots) with made-up IDs, addresses and paths.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fs_support import COMMAND_TIMEOUT, FUSE_DEVICE, mount_entry, unmount
from support import wait_for

from reloadd.host.watch.mounts import (
    FORCED_NOTIFY_REASON,
    FORCED_POLL_REASON,
    UNKNOWN_REASON,
    Mount,
    WatchMode,
    decide_mode,
    mount_for,
    parse_mountinfo,
    polling_reason,
    read_mounts,
)

NFS_OPTIONS = "rw,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys"
OVERLAY_OPTIONS = "rw,lowerdir=/var/lib/docker/overlay2/l/Q4X:/var/lib/docker/overlay2/l/7YB,upperdir=/u,workdir=/w"

# (mountinfo line, the Mount it must parse to)
MOUNTINFO_LINES = [
    pytest.param(
        f"2150 2130 0:312 / /app rw,relatime shared:845 - nfs 10.96.12.4:/exports/app {NFS_OPTIONS}",
        Mount(2150, 2130, "/", "/app", "nfs", "10.96.12.4:/exports/app", NFS_OPTIONS),
        id="kubernetes-nfs-volume",
    ),
    pytest.param(
        "1893 1871 0:187 /projects/web /srv/app rw,relatime - nfs4 fs-0a1b.efs.eu-west-1.amazonaws.com:/ rw,vers=4.1",
        Mount(1893, 1871, "/projects/web", "/srv/app", "nfs4", "fs-0a1b.efs.eu-west-1.amazonaws.com:/", "rw,vers=4.1"),
        id="nfs4-subpath",
    ),
    pytest.param(
        "812 790 0:61 / /minikube-host rw,relatime - 9p 192.168.49.1 rw,sync,dirsync,trans=tcp,version=9p2000.L",
        Mount(812, 790, "/", "/minikube-host", "9p", "192.168.49.1", "rw,sync,dirsync,trans=tcp,version=9p2000.L"),
        id="minikube-mount-9p",
    ),
    pytest.param(
        "45 28 0:41 / /mnt/host rw,relatime - virtiofs hostshare rw",
        Mount(45, 28, "/", "/mnt/host", "virtiofs", "hostshare", "rw"),
        id="virtiofs",
    ),
    pytest.param(
        f"1712 1560 0:284 / / rw,relatime master:1 - overlay overlay {OVERLAY_OPTIONS}",
        Mount(1712, 1560, "/", "/", "overlay", "overlay", OVERLAY_OPTIONS),
        id="container-root-overlay",
    ),
    pytest.param(
        "388 29 0:52 / /tmp/telfs-2203887164 rw,nosuid,nodev,relatime shared:210 - fuse.sshfs "
        "localhost:/tel_app_mounts rw,user_id=1000",
        Mount(388, 29, "/", "/tmp/telfs-2203887164", "fuse.sshfs", "localhost:/tel_app_mounts", "rw,user_id=1000"),
        id="telepresence-sshfs",
    ),
    pytest.param(
        "1740 1712 0:142 /host_mnt/Users/ana/shop /app rw,relatime - fuse.grpcfuse grpcfuse rw,allow_other",
        Mount(1740, 1712, "/host_mnt/Users/ana/shop", "/app", "fuse.grpcfuse", "grpcfuse", "rw,allow_other"),
        id="docker-desktop-grpcfuse",
    ),
    pytest.param(
        "97 27 0:44 / /srv/synced rw,nosuid,nodev - fuse.bindfs /var/sync/inbox rw,default_permissions",
        Mount(97, 27, "/", "/srv/synced", "fuse.bindfs", "/var/sync/inbox", "rw,default_permissions"),
        id="bindfs",
    ),
    pytest.param(
        "1745 1712 254:1 /var/lib/kubelet/pods/0c4d/volumes/cache /app/.cache rw - ext4 /dev/vda1 rw",
        Mount(1745, 1712, "/var/lib/kubelet/pods/0c4d/volumes/cache", "/app/.cache", "ext4", "/dev/vda1", "rw"),
        id="bind-mount-root-not-slash",
    ),
    pytest.param(
        r"130 27 8:17 /My\040Files /media/ana/My\040Passport rw shared:75 - fuseblk /dev/sdb1 rw,blksize=4096",
        Mount(130, 27, "/My Files", "/media/ana/My Passport", "fuseblk", "/dev/sdb1", "rw,blksize=4096"),
        id="escaped-spaces",
    ),
    pytest.param(
        r"131 27 0:50 / /mnt/tab\011dir\134x\012y rw - tmpfs my\040tmp rw",
        Mount(131, 27, "/", "/mnt/tab\tdir\\x\ny", "tmpfs", "my tmp", "rw"),
        id="escaped-tab-backslash-newline",
    ),
    pytest.param(
        "200 27 0:60 / /shared rw shared:1 master:2 propagate_from:3 unbindable - ext4 /dev/vdb rw",
        Mount(200, 27, "/", "/shared", "ext4", "/dev/vdb", "rw"),
        id="several-optional-fields",
    ),
    pytest.param(
        "201 27 0:61 / /work rw,noatime - xfs /dev/vdc rw,attr2",
        Mount(201, 27, "/", "/work", "xfs", "/dev/vdc", "rw,attr2"),
        id="no-optional-fields",
    ),
    pytest.param(
        "202 27 0:62 / /dash-dir/- rw master:4 - btrfs /dev/vdd rw",
        Mount(202, 27, "/", "/dash-dir/-", "btrfs", "/dev/vdd", "rw"),
        id="dash-inside-a-path-is-not-the-separator",
    ),
]


@pytest.mark.parametrize(("line", "expected"), MOUNTINFO_LINES)
def test_parse_mountinfo_reads_real_world_lines(line: str, expected: Mount) -> None:
    assert parse_mountinfo(line + "\n") == [expected]


def test_parse_mountinfo_keeps_file_order_and_skips_lines_that_do_not_fit() -> None:
    text = "\n".join(
        [
            "1 0 0:1 / / rw - ext4 /dev/vda rw",
            "",
            "garbage",
            "x 1 0:2 / /bad-id rw - ext4 /dev/vda rw",
            "3 1 0:3 / /no-separator rw ext4 /dev/vda rw",
            "4 1 0:4 / /nothing-after-separator rw -",
            "5 1 0:5 / /app rw - nfs4 server:/ rw",
        ]
    )
    assert [mount.mount_point for mount in parse_mountinfo(text)] == ["/", "/app"]


def test_parse_mountinfo_of_this_machine_has_a_root_mount() -> None:
    mounts = read_mounts()
    assert mounts, "/proc/self/mountinfo parsed to nothing"
    assert any(mount.mount_point == "/" for mount in mounts)


def test_read_mounts_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_mounts(str(tmp_path / "no-mountinfo")) == []


# (fs type, the reason to poll, or None for inotify)
POLLING_REASONS = [
    ("nfs", "nfs mount"),
    ("nfs4", "nfs4 mount"),
    ("cifs", "cifs mount"),
    ("smb3", "smb3 mount"),
    ("9p", "9p mount"),
    ("virtiofs", "virtiofs mount"),
    ("fakeowner", "fakeowner mount"),
    ("vboxsf", "vboxsf mount"),
    ("prl_fs", "prl_fs mount"),
    ("vmhgfs", "vmhgfs mount"),
    ("ceph", "ceph mount"),
    ("glusterfs", "glusterfs mount"),
    ("lustre", "lustre mount"),
    ("ocfs2", "ocfs2 mount"),
    ("fuse", "fuse mount"),
    ("fuse.sshfs", "fuse.sshfs mount"),
    ("fuse.grpcfuse", "fuse.grpcfuse mount"),
    ("fuse.bindfs", "fuse.bindfs mount"),
    ("fuse.osxfs", "fuse.osxfs mount"),
    ("fuse.some-future-daemon", "fuse.some-future-daemon mount"),
    ("fuseblk", None),
    ("ext4", None),
    ("xfs", None),
    ("btrfs", None),
    ("overlay", None),
    ("tmpfs", None),
    ("zfs", None),
    ("nfsd", None),  # the NFS server's control file system, not a share
    ("fusectl", None),  # FUSE's control file system, not a FUSE mount
]


@pytest.mark.parametrize(("fstype", "expected"), POLLING_REASONS)
def test_polling_reason_by_fs_type(fstype: str, expected: str | None) -> None:
    assert polling_reason(Mount(1, 0, "/", "/x", fstype, "src", "rw")) == expected


def mount(mount_id: int, parent_id: int, mount_point: str, fstype: str = "ext4") -> Mount:
    return Mount(mount_id, parent_id, "/", mount_point, fstype, "src", "rw")


POD = [
    mount(10, 1, "/", "overlay"),
    mount(11, 10, "/app", "nfs4"),
    mount(12, 11, "/app/node_modules", "ext4"),
    mount(13, 10, "/application", "xfs"),
    mount(14, 10, "/proc", "proc"),
]


@pytest.mark.parametrize(
    ("path", "expected_id"),
    [
        ("/", 10),
        ("/etc/passwd", 10),
        ("/app", 11),
        ("/app/", 11),
        ("/app/src/index.js", 11),
        ("/app/node_modules", 12),
        ("/app/node_modules/x/index.js", 12),
        ("/app/node_modulesx", 11),
        ("/application/src", 13),
        ("/applicatio", 10),
        ("/app/../application", 13),
    ],
)
def test_mount_for_picks_the_longest_mount_point_by_whole_components(path: str, expected_id: int) -> None:
    found = mount_for(path, POD)
    assert found is not None and found.mount_id == expected_id


def test_mount_for_without_any_containing_mount_is_none() -> None:
    assert mount_for("/app/x", [mount(11, 10, "/srv")]) is None
    assert mount_for("/app/x", []) is None


def test_mount_for_the_last_mount_stacked_on_a_mount_point_wins() -> None:
    # A sync tool puts bindfs over an emptyDir already mounted on /app: the overmount's parent is
    # the mount it covers.
    stacked = [mount(10, 1, "/"), mount(20, 10, "/app", "ext4"), mount(21, 20, "/app", "fuse.bindfs")]
    found = mount_for("/app/server.js", stacked)
    assert found is not None and found.fstype == "fuse.bindfs"


def test_mount_for_skips_a_mount_hidden_by_a_later_mount_over_its_ancestor() -> None:
    # /app/data was mounted first; then /app was mounted over it, so /app/data is no longer reachable.
    hidden = [mount(10, 1, "/"), mount(30, 10, "/app/data", "ext4"), mount(31, 10, "/app", "9p")]
    found = mount_for("/app/data/seed.json", hidden)
    assert found is not None and found.mount_id == 31


def test_mount_for_a_propagated_mount_tucked_under_an_existing_one_stays_under_it() -> None:
    # Since Linux 4.11 a mount propagated onto a busy mount point goes underneath: the existing
    # mount is re-parented onto it, even though it comes first in the file.
    tucked = [mount(10, 1, "/"), mount(41, 42, "/app", "fuse.sshfs"), mount(42, 10, "/app", "ext4")]
    found = mount_for("/app/x", tucked)
    assert found is not None and found.mount_id == 41


def test_mount_for_falls_back_to_longest_then_last_when_parent_ids_do_not_connect() -> None:
    loose = [mount(1, 100, "/"), mount(2, 200, "/app", "ext4"), mount(3, 300, "/app", "nfs")]
    found = mount_for("/app/x", loose)
    assert found is not None and found.mount_id == 3
    cyclic = [mount(5, 6, "/app"), mount(6, 5, "/app", "nfs"), mount(7, 99, "/")]
    found = mount_for("/app/x", cyclic)
    assert found is not None and found.mount_id == 6


def test_mount_for_resolves_symlinks(tmp_path: Path) -> None:
    real = tmp_path.resolve() / "volume"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    mounts = [mount(10, 1, "/"), mount(11, 10, str(real), "nfs4")]
    found = mount_for(str(tmp_path / "link" / "src"), mounts)
    assert found is not None and found.mount_id == 11


def test_mount_for_a_path_that_does_not_exist_yet_resolves_its_nearest_existing_ancestor(tmp_path: Path) -> None:
    real = tmp_path.resolve() / "volume"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    mounts = [mount(10, 1, "/"), mount(11, 10, str(real), "nfs4")]
    found = mount_for(str(tmp_path / "link" / "not" / "yet" / "there"), mounts)
    assert found is not None and found.mount_id == 11


def write_mountinfo(directory: Path, *lines: str) -> str:
    path = directory / "mountinfo"
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


@pytest.fixture
def pod_mountinfo(tmp_path: Path) -> str:
    """A mount table with an NFS volume at <tmp>/app and a local cache volume inside it."""
    base = tmp_path.resolve()
    return write_mountinfo(
        tmp_path,
        f"1712 1560 0:284 / / rw,relatime master:1 - overlay overlay {OVERLAY_OPTIONS}",
        f"2150 1712 0:312 / {base}/app rw,relatime shared:845 - nfs4 10.96.12.4:/exports/app {NFS_OPTIONS}",
        f"2151 2150 254:1 /cache {base}/app/.cache rw - ext4 /dev/vda1 rw",
    )


@pytest.mark.parametrize(
    ("legacy_watch", "expected"),
    [(True, WatchMode(True, FORCED_POLL_REASON)), (False, WatchMode(False, FORCED_NOTIFY_REASON))],
)
def test_decide_mode_forced_by_legacy_watch_ignores_the_mount(
    tmp_path: Path, pod_mountinfo: str, legacy_watch: bool, expected: WatchMode
) -> None:
    assert decide_mode(str(tmp_path / "app"), legacy_watch, pod_mountinfo) == expected
    assert decide_mode(str(tmp_path / "app" / ".cache"), legacy_watch, pod_mountinfo) == expected


def test_decide_mode_polls_a_network_mount(tmp_path: Path, pod_mountinfo: str) -> None:
    assert decide_mode(str(tmp_path / "app" / "src"), None, pod_mountinfo) == WatchMode(True, "nfs4 mount")


def test_decide_mode_uses_inotify_on_a_local_mount(tmp_path: Path, pod_mountinfo: str) -> None:
    assert decide_mode(str(tmp_path / "app" / ".cache"), None, pod_mountinfo) == WatchMode(False, "ext4 mount")
    assert decide_mode(str(tmp_path / "elsewhere"), None, pod_mountinfo) == WatchMode(False, "overlay mount")


def test_decide_mode_for_a_root_that_does_not_exist_yet_uses_its_future_mount(
    tmp_path: Path, pod_mountinfo: str
) -> None:
    assert not (tmp_path / "app").exists()
    assert decide_mode(str(tmp_path / "app" / "late" / "src"), None, pod_mountinfo).poll


@pytest.mark.parametrize("content", [None, "", "not a mount table\n"])
def test_decide_mode_without_a_usable_mount_table_uses_inotify(tmp_path: Path, content: str | None) -> None:
    mountinfo = tmp_path / "mountinfo"
    if content is not None:
        mountinfo.write_text(content)
    assert decide_mode(str(tmp_path), None, str(mountinfo)) == WatchMode(False, UNKNOWN_REASON)


def test_decide_mode_with_no_mount_containing_the_path_uses_inotify(tmp_path: Path) -> None:
    mountinfo = write_mountinfo(tmp_path, "5 1 0:5 / /somewhere/else rw - nfs4 server:/ rw")
    assert decide_mode(str(tmp_path), None, mountinfo) == WatchMode(False, UNKNOWN_REASON)


@pytest.mark.fuse
@pytest.mark.skipif(not FUSE_DEVICE.exists(), reason=f"{FUSE_DEVICE} is missing: this container has no FUSE")
def test_decide_mode_polls_a_real_bindfs_mount_and_not_its_source(tmp_path: Path) -> None:
    source, mnt = tmp_path / "src", tmp_path / "mnt"
    (source / "sub").mkdir(parents=True)
    mnt.mkdir()
    command = ["bindfs", "--no-allow-other", str(source), str(mnt)]
    subprocess.run(command, check=True, timeout=COMMAND_TIMEOUT, capture_output=True)
    try:
        entry = wait_for(lambda: mount_entry(mnt), what=f"bindfs mount on {mnt} in /proc/self/mountinfo")
        fstype = entry[1]  # type: ignore[index]  # "fuse" or "fuse.bindfs", as the kernel names it
        assert decide_mode(str(mnt / "sub"), None) == WatchMode(True, f"{fstype} mount")
        assert decide_mode(str(mnt / "not-yet"), None).poll
        assert not decide_mode(str(tmp_path), None).poll
        assert not decide_mode(str(source / "sub"), None).poll
        assert decide_mode(str(mnt / "sub"), False) == WatchMode(False, FORCED_NOTIFY_REASON)
    finally:
        unmount(mnt)
