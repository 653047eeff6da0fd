# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""What the laptop side of ``reloadd sync`` may read, send and delete: a table of hostile and careless cases.

Each row runs the real laptop side against the real agent (``--transport env``) and says what
must hold afterwards: the line the laptop prints, what the pod holds and lacks, and always that
a secret planted beside LOCAL_DIR never reaches the pod and that the sync is still running
(no crash, no exit 70). Rows marked ``nobody`` run the sync as an unprivileged user, the only
way a file can be unreadable to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest
from support import DEADLINE, Reloadd, make_app, reloadd_argv, wait_for
from sync_support import first_sync_done

SECRET = "TOP-SECRET-outside-the-root"
NOBODY_ID = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # one nobody may run (the test's own interpreter may sit in root's home)
# The transport of the nobody rows: hands its stdin and stdout to the relay below (which runs
# the agent with them), then waits for the agent's exit status. Only the laptop side runs as nobody.
HAND_OVER = (
    "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
    "socket.send_fds(s, [b'x'], [0, 1]); sys.exit(int(s.recv(16) or b'1'))"
)
MANY = 60  # files in many/: a tree past the mass-delete threshold's minimum (10)


@dataclass
class World:
    laptop: Path
    pod: Path
    outside: Path  # beside LOCAL_DIR, holding the secret


Step = Callable[[World], object]
During = Callable[[World, Reloadd], object]


def nothing(world: World) -> None:
    pass


@dataclass(frozen=True)
class Row:
    before: Step = nothing  # shapes the trees before the sync starts
    during: Optional[During] = None  # after the first sync
    args: tuple[str, ...] = ()
    config: Optional[dict[str, object]] = None  # LOCAL_DIR's nodemon.json
    message: str = ""  # a line the laptop prints ({outside} is replaced)
    present: tuple[str, ...] = ()  # in the pod afterwards: "path" or "path=content"
    absent: tuple[str, ...] = ()
    nobody: bool = False
    extra: tuple[str, ...] = field(default_factory=tuple)  # more lines the laptop prints

    @property
    def shared(self) -> bool:
        """Rows about the tree at start only share one sync (their names do not collide): it saves time."""
        return self.during is None and not self.nobody and not self.args and self.config is None


def link(target: str, at: str) -> Step:
    return lambda w: os.symlink(target.format(outside=w.outside), w.laptop / at)


def steps(*actions: Step) -> Step:
    def run(world: World) -> None:
        for action in actions:
            action(world)

    return run


def write(path: str, text: str = "x") -> Step:
    def run(world: World) -> None:
        (world.laptop / path).parent.mkdir(parents=True, exist_ok=True)
        (world.laptop / path).write_text(text)

    return run


def pod_write(path: str, text: str) -> Step:
    def run(world: World) -> None:
        (world.pod / path).parent.mkdir(parents=True, exist_ok=True)
        (world.pod / path).write_text(text)

    return run


def mkdir(path: str) -> Step:
    return lambda w: (w.laptop / path).mkdir(parents=True, exist_ok=True)


def many(world: World) -> None:
    (world.laptop / "many").mkdir()
    for index in range(MANY):
        (world.laptop / "many" / f"f{index:02}.js").write_text(str(index))


def delete_many(count: int) -> During:
    def run(world: World, sync: Reloadd) -> None:
        for index in range(count):
            (world.laptop / "many" / f"f{index:02}.js").unlink()

    return run


def empty_root(world: World, sync: Reloadd) -> None:
    for entry in world.laptop.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def empty_then_restore(world: World, sync: Reloadd) -> None:
    empty_root(world, sync)
    sync.wait_log("halted: this change would delete")
    make_app(world.laptop, "v9")


def swap_for_outside_link(directory: str, target: str) -> During:
    """Edit a file inside ``directory``, then swap the directory for a link to outside, in one burst."""

    def run(world: World, sync: Reloadd) -> None:
        (world.outside / "a.txt").write_text(SECRET)
        (world.laptop / directory / "a.txt").write_text("edited")
        top = directory.split("/")[0]
        shutil.rmtree(world.laptop / top)
        os.symlink(target.format(outside=world.outside), world.laptop / top)

    return run


def root_deleted_then_back(world: World, sync: Reloadd) -> None:
    shutil.rmtree(world.laptop)
    sync.wait_log("halted: ")
    make_app(world.laptop, "v2")
    (world.laptop / "new.js").write_text("new")


