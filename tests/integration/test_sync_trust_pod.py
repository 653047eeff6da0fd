# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""The pod side of ``reloadd sync`` under faults and hostile input, as tables of cases.

Each row runs the real agent (``reloadd agent``), either fed frames directly, as a peer holding
pods/exec could send them, or driven by the real laptop side over ``--transport``, and states
what must hold afterwards: the pod tree exactly as before or fully updated, the reply or line,
the exit status, no temporary file, a memory bound. Faults a pod really has (a ConfigMap file
bind-mounted over a path, a read-only mount) are made with mounts in the agent's own mount
namespace, which needs root; those rows are skipped elsewhere.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from support import DEADLINE, free_port, make_app, reloadd_argv, wait_for
from sync_support import agents_of, control_env, served, start_sync, tree

from reloadd.setup.production import EXIT_REFUSED
from reloadd.sync.shared.protocol import CHUNK_ITEMS, MAX_FRAME, FrameReader, encode_data, encode_message
from reloadd.sync.shared.schema import EXIT_PROTOCOL

ROOT = os.geteuid() == 0 and shutil.which("unshare") is not None
needs_mounts = pytest.mark.skipif(not ROOT, reason="mounts in a mount namespace need root and unshare")
needs_nobody = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="an unprivileged agent needs root and setpriv"
)
MTIME = 1_700_000_000_000_000_000
RSS_LIMIT_MB = 100
TEMP_MARK = ".reloadd-sync."


# -- the agent, fed frames ----------------------------------------------------------------------------
@dataclass
class Run:
    status: int
    replies: list[dict[str, Any]]
    stderr: str
    peak_mb: float

    def last(self, kind: str) -> dict[str, Any]:
        return [reply for reply in self.replies if reply["t"] == kind][-1]

    def items(self, kind: str) -> list[Any]:
        return [item for reply in self.replies if reply["t"] == kind for item in reply["items"]]


