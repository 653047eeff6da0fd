"""The laptop's tree read through descriptors: what a walk refuses to follow, open or send."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from reloadd.sync.laptop.local import LocalTree, NotSynced
from reloadd.sync.laptop.localview import SyncRules
from reloadd.sync.shared.manifest import DIR, FILE, LINK, Exclude, flat


def never(path: str, is_dir: bool) -> bool:
    return False


@pytest.fixture
def tree(tmp_path: Path) -> LocalTree:
    root = tmp_path / "root"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "a.txt").write_text("mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.txt").write_text("secret")
    return LocalTree(str(root))


def swap(tree: LocalTree, target: str) -> None:
    """What an attacker (or a checkout) does between a change event and its upload."""
    conf = Path(tree.path) / "conf"
    (conf / "a.txt").unlink()
    conf.rmdir()
    conf.symlink_to(target)


def test_a_parent_swapped_for_a_link_is_not_followed_by_entry_names_or_open(tree: LocalTree) -> None:
    assert tree.entry("conf/a.txt") is not None
    swap(tree, str(Path(tree.path).parent / "outside"))
    for read in (tree.entry, tree.names, tree.open_file):
        with pytest.raises(NotSynced, match="conf is a symlink now; not following it"):
            read("conf/a.txt")
    assert tree.hash("conf/a.txt") == ""
    assert tree.scan("conf", lambda directory: never, lambda problem: None) == {}


def test_the_walk_names_what_it_skips_and_never_opens_a_fifo(tree: LocalTree) -> None:
    root = Path(tree.path)
    os.mkfifo(root / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock"))
    server.close()
    with open(os.path.join(os.fsencode(root), b"bad\xff"), "w"):
        pass
    skipped: list[str] = []
    found = flat(tree.scan("", lambda directory: never, lambda problem: skipped.append(problem.message)))
    assert {path: entry.kind for path, entry in found.items()} == {"conf": DIR, "conf/a.txt": FILE}
    assert sorted(skipped) == [
        "not synced: pipe: a FIFO, not a regular file",
        "not synced: sock: a socket, not a regular file",
        "skipping bad\\xff: its name is not UTF-8",
    ]
    (root / "conf" / "a.txt").unlink()
    os.mkfifo(root / "conf" / "a.txt")  # a FIFO where a file was: open_file must not block
    with pytest.raises(NotSynced, match="a FIFO"):
        tree.open_file("conf/a.txt")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_is_skipped_without_being_opened(tree: LocalTree) -> None:
    os.mknod(Path(tree.path) / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    skipped: list[str] = []
    found = flat(tree.scan("", lambda directory: never, lambda problem: skipped.append(problem.message)))
    assert "null" not in found and "conf/a.txt" in found
    assert skipped == ["not synced: null: a device, not a regular file"]
    with pytest.raises(NotSynced, match="a device"):
        tree.entry("null")


@pytest.mark.parametrize(
    ("links", "checked", "inside"),
    [
        ({"sub/up": ".."}, "sub/up", True),  # the root itself
        ({"sub/up": "..", "x": "sub/up/.."}, "x", False),  # through an in-tree link, then up
        ({"sub/up": "..", "hop": "sub/up", "z": "hop/../outside"}, "z", False),
        ({"lib": "conf", "main": "lib/../conf/a.txt"}, "main", True),
        ({"l1": "l2", "l2": "l1"}, "l1", False),  # a loop
        ({"dangling": "missing/../conf"}, "dangling", True),  # nothing to follow: judged as text
        ({"dangling": "missing/../.."}, "dangling", False),
    ],
)
def test_a_link_is_judged_by_the_real_tree(tree: LocalTree, links: dict[str, str], checked: str, inside: bool) -> None:
    root = Path(tree.path)
    (root / "sub").mkdir()
    for path, target in links.items():
        os.symlink(target, root / path)
    entry = tree.entry(checked)
    assert entry is not None and entry.kind == LINK
    if inside:
        tree.check_link(checked, entry.target)
    else:
        with pytest.raises(NotSynced, match="outside the synced directory"):
            tree.check_link(checked, entry.target)


def test_a_walk_tells_each_directory_s_names_before_asking_about_any_of_them(tree: LocalTree) -> None:
    (Path(tree.path) / "conf" / "deep").mkdir()
    (Path(tree.path) / "conf" / "deep" / "b.txt").write_text("b")
    listed: dict[str, set[str]] = {}
    asked_before_listed: list[str] = []
    tests_asked: list[str] = []

    def exclude(path: str, is_dir: bool) -> bool:
        if path.rpartition("/")[0] not in listed:
            asked_before_listed.append(path)
        return False

    def exclude_in(directory: str) -> Exclude:
        if directory not in listed:
            asked_before_listed.append(f"{directory}/")
        tests_asked.append(directory)
        return exclude

    tree.scan("", exclude_in, lambda problem: None, lambda directory, names: listed.update({directory: names}))
    assert listed == {"": {"conf"}, "conf": {"a.txt", "deep"}, "conf/deep": {"b.txt"}}
    assert asked_before_listed == []
    assert sorted(tests_asked) == ["", "conf", "conf/deep"]  # once per directory


ODD_RESTS = ["", "/", "a//b", "a/../b", "./a", "..", "a/..", "a/."]  # what relpath must still normalise


@pytest.mark.parametrize("root", ["/work/app", "/"])
@pytest.mark.parametrize("rest", ["a", "a/b.js", ".env", "a/..b", "...", *ODD_RESTS])
def test_the_watcher_s_paths_are_made_relative_as_relpath_would(root: str, rest: str) -> None:
    """The sync's rules cut the root off plain paths; anything else is normalised as before."""
    asked: list[str] = []

    def exclude(path: str, is_dir: bool) -> bool:
        asked.append(path)
        return False

    rules = SyncRules(Path(root), exclude)
    path = root.rstrip("/") + "/" + rest if rest else root
    relative = os.path.relpath(path, root)
    rules.prune(path)
    assert asked == ([] if relative == "." or relative.startswith("../") else [relative])
