"""Sync frames, manifests and their difference, and the exclude rules: pure logic, no processes."""

from __future__ import annotations

import json
import os
import re
import struct
import typing
from pathlib import Path

import pytest

from reloadd.errors import ConfigError
from reloadd.sync.laptop.compare import diff, topmost
from reloadd.sync.laptop.gitignore import load
from reloadd.sync.shared import messages
from reloadd.sync.shared.excludes import check_include, excluder, sync_globs
from reloadd.sync.shared.manifest import DIR, FILE, LINK, Entry, flat, listings
from reloadd.sync.shared.protocol import MAX_FRAME, Data, FrameReader, chunks, encode_data, encode_message
from reloadd.sync.shared.schema import CHANNEL_MESSAGES, MESSAGES, NOTICE_MESSAGES, ProtocolError


# -- frames -----------------------------------------------------------------------------------------
def test_frames_round_trip_in_any_pieces() -> None:
    hello = {"t": "hello", "version": 2, "root": "/app"}
    stream = encode_message(hello) + encode_data(b"\x00abc") + encode_message({"t": "commit", "id": 1})
    reader = FrameReader()
    frames = []
    for index in range(len(stream)):  # one byte at a time: the worst a pipe can do
        frames += reader.feed(stream[index : index + 1])
    reader.finish()
    assert frames == [hello, Data(b"\x00abc"), {"t": "commit", "id": 1}]


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    header = struct.pack(">cI", b"D", MAX_FRAME + 1)
    with pytest.raises(ProtocolError, match="over the"):
        FrameReader().feed(header)  # no body sent: the reader must not wait for (or allocate) it


def test_the_sender_refuses_to_build_an_oversized_frame() -> None:
    with pytest.raises(ProtocolError):
        encode_data(b"x" * (MAX_FRAME + 1))


@pytest.mark.parametrize("cut", [1, 4, 5, 9])
def test_a_stream_ending_inside_a_frame_is_an_error(cut: int) -> None:
    reader = FrameReader()
    assert reader.feed(encode_message({"t": "commit", "id": 1})[:cut]) == []
    with pytest.raises(ProtocolError, match="ended inside a frame"):
        reader.finish()


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"no": "type"}', b'{"t": 5}', b"\xff\xfe"],
    ids=["not-json", "array", "no-type", "type-not-string", "not-utf8"],
)
def test_malformed_message_frames_are_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed"):
        FrameReader().feed(struct.pack(">cI", b"J", len(body)) + body)


def body_frame(body: bytes) -> bytes:
    return struct.pack(">cI", b"J", len(body)) + body


DEEP = b'{"t":"start","exclude":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
BAD_MESSAGES = [  # (body, what the one line says)
    (b'{"t":"op","op":"file","path":"a","size":1,"exec":false,"mtime":1e30}', "bad value for 'mtime'"),
    (b'{"t":"op","op":"file","path":"a","size":1,"exec":false,"mtime":99999999999999999999}', "bad value for 'mtime'"),
    (b'{"t":"op","op":"file","path":"a","size":-1,"exec":false,"mtime":1}', "bad value for 'size'"),
    (b'{"t":"op","op":"file","path":"a","size":true,"exec":false,"mtime":1}', "bad value for 'size'"),
    (b'{"t":"op","op":"file","path":"a","size":1,"exec":1,"mtime":1}', "bad value for 'exec'"),
    (b'{"t":"batch","id":1e3}', "bad value for 'id'"),
    (b'{"t":"batch","id":true}', "bad value for 'id'"),
    (b'{"t":"batch","id":100000000000000000000000}', "bad value for 'id'"),
    (b'{"t":"batch"}', "missing 'id'"),
    (b'{"t":"batch","id":1,"delete":[]}', "unknown key 'delete'"),
    (b'{"t":"commit","id":1,"force":true}', "unknown key 'force'"),
    (b'{"t":"rm-rf"}', "unknown message type"),
    (b'{"t":"delete","paths":"a"}', "bad value for 'paths'"),
    (b'{"t":"delete","paths":[1]}', "bad value for 'paths'"),
    (b'{"t":"hash","paths":["\\ud800"]}', "lone surrogate"),
    (b'{"t":"delete","paths":["a\\udfff"]}', "lone surrogate"),
    (b'{"t":"done","id":1,"ok":"yes"}', "bad value for 'ok'"),
    (b'{"t":"hashes","hashes":{"a":5}}', "bad value for 'hashes'"),
    (DEEP, "nested too deeply"),
]