def run_agent(
    pod: Path,
    frames: bytes | Iterable[bytes],
    prefix: Iterable[str] = (),
    env: Optional[dict[str, str]] = None,
    timeout: float = 60.0,
    until: Optional[Callable[[list[dict[str, Any]]], bool]] = None,
    command: Optional[list[str]] = None,
) -> Run:
    """``reloadd agent POD`` with ``frames`` on its stdin, then stdin closed; its replies.

    With ``until``, stdin stays open until the replies satisfy it, and the agent's peak RSS is
    read then (``VmHWM``: since its exec, so not the test process it was forked from)."""
    full_env = {k: v for k, v in os.environ.items() if k != "NODE_ENV"}
    full_env.update({"NO_COLOR": "1", "RELOADD_CONTROL_DIR": str(pod.parent / "no-control"), **(env or {})})
    argv = [*(command or [*prefix, *reloadd_argv()]), "agent", str(pod)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    answered = threading.Event()

    def write() -> None:
        try:
            for piece in [frames] if isinstance(frames, bytes) else frames:
                proc.stdin.write(piece)  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            if until is not None:
                answered.wait(timeout)
            proc.stdin.close()  # type: ignore[union-attr]
        except (BrokenPipeError, ValueError):
            pass  # the agent stopped reading: it answered with an error

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    watchdog = threading.Timer(timeout, proc.kill)  # a hang (a FIFO opened for reading) fails, not blocks
    watchdog.start()
    reader, replies, peak = FrameReader(), [], 0.0
    try:
        while chunk := os.read(proc.stdout.fileno(), 1024 * 1024):
            replies += [frame for frame in reader.feed(chunk) if isinstance(frame, dict)]
            if until is not None and not answered.is_set() and until(replies):
                peak = _peak_mb(proc.pid)
                answered.set()
        errors = proc.stderr.read()
        proc.wait()
    finally:
        watchdog.cancel()
        answered.set()
    writer.join(DEADLINE)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            stream.close()
        except BrokenPipeError:
            pass
    return Run(proc.returncode, replies, errors.decode(errors="replace"), peak)


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def msg(kind: str, **fields: Any) -> bytes:
    return encode_message({"t": kind, **fields})


def start_and_list(pod: Path, dirs: Optional[list[str]] = None) -> bytes:
    """``start``, then a ``list`` of every directory (``dirs``, or those in ``pod`` now): the whole manifest."""
    if dirs is None:
        dirs = [""] + sorted(os.path.relpath(d, pod) for d, _, _ in os.walk(pod) if d != str(pod))
    return msg("start", exclude=[]) + msg("list", dirs=dirs)


def put(path: str, body: bytes = b"new", executable: bool = False) -> bytes:
    op = msg("op", op="file", path=path, size=len(body), exec=executable, mtime=MTIME)
    return op + (encode_data(body) if body else b"")


def batch(ident: int, *ops: bytes, deletes: Iterable[str] = ()) -> bytes:
    listed = sorted(deletes)
    frames = msg("batch", id=ident)
    for start in range(0, len(listed), CHUNK_ITEMS):
        frames += msg("delete", paths=listed[start : start + CHUNK_ITEMS])
    return frames + b"".join(ops) + msg("commit", id=ident)


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry with its kind, mode, size, mtime, inode and content: "exactly as before" means all of it
    (but a directory's mtime, which its staged and removed entries move)."""
    found: dict[str, tuple[Any, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            body = os.readlink(path) if os.path.islink(path) else ""
            if os.path.isfile(path) and not os.path.islink(path):
                body = Path(path).read_text(errors="replace")
            mtime = 0 if os.path.isdir(path) else st.st_mtime_ns  # a directory's own mtime is not synced
            found[os.path.relpath(path, root)] = (st.st_mode, st.st_size, mtime, st.st_ino, body)
    return found


def temps(root: Path) -> list[str]:
    return [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files if TEMP_MARK in n]


def mounts(
    binds: Iterable[tuple[Path, Path]] = (), readonly: Iterable[Path] = (), tmpfs: Iterable[Path] = ()
) -> list[str]:
    """A prefix that runs the command in its own mount namespace with these mounts, as a pod has them."""
    steps = [f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dst))}" for src, dst in binds]
    for path in readonly:
        quoted = shlex.quote(str(path))
        steps.append(f"mount --bind {quoted} {quoted} && mount -o remount,ro,bind {quoted}")
    steps += [f"mount -t tmpfs tmpfs {shlex.quote(str(path))}" for path in tmpfs]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", " && ".join([*steps, 'exec "$@"']), "sh"]


# -- all or nothing per batch: a table of commit faults --------------------------------------------------
@pytest.fixture
def pod(tmp_path: Path) -> Path:
    """A pod's app: files, a config file a ConfigMap will be mounted over, a directory to delete."""
    root = tmp_path / "pod"
    (root / "config").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "olddir").mkdir()
    (root / "app.js").write_text("old app")
    (root / "config" / "app.json").write_text("old config")
    (root / "lib" / "util.js").write_text("old util")
    (root / "olddir" / "x.js").write_text("old x")
    (tmp_path / "configmap.json").write_text("from the ConfigMap")
    return root


@dataclass
class Fault:
    """A batch that meets a fault in the pod: nothing of it may be applied."""

    name: str
    ops: Callable[[], bytes]  # the batch (ident 1)
    failed: dict[str, str]  # path -> errno name the reply must name
    binds: list[tuple[str, str]] = field(default_factory=list)  # (source under tmp_path, target under the pod)
    readonly: list[str] = field(default_factory=list)  # directories of the pod mounted read-only


FAULTS = [
    Fault(
        "busy-file-after-other-renames",  # app.js, lib/ and new/ come before config/ in the order of renames
        lambda: batch(1, put("app.js"), put("config/app.json"), put("lib/util.js"), put("new/deep/a.js"),
                      deletes=["olddir"]),
        {"config/app.json": "EBUSY"},
        binds=[("configmap.json", "config/app.json")],
    ),
    Fault(
        "directory-replaced-by-a-file-then-busy",
        lambda: batch(1, put("olddir", b"now a file"), put("config/app.json"), deletes=["olddir"]),
        {"config/app.json": "EBUSY"},
        binds=[("configmap.json", "config/app.json")],
    ),
    Fault(
        "delete-of-a-mount-point",
        lambda: batch(1, put("app.js"), put("zz.js"), deletes=["olddir"]),
        {"olddir": "EBUSY"},
        binds=[("pod/olddir", "olddir")],
    ),
    Fault(
        "read-only-directory-while-staging",
        lambda: batch(1, put("app.js"), put("lib/util.js"), put("lib/new.js")),
        {"lib/util.js": "EROFS", "lib/new.js": "EROFS"},
        readonly=["lib"],
    ),
    Fault(
        "every-failing-path-named-in-one-reply",
        lambda: batch(1, put("config/app.json"), put("lib/util.js"), put("app.js")),
        {"config/app.json": "EBUSY", "lib/util.js": "EBUSY"},
        binds=[("configmap.json", "config/app.json"), ("configmap.json", "lib/util.js")],
    ),
]  # fmt: skip


@needs_mounts
@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_a_batch_that_meets_a_fault_leaves_the_tree_exactly_as_before(pod: Path, tmp_path: Path, fault: Fault) -> None:
    binds = [(tmp_path / source, pod / target) for source, target in fault.binds]
    prefix = mounts(binds, [pod / path for path in fault.readonly])
    before = snapshot(pod)
    run = run_agent(pod, fault.ops(), prefix)
    assert run.status == 0, run.stderr
    assert run.last("done") == {"t": "done", "id": 1, "ok": False}
    assert {path: error for path, error, _ in run.items("failed")} == fault.failed
    assert snapshot(pod) == before  # contents, modes, mtimes and inodes: the first renames were undone
    assert temps(pod) == []


@needs_mounts
def test_after_a_failed_batch_the_session_goes_on_and_the_rest_commits(pod: Path, tmp_path: Path) -> None:
    prefix = mounts([(tmp_path / "configmap.json", pod / "config" / "app.json")])
    control = tmp_path / "control"
    control.mkdir(mode=0o700)
    heard = Supervisor(control, pod)
    try:
        first = batch(1, put("app.js"), put("config/app.json"), put("new/a.js"))
        second = batch(2, put("app.js"), put("new/a.js"))  # what the laptop resends without the failed path
        run = run_agent(pod, first + second, prefix, env={"RELOADD_CONTROL_DIR": str(control)})
    finally:
        heard.close()
    assert [reply for reply in run.replies if reply["t"] == "done"] == [
        {"t": "done", "id": 1, "ok": False},
        {"t": "done", "id": 2, "ok": True},
    ]
    assert (pod / "app.js").read_text() == "new" and (pod / "new" / "a.js").read_text() == "new"
    assert (pod / "config" / "app.json").read_text() == "old config"
    assert heard.batches == [[f"{pod}/app.js", f"{pod}/new/a.js"]]  # the failed batch restarted nothing
    assert temps(pod) == []


class Supervisor:
    """A supervisor's control channel for ``watched``, served in a thread: the batches it was told of."""

    def __init__(self, directory: Path, watched: Path) -> None:
        from reloadd.host.control import ControlServer

        self.server = ControlServer(directory, [str(watched)])
        self.batches: list[list[str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            self.batches += [batch.paths for batch in self.server.take_batches()]
            self.stop.wait(0.01)

    def close(self) -> None:
        wait_for(lambda: not self.server.connections, what="the agent's announcement to end")
        self.stop.set()
        self.thread.join()
        self.server.close()


def test_new_directories_appear_only_at_commit_and_a_gone_laptop_leaves_nothing(pod: Path) -> None:
    before = snapshot(pod)
    frames = msg("batch", id=1) + put("new/deep/a.js") + put("app.js") + msg("delete", paths=["olddir"])
    run = run_agent(pod, frames)  # stdin closes before the commit: the laptop went away
    assert run.status == 0 and run.replies[-1]["t"] == "hello"
    assert snapshot(pod) == before and temps(pod) == []


def test_temporary_files_of_a_killed_agent_are_removed_when_the_next_one_starts(pod: Path) -> None:
    proc = subprocess.Popen([*reloadd_argv(), "agent", str(pod)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(msg("batch", id=1) + put("new/deep/a.js") + put("app.js") + put("lib/big.js", b"x" * 100)[:-50])
    proc.stdin.flush()
    wait_for(lambda: len(temps(pod)) >= 3, what="the staged names")  # new/, app.js's and big.js's
    proc.send_signal(signal.SIGKILL)
    proc.wait(DEADLINE)
    proc.stdin.close()
    proc.stdout.close()  # type: ignore[union-attr]
    run = run_agent(pod, start_and_list(pod))
    assert run.status == 0 and run.last("manifest-end")["count"] == 7
    assert temps(pod) == []


# -- malformed frames: exit 65, one line, nothing left behind -----------------------------------------
def raw(body: bytes) -> bytes:
    return b"J" + len(body).to_bytes(4, "big") + body


OP = b'{"t":"op","op":"file","path":"a.js","size":1,"exec":false,"mtime":%s}'
MALFORMED = [  # (name, frame sent after a file was staged, what the one line says)
    ("lone-surrogate", raw(b'{"t":"op","op":"dir","path":"\\ud800x"}'), "lone surrogate"),
    ("200k-deep", raw(b'{"t":"delete","paths":' + b"[" * 200_000 + b"]" * 200_000 + b"}"), "nested too deeply"),
    ("mtime-1e30", raw(OP % b"1e30"), "bad value for 'mtime'"),
    ("mtime-huge-int", raw(OP % (b"1" + b"0" * 30)), "bad value for 'mtime'"),
    ("negative-size", raw(b'{"t":"op","op":"file","path":"a","size":-5,"exec":false,"mtime":1}'), "for 'size'"),
    ("bool-id", msg("commit", id=True), "bad value for 'id'"),
    ("huge-id", raw(b'{"t":"commit","id":' + b"9" * 40 + b"}"), "bad value for 'id'"),
    ("unknown-key", raw(b'{"t":"op","op":"dir","path":"d","mode":493}'), "unknown key 'mode'"),
    ("unknown-message", raw(b'{"t":"chmod","path":"a"}'), "unknown message type"),
    ("unknown-frame-type", b"P\x00\x00\x00\x00", "unknown frame type"),
    ("hash-too-many", msg("hash", paths=[f"f{i}" for i in range(CHUNK_ITEMS + 1)]), "more than"),
    ("data-beyond-size", put("b.js", b"12")[:-7] + encode_data(b"123"), "file data that no file op announced"),
    ("stream-cut-mid-frame", msg("commit", id=1)[:-3], "ended inside a frame"),
]  # fmt: skip


@pytest.mark.parametrize(("frame", "line"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_frame_is_exit_65_one_line_and_no_temporary_file(pod: Path, frame: bytes, line: str) -> None:
    before = snapshot(pod)
    run = run_agent(pod, msg("batch", id=1) + put("new/a.js") + put("app.js") + frame)
    assert run.status == EXIT_PROTOCOL, run.stderr
    error = run.replies[-1]
    assert error["t"] == "error" and line in error["message"], error
    assert "\n" not in error["message"] and run.stderr == ""  # one line, and no traceback anywhere
    assert snapshot(pod) == before and temps(pod) == []


# -- every name and every file type in the pod ------------------------------------------------------
def test_special_files_are_never_opened_and_a_hash_of_a_fifo_does_not_block(pod: Path) -> None:
    os.mkfifo(pod / "pipe.js")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(pod / "sock.js"))
    try:
        run = run_agent(pod, start_and_list(pod) + msg("hash", paths=["pipe.js", "sock.js", "app.js"]), timeout=20)
    finally:
        listener.close()
    assert run.status == 0, run.stderr
    listed = {entry[0] for reply in run.replies if reply["t"] == "manifest" for entry in reply["entries"]}
    assert "pipe.js" not in listed and "sock.js" not in listed and "app.js" in listed
    hashes = run.last("hashes")["hashes"]
    assert hashes["pipe.js"] is None and hashes["sock.js"] is None and len(hashes["app.js"]) == 64


def test_a_name_that_is_not_utf8_is_skipped_with_a_warning_naming_it(pod: Path) -> None:
    os.close(os.open(os.fsencode(pod) + b"/caf\xe9.js", os.O_CREAT | os.O_WRONLY, 0o644))
    run = run_agent(pod, start_and_list(pod))
    assert run.status == 0, run.stderr
    assert run.last("warn")["message"] == "caf\\xe9.js: the name is not UTF-8; not synced"
    assert run.last("manifest-end")["count"] == 7  # everything else is listed


@needs_nobody
def test_an_unreadable_pod_directory_is_reported_and_a_locked_one_fails_the_batch(nobody_reloadd: list[str]) -> None:
    with tempfile.TemporaryDirectory() as name:  # pytest's tmp_path sits in a directory only root may search
        base = Path(name)
        base.chmod(0o755)
        pod = base / "pod"
        (pod / "secret").mkdir(parents=True)
        (pod / "locked").mkdir()
        (pod / "app.js").write_text("old app")
        os.chown(pod, 65534, 65534)
        os.chown(pod / "app.js", 65534, 65534)
        (pod / "secret").chmod(0o700)  # root's: the agent's user cannot list it
        before = snapshot(pod)
        frames = msg("start", exclude=[]) + batch(1, put("app.js"), put("locked/x.js"))
        run = run_agent(pod, frames, command=nobody_reloadd)
        assert run.status == 0, run.stderr
        assert run.last("warn")["message"] == "secret/: cannot open it (Permission denied); what it holds is not synced"
        assert [(p, e) for p, e, _ in run.items("failed")] == [("locked/x.js", "EACCES")]
        assert run.last("done")["ok"] is False and snapshot(pod) == before and temps(pod) == []


def test_a_symlink_in_the_way_is_refused_in_chunks_however_many_paths(pod: Path, tmp_path: Path) -> None:
    os.symlink(str(tmp_path), pod / "link")
    long = "d" * 245
    ops = [msg("op", op="dir", path=f"link/{long}{index:05d}") for index in range(2500)]  # 0.7 MB of refusals
    run = run_agent(pod, batch(1, *ops))
    assert run.status == 0, run.stderr
    assert len(run.items("skipped")) == 2500 and run.last("done")["ok"] is True
    assert len([r for r in run.replies if r["t"] == "skipped"]) > 1  # no reply grows with the batch
    assert not any(path.name.startswith("d" * 10) for path in tmp_path.iterdir())  # nothing through the link
    assert temps(pod) == []


# -- bounded memory ---------------------------------------------------------------------------------
MAKE_TREE = """
import os, sys
os.chdir(sys.argv[1])
for index in range(int(sys.argv[2])):
    if index % 1000 == 0:
        os.makedirs(f"src/d{index // 1000:03d}")
    os.close(os.open(f"src/d{index // 1000:03d}/f{index:06d}.js", os.O_CREAT | os.O_WRONLY, 0o644))
"""


@needs_mounts
@pytest.mark.timeout(240)
def test_a_pod_of_100k_files_is_listed_and_synced_into_under_100_mb(tmp_path: Path) -> None:
    """The agent's side of a first sync of a 100,000-file tree: the manifest streamed in chunks, then
    bounded batches (the writing of a million entries is the next row's)."""
    pod = tmp_path / "pod"
    pod.mkdir()
    count = 100_000
    dirs = ["", "src"] + [f"src/d{index:03d}" for index in range(count // 1000)]  # the tree MAKE_TREE makes
    frames = [start_and_list(pod, dirs), *(batch(n, *[put(f"new/d{n}/f{i}.js") for i in range(2000)]) for n in (1, 2))]
    frames.append(msg("hash", paths=[f"src/d000/f{i:06d}.js" for i in range(CHUNK_ITEMS)]))
    prefix = mounts(tmpfs=[pod])  # tmpfs: the cost is the agent's, not a disk's; the tree is made in it first
    make_tree = shlex.join([sys.executable, "-c", MAKE_TREE, str(pod), str(count)])
    prefix[-2] = prefix[-2].replace('exec "$@"', f'{make_tree} && exec "$@"')
    run = run_agent(pod, frames, prefix=prefix, timeout=200, until=lambda replies: replies[-1]["t"] == "hashes")
    assert run.status == 0, run.stderr
    assert run.last("dirs-end")["count"] == len(dirs)  # one digest per directory
    assert run.last("manifest-end")["count"] == count + count // 1000 + 1  # the files, their directories, src
    assert len([r for r in run.replies if r["t"] == "manifest"]) > 1
    assert [r["ok"] for r in run.replies if r["t"] == "done"] == [True, True]
    assert len(run.last("hashes")["hashes"]) == CHUNK_ITEMS
    assert max(len(encode_message(r)) for r in run.replies) < MAX_FRAME
    assert run.peak_mb < RSS_LIMIT_MB, f"{run.peak_mb:.0f} MB"


@pytest.mark.timeout(240)
def test_a_batch_of_a_million_operations_stays_under_100_mb(pod: Path) -> None:
    paths = [f"gone/d{index // 1000:04d}/f{index:07d}.js" for index in range(1_000_000)]
    deletes = [msg("delete", paths=paths[start : start + CHUNK_ITEMS]) for start in range(0, len(paths), CHUNK_ITEMS)]
    frames = [msg("batch", id=1), *deletes, put("app.js"), msg("delete", paths=["olddir"]), msg("commit", id=1)]
    run = run_agent(pod, frames, timeout=200, until=lambda replies: replies[-1]["t"] == "done")
    assert run.status == 0, run.stderr
    assert run.last("done") == {"t": "done", "id": 1, "ok": True}
    assert (pod / "app.js").read_text() == "new" and not (pod / "olddir").exists()
    assert run.peak_mb < RSS_LIMIT_MB, f"{run.peak_mb:.0f} MB"


# -- the laptop side against these faults ------------------------------------------------------------
@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    root = make_app(tmp_path / "laptop")
    (root / "config").mkdir()
    (root / "config" / "app.json").write_text("laptop config")
    return root


@needs_mounts
def test_a_busy_file_is_one_line_and_every_other_path_still_arrives(run_reloadd, laptop: Path, tmp_path: Path) -> None:
    pod = tmp_path / "pod"
    (pod / "config").mkdir(parents=True)
    (pod / "config" / "app.json").write_text("old config")
    transport = shlex.join(mounts([(tmp_path / "configmap.json", pod / "config" / "app.json")]))
    (tmp_path / "configmap.json").write_text("from the ConfigMap")
    sync = start_sync(run_reloadd, laptop, pod, "--transport", transport)
    line = "cannot write config/app.json: Device or resource busy (a mounted file?)"
    sync.wait_log(line)
    wait_for(lambda: (pod / "version.js").exists() and (pod / "server.js").exists(), what=sync.log())
    assert "synced 3 files" in sync.log() or "synced 2 files" in sync.log(), sync.log()
    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    (laptop / "config" / "app.json").write_text("edited again")
    sync.wait_log(line, count=2)  # tried again because it changed; the rest arrives anyway
    wait_for(lambda: "v2" in (pod / "version.js").read_text(), what=sync.log())
    assert sync.proc.poll() is None and (pod / "config" / "app.json").read_text() == "old config"
    assert "lost the connection" not in sync.log() and temps(pod) == []


@pytest.mark.timeout(180)
def test_a_first_sync_killed_midway_reconnects_and_sends_only_the_rest(run_reloadd, tmp_path: Path) -> None:
    laptop = tmp_path / "laptop"
    many = laptop / "many"
    many.mkdir(parents=True)
    for index in range(4100):  # three batches of the first sync
        (many / f"f{index:05d}.js").write_text(str(index))
    pod = tmp_path / "pod"
    pod.mkdir()
    sync = run_reloadd(["sync", str(laptop), "--transport", "env", "--to", str(pod)], laptop, env=control_env(tmp_path))
    (agent,) = wait_for(lambda: agents_of(sync), what="the agent")
    wait_for(lambda: (pod / "many").exists(), timeout=60, interval=0.005, what=f"the first batch:\n{sync.log()}")
    agent.kill()
    sync.wait_log("reconnected to", timeout=60)
    wait_for(lambda: tree(pod) == tree(laptop), timeout=60, what=f"the rest:\n{sync.log()}")
    assert sync.proc.poll() is None and temps(pod) == []
    resent = [int(word) for word in sync.log().split() if word.isdigit()]
    assert "synced" in sync.log() and max(resent, default=0) <= 4100, sync.log()
    assert "synced 4100 files" not in sync.log().split("reconnected to")[1]  # the committed part stays


@pytest.mark.timeout(180)
def test_a_tree_whose_hash_answers_exceed_a_frame_still_starts(run_reloadd, tmp_path: Path) -> None:
    """Same sizes, other mtimes on every file (a fresh clone against an image of the same commit):
    over 4 MiB of hashes in all, asked and answered in chunks; nothing needs sending."""
    laptop, pod = tmp_path / "laptop", tmp_path / "pod"
    deep = Path("a" * 250) / ("b" * 250) / ("c" * 250)
    for root, mtime in ((laptop, 1_000_000_000), (pod, 2_000_000_000)):
        (root / deep).mkdir(parents=True)
        for index in range(5200):
            path = root / deep / f"{index:05d}.js"
            path.write_text("same size")
            os.utime(path, (mtime, mtime))
    sync = run_reloadd(["sync", str(laptop), "--transport", "env", "--to", str(pod)], laptop, env=control_env(tmp_path))
    sync.wait_log("nothing to send", timeout=90)  # 5,200 files hashed on both sides, on a busy machine too
    assert sync.proc.poll() is None and "synced" not in sync.log(), sync.log()


def test_an_agent_that_never_starts_is_exit_1(tmp_path: Path, laptop: Path) -> None:
    done = subprocess.run(
        [*reloadd_argv(), "sync", str(laptop), "--transport", "false", "--to", str(tmp_path / "pod")],
        capture_output=True, text=True, timeout=30, env={**os.environ, **control_env(tmp_path), "NO_COLOR": "1"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "could not start the sync" in done.stderr


def test_production_in_any_case_refuses_and_the_laptop_stops(tmp_path: Path, laptop: Path) -> None:
    transport = shlex.join(["env", "NODE_ENV= Production "])
    done = subprocess.run(
        [*reloadd_argv(), "sync", str(laptop), "--transport", transport, "--to", str(tmp_path / "pod")],
        capture_output=True, text=True, timeout=30, env={**os.environ, **control_env(tmp_path), "NO_COLOR": "1"},
    )  # fmt: skip
    assert done.returncode == EXIT_REFUSED, done.stderr
    assert "refusing to sync: NODE_ENV=production" in done.stderr


def test_a_batch_restarts_only_the_supervisor_watching_its_directory(run_reloadd, laptop: Path, tmp_path: Path) -> None:
    apps = {}
    for name in ("synced", "other"):
        root = make_app(tmp_path / name)
        port = free_port()
        apps[name] = run_reloadd(["-V", "server.js"], root, env={"PORT": str(port), **control_env(tmp_path)})
        wait_for(lambda port=port: served(port).startswith("v1"), what=apps[name].log())  # type: ignore[misc]
    sync = start_sync(run_reloadd, laptop, tmp_path / "synced")
    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    apps["synced"].wait_log("sync batch committed", count=2)
    assert "sync batch committed" not in apps["other"].log(), apps["other"].log()
    assert sync.proc.poll() is None
