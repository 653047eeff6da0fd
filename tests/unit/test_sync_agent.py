"""The pod side's gate: a table of hostile inputs, each refused, and nothing written outside the root.

The agent is driven in-process with the frames a laptop (or an attacker holding pods/exec) could
send; the file system is real (tmp_path), so a write through a pod-side symlink would really land.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from reloadd.errors import ReloaddError
from reloadd.sync.pod.handlers import Agent
from reloadd.sync.pod.root import Root, check_root
from reloadd.sync.shared.paths import PathRefused, check_link_target, check_path
from reloadd.sync.shared.protocol import ChannelData, Data, Frame, FrameReader, encode_data, encode_message
from reloadd.sync.shared.schema import ProtocolError


class Pod:
    """An agent on ``root`` and the messages it answered with."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sent: list[dict[str, Any]] = []
        self.agent = Agent(
            Root(str(root)), {"RELOADD_CONTROL_DIR": str(root.parent / "no-supervisor")}, self.sent.append
        )
        self.ident = 0

    def handle(self, frame: Frame) -> None:
        """A frame as the agent gets it: encoded, sent, decoded (and checked) by the FrameReader."""
        assert not isinstance(frame, ChannelData)  # the channel table's, never the agent's (test_sync_channels.py)
        wire = encode_data(frame.chunk) if isinstance(frame, Data) else encode_message(frame)
        for decoded in FrameReader().feed(wire):
            self.agent.handle(decoded)

    def batch(
        self, ops: list[dict[str, Any]], data: dict[str, bytes] | None = None, delete: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """Run one batch; returns the done reply with "skipped" and "failed" gathered from the chunks."""
        self.ident += 1
        start = len(self.sent)
        self.handle({"t": "batch", "id": self.ident})
        if delete:
            self.handle({"t": "delete", "paths": list(delete)})
        for op in ops:
            self.handle({"t": "op", **op})
            body = (data or {}).get(op["path"], b"")
            if op["op"] == "file" and body:
                self.handle(Data(body))
        self.handle({"t": "commit", "id": self.ident})
        replies = self.sent[start:]
        done = dict(next(reply for reply in reversed(replies) if reply["t"] == "done"))
        done["skipped"] = [line for r in replies if r["t"] == "skipped" for line in r["items"]]
        done["failed"] = [item for r in replies if r["t"] == "failed" for item in r["items"]]
        return done


def file_op(path: str, body: bytes = b"x", executable: bool = False) -> dict[str, Any]:
    return {"op": "file", "path": path, "size": len(body), "exec": executable, "mtime": 1_000_000_000}


@pytest.fixture
def world(tmp_path: Path) -> tuple[Pod, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("original")
    root = tmp_path / "app"
    root.mkdir()
    return Pod(root), outside


HOSTILE_PATHS = [
    "/etc/passwd",
    "../outside/victim",
    "a/../../outside/victim",
    "a/./b",
    "a//b",
    "a/",
    "",
    ".",
    "..",
    "x\0y",
    "n" * 256,
    "d/" * 2100 + "f",
    ".reloadd-sync.1.1.tmp",
    "sub/.reloadd-sync.99.3.tmp",
    123,
    None,
    ["a"],
]


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=[repr(p)[:30] for p in HOSTILE_PATHS])
def test_hostile_paths_are_refused_by_the_gate(path: object) -> None:
    with pytest.raises(PathRefused):
        check_path(path)


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=[repr(p)[:30] for p in HOSTILE_PATHS])
def test_hostile_paths_end_the_session_and_leave_nothing(world: tuple[Pod, Path], path: object) -> None:
    pod, outside = world
    (pod.root / "kept.js").write_text("staged before")
    pod.handle({"t": "batch", "id": 1})
    pod.handle({"t": "op", **file_op("ok.js", b"first")})
    pod.handle(Data(b"first"))
    with pytest.raises(ProtocolError):
        pod.handle({"t": "op", **file_op(path, b"evil")})  # type: ignore[arg-type]
    pod.agent.close()  # what the session's end does
    assert sorted(os.listdir(pod.root)) == ["kept.js"]  # the staged ok.js is gone, no temp file left
    assert (outside / "victim").read_text() == "original"


@pytest.mark.parametrize(
    ("path", "target"),
    [("l", "/etc"), ("l", "../outside"), ("a/l", "../../outside"), ("l", "a/../../x"), ("l", ""), ("l", "a\0b")],
)
def test_symlinks_pointing_outside_the_root_are_refused(path: str, target: str) -> None:
    with pytest.raises(PathRefused):
        check_link_target(path, target)


def test_a_symlink_inside_the_root_is_kept() -> None:
    assert check_link_target("bin/run", "../src/run.sh") == "../src/run.sh"