def root_replaced(world: World, sync: Reloadd) -> None:
    world.laptop.rename(world.laptop.parent / "moved-away")
    world.laptop.mkdir()
    (world.laptop / "new.js").write_text("new")
    if world.laptop.stat().st_uid != os.getuid():
        os.chown(world.laptop, NOBODY_ID, NOBODY_ID)


def bad_name(world: World) -> None:
    with open(os.path.join(os.fsencode(world.laptop), b"bad\xff.js"), "w") as bad:
        bad.write("x")


def fifo(at: str) -> Step:
    return lambda w: os.mkfifo(w.laptop / at)


def unix_socket(world: World) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(world.laptop / "sock"))
    server.close()  # the socket file stays


def fifo_swapped_in(world: World, sync: Reloadd) -> None:
    (world.laptop / "data.txt").write_text("new")
    (world.laptop / "data.txt").unlink()
    os.mkfifo(world.laptop / "data.txt")
    (world.laptop / "marker.js").write_text("m")


def unreadable(path: str, directory: bool = False) -> Step:
    """Root's, mode 0600/0700: the sync (running as nobody) cannot read it."""

    def run(world: World) -> None:
        target = world.laptop / path
        if directory:
            target.mkdir()
            (target / "inside.js").write_text("laptop")
            target.chmod(0o700)
        else:
            target.write_text("root only")
            target.chmod(0o600)
        os.chown(target, 0, 0)

    return run


