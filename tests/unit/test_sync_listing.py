"""A sync start's comparison by directory digests: only directories that differ are listed, and the
agent's side of it (digests, listings, mtime stamps) driven in-process on a real tree."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from reloadd.sync.laptop.compare import diff
from reloadd.sync.laptop.localview import LocalView
from reloadd.sync.pod.handlers import Agent
from reloadd.sync.pod.root import Root
from reloadd.sync.shared import listing
from reloadd.sync.shared.excludes import sync_globs
from reloadd.sync.shared.manifest import DIR, FILE, LINK, Entry, flat, listings
from reloadd.sync.shared.schema import ProtocolError


def f(path: str, size: int = 1, mtime: int = 1, executable: bool = False) -> Entry:
    return Entry(path, FILE, size, mtime, executable)


def d(path: str) -> Entry:
    return Entry(path, DIR)


TREE = [d("src"), f("src/a.js"), f("src/b.js"), d("src/lib"), f("src/lib/c.js"), f("top.js"), d("empty")]


def group(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """The oracle both walks' own grouping is held to: the entries by the directory they are in, every
    directory (and the root) with a list, even an empty one."""
    groups: dict[str, list[Entry]] = defaultdict(list)
    groups[listing.ROOT] = []
    for entry in entries:
        groups[entry.path.rpartition("/")[0]].append(entry)
        if entry.kind == DIR:
            groups.setdefault(entry.path, [])
    return groups


def digests_of(entries: list[Entry]) -> dict[str, str]:
    return listing.digests(group(entries))


def test_equal_trees_have_equal_digests_in_any_order_and_nothing_is_asked() -> None:
    mine, theirs = digests_of(TREE), digests_of(list(reversed(TREE)))
    assert mine == theirs
    assert set(mine) == {"", "src", "src/lib", "empty"}  # every directory, the root and empty ones too
    assert listing.to_ask(mine, theirs) == []
    assert listing.differing(mine, theirs) == set()


@pytest.mark.parametrize(
    "changed",
    [f("src/lib/c.js", mtime=2), f("src/lib/c.js", size=2), f("src/lib/c.js", executable=True)],
    ids=["mtime", "size", "executable"],
)
def test_a_change_makes_only_its_own_directory_differ(changed: Entry) -> None:
    pod = [changed if entry.path == changed.path else entry for entry in TREE]
    mine, theirs = digests_of(TREE), digests_of(pod)
    assert listing.to_ask(mine, theirs) == ["src/lib"]
    assert listing.differing(mine, theirs) == {"src/lib"}


def test_a_link_target_is_part_of_the_listing() -> None:
    mine = digests_of([Entry("cfg", LINK, target="a")])
    assert listing.to_ask(mine, digests_of([Entry("cfg", LINK, target="b")])) == [""]


def test_fields_cannot_run_together() -> None:
    # size 12 and mtime 3 must not read like size 1 and mtime 23
    assert digests_of([f("x", size=12, mtime=3)]) != digests_of([f("x", size=1, mtime=23)])
    assert digests_of([f("ab"), f("c")]) != digests_of([f("a"), f("bc")])


def test_a_directory_the_pod_lacks_is_not_asked_for_but_compared_whole() -> None:
    mine = digests_of(TREE)
    theirs = digests_of([entry for entry in TREE if not entry.path.startswith("src")])
    assert listing.to_ask(mine, theirs) == [""]  # the root lists src: it differs
    assert listing.differing(mine, theirs) == {"", "src", "src/lib"}


def test_a_directory_only_the_pod_has_shows_in_its_parents_listing() -> None:
    mine = digests_of(TREE)
    theirs = digests_of(TREE + [d("src/old"), f("src/old/x.js")])
    assert listing.to_ask(mine, theirs) == ["src"]


def test_comparing_only_differing_directories_finds_the_same_difference_as_everything() -> None:
    laptop = TREE + [f("src/new.js")]
    pod = [f("src/lib/c.js", mtime=9) if e.path == "src/lib/c.js" else e for e in TREE] + [d("old"), f("old/x")]
    groups = group(laptop)
    mine, theirs = listing.digests(groups), digests_of(pod)
    remote = {e.path: e for e in pod if e.path.rpartition("/")[0] in listing.to_ask(mine, theirs)}
    compared = {e.path: e for directory in listing.differing(mine, theirs) for e in groups[directory]}
    every = diff({e.path: e for e in laptop}, {e.path: e for e in pod}, delete_extra=True)
    assert diff(compared, remote, delete_extra=True) == every
    assert every.send == ["src/new.js"] and every.compare == ["src/lib/c.js"] and every.delete == ["old"]


@pytest.mark.parametrize("bad", [["a"], ["a", 1], "a", ["a", "b", "c"], None])
def test_malformed_digests_from_the_peer_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        listing.parse_digests([["ok", "digest"], bad])


# -- the agent's side -------------------------------------------------------------------------------------
class Pod:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.sent: list[dict[str, Any]] = []
        env = {"RELOADD_CONTROL_DIR": str(root.parent / "no-supervisor")}
        self.agent = Agent(Root(str(root)), env, self.sent.append)

    def replies(self, kind: str, key: str) -> list[Any]:
        return [item for message in self.sent if message["t"] == kind for item in message[key]]


@pytest.fixture
def pod(tmp_path: Path) -> Pod:
    root = tmp_path / "app"
    (root / "src" / "lib").mkdir(parents=True)
    (root / "src" / "a.js").write_text("a")
    (root / "src" / "lib" / "c.js").write_text("c")
    (root / "node_modules" / "x").mkdir(parents=True)
    return Pod(root)


def test_the_agent_answers_start_with_the_same_digests_the_laptop_computes(pod: Pod) -> None:
    pod.agent.handle({"t": "start", "exclude": ["node_modules"]})
    fd = os.open(pod.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        expected = digests_of(list(flat(listings(fd, lambda path, is_dir: path == "node_modules")).values()))
    finally:
        os.close(fd)
    assert listing.parse_digests(pod.replies("dirs", "items")) == expected
    assert pod.sent[-1] == {"t": "dirs-end", "count": 3}  # the root, src, src/lib: node_modules excluded


def test_a_walks_listings_hold_every_directory_as_grouping_its_entries_would(pod: Pod) -> None:
    """The agent's walk groups as it goes: the same lists as grouping a flat walk afterwards, an
    empty directory and the root included, an excluded one absent."""
    (pod.root / "src" / "empty").mkdir()
    (pod.root / "src" / "to-a").symlink_to("a.js")
    (pod.root / "top.js").write_text("t")
    fd = os.open(pod.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        grouped = listings(fd, lambda path, is_dir: path == "node_modules")
        walked = list(flat(listings(fd, lambda path, is_dir: path == "node_modules")).values())
    finally:
        os.close(fd)
    assert {directory: sorted(entries) for directory, entries in grouped.items()} == {
        directory: sorted(entries) for directory, entries in group(walked).items()
    }
    assert set(grouped) == {"", "src", "src/lib", "src/empty"}
    assert grouped["src/empty"] == []


def test_the_agent_lists_only_the_directories_asked_for(pod: Pod) -> None:
    pod.agent.handle({"t": "start", "exclude": ["node_modules"]})
    pod.sent.clear()
    pod.agent.handle({"t": "list", "dirs": ["src/lib", "not-there"]})
    assert [item[0] for item in pod.replies("manifest", "entries")] == ["src/lib/c.js"]
    assert pod.sent[-1] == {"t": "manifest-end", "count": 1}


def test_the_agent_drops_its_walk_once_the_laptop_has_compared(pod: Pod) -> None:
    pod.agent.handle({"t": "start", "exclude": ["node_modules"]})
    assert pod.agent.listings
    pod.agent.handle({"t": "compared"})
    assert pod.agent.listings == {} and pod.sent[-1]["t"] == "dirs-end"  # not answered
    pod.agent.handle({"t": "list", "dirs": ["src"]})
    assert pod.sent[-1] == {"t": "manifest-end", "count": 0}  # nothing left to list


def test_a_stamp_sets_the_mtime_and_never_follows_a_symlink(pod: Pod, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("v")
    before = (outside / "victim").stat().st_mtime_ns
    os.symlink(str(outside), pod.root / "link")
    pod.agent.handle({"t": "stamp", "items": [["src/a.js", 1_000_000_000], ["link/victim", 5], ["gone.js", 5]]})
    assert (pod.root / "src" / "a.js").stat().st_mtime_ns == 1_000_000_000
    assert (outside / "victim").stat().st_mtime_ns == before
    assert pod.sent == []  # stamps are not answered


@pytest.mark.parametrize("item", [["a.js"], ["a.js", "1"], ["a.js", True], [1, 1], "a.js", ["../x", 1]])
def test_malformed_stamps_end_the_session(pod: Pod, item: Any) -> None:
    with pytest.raises(ProtocolError):
        pod.agent.handle({"t": "stamp", "items": [item]})


def test_the_laptops_walk_groups_as_grouping_its_entries_would(tmp_path: Path) -> None:
    """The laptop's walk groups as it goes too: an empty directory and the root have their lists, an
    excluded directory and a link leaving the tree are left out, as is a FIFO."""
    root = tmp_path / "app"
    (root / "src" / "empty").mkdir(parents=True)
    (root / "src" / "a.js").write_text("a")
    (root / "src" / "to-a").symlink_to("a.js")
    (root / "src" / "away").symlink_to("../../elsewhere")
    (root / "node_modules" / "x").mkdir(parents=True)
    os.mkfifo(root / "src" / "pipe")
    (root / "top.js").write_text("t")
    view = LocalView(root, sync_globs([], [], []), {})
    try:
        walked = view.walk()
    finally:
        view.tree.close()
    flat_walk = [entry for entries in walked.values() for entry in entries]
    assert {directory: sorted(entries) for directory, entries in walked.items()} == {
        directory: sorted(entries) for directory, entries in group(flat_walk).items()
    }
    assert set(walked) == {"", "src", "src/empty"}
    assert sorted(entry.path for entry in walked["src"]) == ["src/a.js", "src/empty", "src/to-a"]