@pytest.mark.parametrize("directory", ["/", "/etc", "/usr", "/usr/local/bin", "/proc", "/root", "/etc/../usr"])
def test_system_directories_are_refused_as_the_root(directory: str) -> None:
    with pytest.raises(ReloaddError, match="system directory"):
        check_root(directory)


def test_a_missing_root_is_named_as_missing_and_a_file_as_no_directory(tmp_path: Path) -> None:
    with pytest.raises(ReloaddError, match=r"agent: \S+/gone does not exist"):
        check_root(str(tmp_path / "gone"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReloaddError, match=r"agent: \S+/file is not a directory"):
        check_root(str(tmp_path / "file"))


def test_a_write_through_a_pod_side_directory_symlink_is_refused(world: tuple[Pod, Path]) -> None:
    pod, outside = world
    os.symlink(str(outside), pod.root / "lib")
    reply = pod.batch(
        [file_op("lib/victim", b"pwned"), file_op("lib/new", b"pwned")], {"lib/victim": b"pwned", "lib/new": b"pwned"}
    )
    assert reply["t"] == "done" and reply["ok"] and len(reply["skipped"]) == 2
    assert "a symlink is in the way at lib" in reply["skipped"][0]
    assert (outside / "victim").read_text() == "original"
    assert sorted(os.listdir(outside)) == ["victim"]


def test_a_symlink_deeper_in_the_path_is_not_followed_either(world: tuple[Pod, Path]) -> None:
    pod, outside = world
    (pod.root / "a").mkdir()
    os.symlink("../../outside", pod.root / "a" / "b")
    reply = pod.batch([file_op("a/b/c/victim", b"pwned"), {"op": "dir", "path": "a/b/d"}], {"a/b/c/victim": b"pwned"})
    assert len(reply["skipped"]) == 2
    assert sorted(os.listdir(outside)) == ["victim"]
    assert sorted(os.listdir(pod.root / "a")) == ["b"]  # the staged directory went with the refusal


def test_a_file_symlink_is_replaced_not_written_through(world: tuple[Pod, Path]) -> None:
    pod, outside = world
    os.symlink(str(outside / "victim"), pod.root / "config.js")
    pod.batch([file_op("config.js", b"mine")], {"config.js": b"mine"})
    assert not (pod.root / "config.js").is_symlink()
    assert (pod.root / "config.js").read_bytes() == b"mine"
    assert (outside / "victim").read_text() == "original"


def test_deletes_never_reach_through_a_symlink(world: tuple[Pod, Path]) -> None:
    pod, outside = world
    os.symlink(str(outside), pod.root / "lib")
    pod.batch([], delete=("lib/victim",))
    assert (outside / "victim").exists()
    pod.batch([], delete=("lib",))  # removes the link itself, not what it points to
    assert not os.path.lexists(pod.root / "lib")
    assert (outside / "victim").read_text() == "original"


def test_hashes_are_not_read_through_a_symlink(world: tuple[Pod, Path]) -> None:
    pod, outside = world
    os.symlink(str(outside), pod.root / "lib")
    pod.handle({"t": "hash", "paths": ["lib/victim"]})
    assert pod.sent[-1] == {"t": "hashes", "hashes": {"lib/victim": None}}


def test_only_the_executable_bit_is_ever_set(world: tuple[Pod, Path]) -> None:
    pod, _ = world
    os.umask(0o022)
    pod.batch(
        [file_op("run.sh", b"#!/bin/sh\n", executable=True), file_op("plain", b"x")],
        {"run.sh": b"#!/bin/sh\n", "plain": b"x"},
    )
    assert stat.S_IMODE(os.stat(pod.root / "run.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(pod.root / "plain").st_mode) == 0o644


@pytest.mark.parametrize(
    "frames",
    [
        [{"t": "op", **file_op("a")}],  # op outside a batch
        [{"t": "batch", "id": 1}, {"t": "op", "op": "chmod", "path": "a", "mode": 0o4755}],
        [
            {"t": "batch", "id": 1},
            {"t": "op", "op": "file", "path": "a", "size": 1, "exec": "yes", "mtime": 1},
        ],
        [
            {"t": "batch", "id": 1},
            {"t": "op", "op": "file", "path": "a", "size": -1, "exec": False, "mtime": 1},
        ],
        [{"t": "batch", "id": 1}, {"t": "op", **file_op("a", b"12")}, {"t": "commit", "id": 1}],
        [{"t": "batch", "id": 1}, dict(file_op("a", b"1"), t="op"), Data(b"12")],
        [{"t": "batch", "id": 1}, Data(b"unannounced")],
        [{"t": "batch", "id": 1}, {"t": "delete", "paths": ["../x"]}],
        [{"t": "batch", "id": 1}, {"t": "batch", "id": 2}],
        [{"t": "batch", "id": 1}, {"t": "commit", "id": 2}],
        [{"t": "rm-rf"}],
        [Data(b"first")],
        [{"t": "commit", "id": 1}],
        [{"t": "batch", "id": 1}, dict(file_op("a", b"12"), t="op"), Data(b"1"), {"t": "start", "exclude": []}],
    ],
    ids=[
        "op-outside-batch",
        "unknown-op",
        "exec-not-bool",
        "negative-size",
        "commit-before-data",
        "too-much-data",
        "data-without-op",
        "hostile-delete",
        "nested-batch",
        "commit-other-batch",
        "unknown-message",
        "data-before-any-batch",
        "commit-before-any-batch",
        "start-while-a-file-is-owed",
    ],
)
def test_malformed_sessions_are_refused_and_leave_nothing(world: tuple[Pod, Path], frames: list[Any]) -> None:
    pod, _ = world
    with pytest.raises(ProtocolError):
        for frame in frames:
            pod.handle(frame)
    pod.agent.close()
    assert os.listdir(pod.root) == []


def test_a_batch_is_invisible_until_commit_then_complete(world: tuple[Pod, Path]) -> None:
    pod, _ = world
    (pod.root / "old.js").write_text("old")
    pod.handle({"t": "batch", "id": 1})
    pod.handle({"t": "delete", "paths": ["old.js"]})
    for name in ("a.js", "sub/b.js", "empty.js"):
        body = b"" if name == "empty.js" else name.encode()
        pod.handle({"t": "op", **file_op(name, body)})
        if body:
            pod.handle(Data(body))
    visible = {str(p.relative_to(pod.root)) for p in pod.root.rglob("*") if ".reloadd-sync." not in str(p)}
    assert visible == {"old.js"}  # staged under temporary names only, the new directory too
    pod.handle({"t": "commit", "id": 1})
    assert pod.sent[-2:] == [{"t": "done", "id": 1, "ok": True}, {"t": "live", "id": 1, "what": "no-supervisor"}]
    assert sorted(str(p.relative_to(pod.root)) for p in pod.root.rglob("*")) == ["a.js", "empty.js", "sub", "sub/b.js"]
    assert (pod.root / "empty.js").read_bytes() == b""
    assert os.stat(pod.root / "a.js").st_mtime_ns == 1_000_000_000


def test_a_directory_replaced_by_a_file_and_a_file_by_a_directory(world: tuple[Pod, Path]) -> None:
    pod, _ = world
    (pod.root / "was-dir").mkdir()
    (pod.root / "was-dir" / "x.js").write_text("x")
    (pod.root / "was-file").write_text("x")
    pod.batch(
        [file_op("was-dir", b"now a file"), file_op("was-file/y.js", b"y")],
        {"was-dir": b"now a file", "was-file/y.js": b"y"},
        delete=("was-dir", "was-file"),
    )
    assert (pod.root / "was-dir").read_bytes() == b"now a file"
    assert (pod.root / "was-file" / "y.js").read_bytes() == b"y"


def test_stale_temporary_files_of_a_dead_agent_are_removed_at_start(world: tuple[Pod, Path]) -> None:
    pod, _ = world
    dead = 2**22 + 12345  # above pid_max's default: no such process
    (pod.root / f".reloadd-sync.{dead}.1.tmp").write_text("half")
    (pod.root / f".reloadd-sync.{os.getpid()}.1.tmp").write_text("ours, in progress")
    pod.handle({"t": "start", "exclude": []})
    assert sorted(os.listdir(pod.root)) == [f".reloadd-sync.{os.getpid()}.1.tmp"]
    assert pod.sent[-1] == {"t": "dirs-end", "count": 1}  # the root's digest, of an empty listing


def test_a_deleted_directory_keeps_what_is_excluded_inside_it(world: tuple[Pod, Path]) -> None:
    pod, _ = world
    (pod.root / "app" / "node_modules" / "dep").mkdir(parents=True)
    (pod.root / "app" / "node_modules" / "dep" / "index.js").write_text("installed in the pod")
    (pod.root / "app" / "src").mkdir()
    (pod.root / "app" / "src" / "a.js").write_text("a")
    (pod.root / "app" / "b.js").write_text("b")
    pod.handle({"t": "start", "exclude": ["node_modules/"]})
    reply = pod.batch([], delete=("app",))
    assert reply["ok"]
    assert sorted(str(p.relative_to(pod.root)) for p in pod.root.rglob("*")) == [
        "app", "app/node_modules", "app/node_modules/dep", "app/node_modules/dep/index.js"
    ]  # fmt: skip