ROWS: dict[str, Row] = {
    "link-out-at-start": Row(
        before=link("{outside}", "conf"),
        message="skipping symlink 'conf' -> '{outside}': absolute target",
        absent=("conf",),
    ),
    "relative-link-out-at-start": Row(
        before=link("../outside", "conf2"),
        message="skipping symlink 'conf2' -> '../outside': points outside the synced directory",
        absent=("conf2",),
    ),
    "chain-through-in-tree-link": Row(
        before=steps(mkdir("sub"), link("..", "sub/up"), link("sub/up/..", "x")),
        message="skipping symlink 'x' -> 'sub/up/..': resolves outside the synced directory",
        present=("sub/up",),
        absent=("x",),
    ),
    "chain-of-two-links": Row(
        before=steps(mkdir("sub2"), link("..", "sub2/up"), link("sub2/up", "hop"), link("hop/../outside", "z")),
        message="skipping symlink 'z' -> 'hop/../outside': resolves outside",
        present=("hop",),
        absent=("z",),
    ),
    "symlink-loop": Row(
        before=steps(link("l2", "l1"), link("l1", "l2")),
        message="skipping symlink 'l1' -> 'l2'",
        absent=("l1", "l2"),
    ),
    "in-tree-chain-is-kept": Row(
        before=steps(write("src/app.js", "app"), link("src", "lib"), link("lib/../src/app.js", "main")),
        present=("lib", "main", "src/app.js=app"),
    ),
    "dir-swapped-for-link-mid-burst": Row(
        before=write("conf/a.txt", "mine"),
        during=swap_for_outside_link("conf", "{outside}"),
        message="skipping symlink 'conf' -> '{outside}': absolute target",
    ),  # whether the edit and the swap land in one burst or two, outside's a.txt never reaches the pod
    "parent-two-up-swapped-mid-burst": Row(
        before=write("deep/er/a.txt", "mine"),
        during=swap_for_outside_link("deep/er", "../outside"),
        message="skipping symlink 'deep' -> '../outside': points outside",
    ),
    "rm-rf-root-contents": Row(
        during=empty_root,
        message="halted: this change would delete",
        present=("server.js", "version.js"),
    ),
    "rm-rf-then-restored": Row(
        during=empty_then_restore,
        message="resuming: the files are back",
        present=("server.js", "version.js=module.exports = 'v9';\n"),
    ),
    "rm-rf-with-allow-mass-delete": Row(
        during=empty_root,
        args=("--allow-mass-delete",),
        message="deleted ",
        absent=("server.js", "version.js"),
    ),
    "half-of-60-deleted": Row(
        before=many,
        during=delete_many(40),
        message="halted: this change would delete 40 of the",
        present=("many/f00.js", "many/f39.js"),
    ),
    "a-third-of-60-deleted": Row(
        before=many,
        during=delete_many(20),
        message="deleted 20 in ",
        present=("many/f20.js",),
        absent=("many/f00.js", "many/f19.js"),
    ),
    "big-dir-renamed": Row(
        before=many,
        during=lambda w, s: (w.laptop / "many").rename(w.laptop / "moved"),
        message="and deleted 1 to",
        present=("moved/f00.js",),
        absent=("many",),
    ),
    "root-deleted-then-back": Row(
        during=root_deleted_then_back,
        message="is back: resyncing",
        extra=("is gone (deleted or moved away); nothing is deleted in the pod",),
        present=("new.js=new", "version.js=module.exports = 'v2';\n"),
    ),
    "root-moved-away-and-replaced": Row(
        during=root_replaced,
        message="resyncing",
        present=("new.js=new", "server.js"),
    ),
    "root-replaced-with-delete": Row(
        before=many,
        during=root_replaced,
        args=("--delete",),
        message="not deleting 62 of the pod's 62 files",
        present=("new.js=new", "server.js", "many/f00.js"),
    ),
    "ignoreRoot-git-only-with-delete": Row(
        before=steps(
            write("node_modules/dep/index.js", "laptop"),
            pod_write("node_modules/dep/index.js", "pod"),
            pod_write("node_modules/pod-only.js", "built in the pod"),
        ),
        config={"ignoreRoot": [".git"], "sync": {"delete": True}},
        present=("node_modules/dep/index.js=pod", "node_modules/pod-only.js"),  # neither replaced nor deleted
    ),
    "include-node_modules": Row(
        before=steps(write("node_modules/dep/index.js", "laptop"), pod_write("node_modules/dep/index.js", "pod")),
        config={"ignoreRoot": [".git"]},
        args=("--include", "node_modules"),
        present=("node_modules/dep/index.js=laptop",),
    ),
    "deleted-dir-keeps-pod-node_modules": Row(
        before=steps(write("pkg/index.js", "p"), pod_write("pkg/node_modules/x.js", "pod")),
        during=lambda w, s: shutil.rmtree(w.laptop / "pkg"),
        config={"ignoreRoot": [".git"]},
        message="deleted 1 in ",
        present=("pkg/node_modules/x.js=pod",),
        absent=("pkg/index.js",),
    ),
    "non-utf8-name-at-start": Row(
        before=bad_name,
        message="skipping bad\\xff.js: its name is not UTF-8",
        present=("server.js",),
    ),
    "non-utf8-name-live": Row(
        during=lambda w, s: steps(bad_name, write("marker.js", "m"))(w),
        message="skipping bad\\xff.js: its name is not UTF-8",
        present=("marker.js=m",),
    ),
    "fifo": Row(before=fifo("pipe"), message="not synced: pipe: a FIFO, not a regular file", absent=("pipe",)),
    "socket": Row(before=unix_socket, message="not synced: sock: a socket, not a regular file", absent=("sock",)),
    "fifo-swapped-in-for-a-file": Row(
        before=write("data.txt", "old"),
        during=fifo_swapped_in,
        message="not synced: data.txt: a FIFO",
        present=("marker.js=m", "data.txt=old"),
    ),
    "unreadable-file": Row(
        before=unreadable("secret.key"),
        message="not synced: secret.key: this file cannot be read (Permission denied)",
        extra=("synced 2 files",),  # server.js and version.js: the unreadable file is not counted
        absent=("secret.key",),
        nobody=True,
    ),
    "unreadable-dir-with-delete": Row(
        before=steps(unreadable("private", directory=True), pod_write("private/inside.js", "pod copy")),
        args=("--delete",),
        message="not synced: private: this directory cannot be read (Permission denied)",
        present=("private/inside.js=pod copy",),
        nobody=True,
    ),
    "gitignore-negation": Row(
        before=steps(write(".gitignore", "*.log\n!keep.log\n"), write("x.log"), write("keep.log", "kept")),
        present=("keep.log=kept",),
        absent=("x.log",),
    ),
}


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory every user may search (pytest's tmp_path sits in one only root may)."""
    directory = Path(tempfile.mkdtemp(prefix="reloadd-trust-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def make_world(base: Path, nobody: bool) -> World:
    world = World(make_app(base / "laptop"), base / "pod", base / "outside")
    world.pod.mkdir()
    world.outside.mkdir()
    (world.outside / "secret.txt").write_text(SECRET)
    (base / "control").mkdir(mode=0o700)
    if nobody:
        for path in (world.laptop, world.pod, base / "control", *world.laptop.iterdir()):
            os.chown(path, NOBODY_ID, NOBODY_ID)
    return world


class Relay:
    """Runs `reloadd agent POD` as root on the stdin/stdout a nobody transport hands over (SCM_RIGHTS)."""

    def __init__(self, base: Path, pod: Path) -> None:
        self.path = base / "relay.sock"
        self.pod = pod
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(self.path))
        os.chmod(self.path, 0o777)
        self.server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def transport(self) -> str:
        return shlex.join([SYSTEM_PYTHON, "-c", HAND_OVER, str(self.path)])

    def _serve(self) -> None:
        try:
            connection, _ = self.server.accept()
        except OSError:
            return
        with connection:
            _, fds, _, _ = socket.recv_fds(connection, 16, 2)
            env = {k: v for k, v in os.environ.items() if k != "NODE_ENV"}
            agent = subprocess.Popen([*reloadd_argv(), "agent", str(self.pod)], stdin=fds[0], stdout=fds[1], env=env)
            for fd in fds:
                os.close(fd)
            connection.sendall(str(agent.wait()).encode())

    def close(self) -> None:
        self.server.close()
        self.thread.join(DEADLINE)


def holds(pod: Path, expected: str) -> bool:
    path, sep, content = expected.partition("=")
    target = pod / path
    if not sep:
        return target.is_symlink() or target.exists()
    return target.is_file() and target.read_text() == content


def pod_contents(pod: Path) -> str:
    found = []
    for directory, _, files in os.walk(pod):
        for name in files:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                found.append(path.read_text(errors="replace"))
    return "\n".join(found)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[World, Reloadd]]:
    """One sync of a tree holding every shared row's setup at once."""
    directory = Path(tempfile.mkdtemp(prefix="reloadd-trust-"))
    directory.chmod(0o755)
    world = make_world(directory, nobody=False)
    for row in ROWS.values():
        if row.shared:
            row.before(world)
    sync = start(directory, world, (), None)
    try:
        yield world, sync
    finally:
        sync.stop()
        shutil.rmtree(directory, ignore_errors=True)


def start(
    base: Path, world: World, args: tuple[str, ...], transport: Optional[str], nobody: Optional[list[str]] = None
) -> Reloadd:
    """The sync; ``nobody``: the argv of a reloadd that runs as nobody, to run it with instead."""
    env = {"RELOADD_CONTROL_DIR": str(base / "control")}
    argv = ["sync", str(world.laptop), "--transport", transport or "env", "--to", str(world.pod), *args]
    sync = Reloadd(argv, world.laptop, env=env, command=nobody)
    wait_for(lambda: first_sync_done(sync) or sync.proc.poll() is not None, what=f"the first sync:\n{sync.log()}")
    return sync


@pytest.mark.parametrize("name", [name for name, row in ROWS.items() if row.shared])
def test_the_laptop_sends_only_what_it_may_at_start(shared: tuple[World, Reloadd], name: str) -> None:
    check_row(ROWS[name], *shared)


@pytest.mark.parametrize("name", [name for name, row in ROWS.items() if not row.shared])
def test_the_laptop_sends_only_what_it_may(base: Path, name: str, request: pytest.FixtureRequest) -> None:
    row = ROWS[name]
    nobody_reloadd: Optional[list[str]] = None
    if row.nobody:
        if os.geteuid() != 0 or shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON):
            pytest.skip(f"an unreadable file needs root, setpriv and {SYSTEM_PYTHON} to run the sync as nobody")
        nobody_reloadd = request.getfixturevalue("nobody_reloadd")  # a copy nobody can run (unprivileged.py)
    world = make_world(base, row.nobody)
    if row.config is not None:
        (world.laptop / "nodemon.json").write_text(json.dumps(row.config))
    row.before(world)
    relay = Relay(base, world.pod) if row.nobody else None
    sync = start(base, world, row.args, relay.transport() if relay is not None else None, nobody_reloadd)
    try:
        if row.during is not None:
            row.during(world, sync)
        check_row(row, world, sync)
    finally:
        sync.stop()
        if relay is not None:
            relay.close()