@pytest.mark.parametrize(("body", "message"), BAD_MESSAGES, ids=[m for _, m in BAD_MESSAGES])
def test_each_malformed_message_is_one_protocol_error(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        FrameReader().feed(body_frame(body))


@pytest.mark.parametrize(
    "message",
    [
        {"t": "hash", "paths": ["caf\u00e9/\U0001f600.js"]},  # a pair escaped by another encoder is fine
        {"t": "hello", "version": 9, "root": "/app", "features": ["later"]},  # hello stays open: version check
        {"t": "op", "op": "file", "path": "a", "size": 0, "exec": True, "mtime": -1},  # before 1970 is a time
        {"t": "failed", "id": 1, "items": [["a", "EBUSY", "Device or resource busy"]]},
    ],
)
def test_well_formed_messages_pass(message: dict[str, object]) -> None:
    body = json.dumps(message).encode()  # ASCII with escapes, as another implementation might send
    assert FrameReader().feed(body_frame(body)) == [message]


def test_each_message_type_has_the_keys_its_schema_checks() -> None:
    """messages.py's types and schema.py's table say the same thing twice: they must not drift apart."""
    types: dict[str, dict[str, str]] = {}
    for value in vars(messages).values():
        if isinstance(value, type) and "t" in getattr(value, "__annotations__", {}):
            # The annotations are text (ForwardRefs at run time): messages are never checked by their types.
            keys = {key: str(getattr(hint, "__forward_arg__", hint)) for key, hint in value.__annotations__.items()}
            found = re.fullmatch(r"Literal\[['\"](.+)['\"]\]", keys["t"])
            assert found is not None, value
            types[found.group(1)] = keys
    assert set(types) == set(MESSAGES)
    for kind, schema in MESSAGES.items():
        optional = {key for key, annotation in types[kind].items() if annotation.startswith("NotRequired[")}
        assert set(schema.required) == set(types[kind]) - optional - {"t"}, kind
        assert set(schema.optional) == optional, kind


def test_the_channel_and_notice_kinds_are_those_of_their_types() -> None:
    """The frame reader routes by these sets; they must name the kinds of messages.py's groups."""

    def kinds(group: object) -> set[str]:
        return {str(member.__annotations__["t"]).split("'")[1] for member in typing.get_args(group)}

    assert kinds(messages.ChannelMessage) == CHANNEL_MESSAGES
    assert kinds(messages.Notice) == NOTICE_MESSAGES


def test_chunks_stay_under_the_byte_and_item_limits() -> None:
    paths = [f"dir/{index:06d}" * 20 for index in range(5000)] + ["\x01" * 4000]
    pieces = list(chunks(paths, limit_bytes=64 * 1024, limit_items=1000))
    assert [p for piece in pieces for p in piece] == paths
    assert all(len(piece) <= 1000 for piece in pieces)
    assert all(len(encode_message({"t": "delete", "paths": piece})) < 64 * 1024 + 30_000 for piece in pieces)


def test_an_unknown_frame_type_is_an_error() -> None:
    with pytest.raises(ProtocolError, match="unknown frame type"):
        FrameReader().feed(b"HTTP/1.1 200 OK\r\n")


# -- manifests ----------------------------------------------------------------------------------------
def f(path: str, size: int = 1, mtime: int = 1, executable: bool = False) -> Entry:
    return Entry(path, FILE, size, mtime, executable)


def manifest(*entries: Entry) -> dict[str, Entry]:
    return {entry.path: entry for entry in entries}


def test_diff_sends_what_is_new_or_different_and_keeps_pod_only_paths() -> None:
    local = manifest(f("same"), f("new"), f("bigger", size=2), f("exec", executable=True), f("touched", mtime=2))
    remote = manifest(f("same"), f("bigger"), f("exec"), f("touched"), f("pod-only"))
    result = diff(local, remote, delete_extra=False)
    assert result.send == ["bigger", "exec", "new"]
    assert result.compare == ["touched"]  # same size, other mtime: compared by hash, not sent blindly
    assert result.delete == []


def test_diff_with_delete_removes_pod_only_trees_by_their_top() -> None:
    local = manifest(f("keep"))
    remote = manifest(f("keep"), Entry("old", DIR), f("old/a"), Entry("old/sub", DIR), f("old/sub/b"), f("stray"))
    assert diff(local, remote, delete_extra=True).delete == ["old", "stray"]


def test_diff_replaces_a_path_that_changed_kind() -> None:
    local = manifest(f("lib"), Entry("conf", DIR), Entry("link", LINK, target="a"))
    remote = manifest(
        Entry("lib", DIR), f("lib/x"), Entry("conf", LINK, target="/etc"), Entry("link", LINK, target="b")
    )
    result = diff(local, remote, delete_extra=False)
    assert result.delete == ["conf", "lib"]  # the pod's symlink `conf -> /etc` is removed, never written through
    assert result.send == ["conf", "lib", "link"]


def test_topmost_keeps_only_the_roots_of_removed_trees() -> None:
    assert topmost(["a/b/c", "a", "ab", "a/b", "c/d"]) == ["a", "ab", "c/d"]


def test_entries_from_the_wire_are_checked() -> None:
    assert Entry.from_wire(["a", "f", 1, 2, True, ""]) == Entry("a", FILE, 1, 2, True)
    for bad in (["a", "x", 1, 2, True, ""], ["a", "f", "1", 2, True, ""], "a", ["a"], [1, "f", 1, 2, True, ""]):
        assert Entry.from_wire(bad) is None


def test_scan_never_follows_symlinks_and_prunes_excluded_directories(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    root = tmp_path / "root"
    (root / "src").mkdir(parents=True)
    (root / "src" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "src" / "run.sh", 0o755)
    (root / "node_modules" / "dep").mkdir(parents=True)
    (root / "node_modules" / "dep" / "index.js").write_text("")
    os.symlink(str(outside), root / "escape")
    os.symlink("src/run.sh", root / "run")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found = flat(listings(fd, excluder(str(root), ["node_modules/"])))
    finally:
        os.close(fd)
    assert sorted(found) == ["escape", "run", "src", "src/run.sh"]
    assert found["escape"] == Entry("escape", LINK, target=str(outside))
    assert found["src/run.sh"].executable and found["src/run.sh"].size == 10


# -- excludes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "is_dir", "excluded"),
    [
        ("dist", True, True),
        ("a/dist", True, True),  # no slash inside the pattern: any depth
        ("build", True, True),
        ("a/build", True, False),  # `/build` is anchored to the .gitignore's directory
        ("logs", True, True),
        ("logs", False, False),  # `logs/`: directories only
        ("a/b.log", False, True),
        ("important.log", False, False),  # negated: git brings it back
        ("sub/tmp", False, True),
        ("sub/deep/tmp", False, True),
        ("tmp", False, False),  # sub/.gitignore says nothing about the root
        ("sub/x/y", False, True),
        ("x/y", False, False),
        ("keep.log.txt", False, False),
        (".env", False, False),
    ],
)
def test_gitignore_files_apply_where_they_live(tmp_path: Path, path: str, is_dir: bool, excluded: bool) -> None:
    (tmp_path / ".gitignore").write_text("# build output\ndist\n/build\nlogs/\n*.log\n!important.log\n\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".gitignore").write_text("tmp\nx/y\n")

    def read(directory: str) -> bytes:
        gitignore = tmp_path / directory / ".gitignore"
        return gitignore.read_bytes() if gitignore.exists() else b""

    assert load(tmp_path, read, {}).ignored(path, is_dir) is excluded


@pytest.mark.parametrize(
    ("path", "include", "excluded"),
    [
        ("node_modules", [], True),
        ("packages/a/node_modules/x.js", [], True),
        (".git/config", [], True),
        ("node_modules/x.js", ["node_modules"], False),
        (".git", ["node_modules"], True),
        ("src/app.js", [], False),
    ],
)
def test_protected_names_are_left_out_at_any_depth_unless_included(
    tmp_path: Path, path: str, include: list[str], excluded: bool
) -> None:
    globs = sync_globs([".git"], [], include)  # an ignoreRoot without node_modules protects it all the same
    is_dir = "." not in path.rpartition("/")[2] or path.endswith(".git")
    assert excluder(str(tmp_path), globs)(path, is_dir) is excluded


def test_including_a_name_drops_the_ignoreRoot_entries_naming_it() -> None:
    assert sync_globs(["**/node_modules/**", "**/.git/**"], ["*.log"], ["node_modules"]) == [
        ".git/",
        "**/.git/**",
        "*.log",
    ]


def test_only_protected_names_can_be_included() -> None:
    with pytest.raises(ConfigError, match="'src' is not a protected name"):
        check_include(["src"], "sync: --include")


def test_wire_format_is_json() -> None:
    frame = encode_message({"t": "x", "path": "é"})
    assert json.loads(frame[5:]) == {"t": "x", "path": "é"}