def check_row(row: Row, world: World, sync: Reloadd) -> None:
    for line in (row.message, *row.extra):
        if line:
            sync.wait_log(line.format(outside=world.outside))
    for expected in row.present:
        wait_for(lambda: holds(world.pod, expected), what=f"{expected} in the pod:\n{sync.log()}")  # noqa: B023
    for gone in row.absent:
        assert not holds(world.pod, gone), f"{gone} in the pod:\n{sync.log()}"
    assert SECRET not in pod_contents(world.pod)
    assert sync.proc.poll() is None, sync.log()
    assert "Traceback" not in sync.log()


def test_the_table_has_enough_rows() -> None:
    assert len(ROWS) >= 20


@contextlib.contextmanager
def on_a_terminal(base: Path) -> Iterator[tuple[World, Reloadd, int]]:
    """A sync whose stdin is a terminal (the halt asks there), synced once; yields the terminal's other end."""
    world = make_world(base, nobody=False)
    controller, terminal = os.openpty()
    env = {"RELOADD_CONTROL_DIR": str(base / "control")}
    argv = ["sync", str(world.laptop), "--transport", "env", "--to", str(world.pod)]
    sync = Reloadd(argv, world.laptop, env=env, stdin=terminal)
    try:
        wait_for(lambda: first_sync_done(sync), what=f"the first sync:\n{sync.log()}")
        yield world, sync, controller
    finally:
        sync.stop()
        os.close(controller)
        os.close(terminal)


def confirm(world: World, sync: Reloadd, controller: int) -> None:
    os.write(controller, b"y\n")
    sync.wait_log("resuming: going ahead as confirmed")
    wait_for(lambda: not holds(world.pod, "server.js"), what=f"the confirmed delete:\n{sync.log()}")


def test_a_halted_mass_delete_goes_ahead_when_y_is_typed_on_the_terminal(base: Path) -> None:
    with on_a_terminal(base) as (world, sync, controller):
        empty_root(world, sync)
        sync.wait_log("type y and Enter to delete them in the pod")
        assert holds(world.pod, "server.js")
        confirm(world, sync, controller)


def test_only_an_answer_typed_after_the_halt_confirms_it(base: Path) -> None:
    """A "y" typed before the question (say, to an earlier prompt) must not delete the pod's files."""
    with on_a_terminal(base) as (world, sync, controller):
        os.write(controller, b"y\n")  # typed ahead: no halt asks anything yet
        empty_root(world, sync)
        sync.wait_log("type y and Enter to delete them in the pod")
        (world.laptop / "new.js").write_text("one new file does not make the files back\n")
        os.write(controller, b"n\n")
        sync.wait_log("still halted")
        assert "going ahead" not in sync.log() and holds(world.pod, "server.js"), sync.log()
        confirm(world, sync, controller)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None,
    reason="a private bind mount under LOCAL_DIR needs root, unshare and nsenter",
)
def test_a_mount_going_away_under_local_dir_is_noticed_and_deletes_nothing(base: Path) -> None:
    world = make_world(base, nobody=False)
    mounted = make_app(base / "mounted", "v-mounted")
    env = {"RELOADD_CONTROL_DIR": str(base / "control")}
    script = 'mount --bind "$0" "$1" && shift && exec "$@"'  # $0: what is mounted, $1: where, then reloadd
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(mounted), str(world.laptop)]
    sync_argv = ["sync", str(world.laptop), "--transport", "env", "--to", str(world.pod)]
    for file in world.laptop.iterdir():
        file.unlink()  # what is under the mount point: nothing
    sync = Reloadd(sync_argv, world.laptop.parent, env=env, prefix=prefix)
    try:
        wait_for(lambda: holds(world.pod, "version.js=module.exports = 'v-mounted';\n"), what=sync.log())
        # lazily: the sync holds LOCAL_DIR open, as any watcher of a mount that goes away would
        unmount = ["nsenter", f"--target={sync.pid}", "--mount", "umount", "--lazy", str(world.laptop)]
        subprocess.run(unmount, check=True, timeout=DEADLINE)
        sync.wait_log("was replaced by another directory")
        (world.laptop / "after.js").write_text("after")  # the directory under the mount is watched now
        wait_for(lambda: holds(world.pod, "after.js=after"), what=sync.log())
        assert holds(world.pod, "server.js"), sync.log()  # the mount's files were not deleted in the pod
    finally:
        sync.stop()
