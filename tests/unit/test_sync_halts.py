"""The mass-delete rule of ``reloadd sync``: which batches halt instead of emptying the pod."""

from __future__ import annotations

import pytest

from reloadd.sync.laptop.halts import MASS_DELETE_MIN_FILES, mass_delete
from reloadd.sync.shared.manifest import DIR, FILE, Entry, Manifest


def tree(count: int, directory: str = "src") -> Manifest:
    found = {directory: Entry(directory, DIR)}
    for index in range(count):
        path = f"{directory}/f{index}.js"
        found[path] = Entry(path, FILE, 1)
    return found


def files(paths: list[str]) -> list[Entry]:
    return [Entry(path, FILE, 1) for path in paths]


@pytest.mark.parametrize(
    ("before", "sends", "deletes", "halts"),
    [
        (tree(3), [], ["src"], (3, 3)),  # rm -rf LOCAL_DIR/*: every file, however few
        (tree(1), [], ["src/f0.js"], (1, 1)),  # the last file of the tree
        (tree(3), [], ["src/f0.js"], None),  # an ordinary delete
        (tree(60), [], [f"src/f{i}.js" for i in range(31)], (31, 60)),  # more than half of 60
        (tree(60), [], [f"src/f{i}.js" for i in range(30)], None),  # exactly half: not more
        (tree(9), [], [f"src/f{i}.js" for i in range(8)], None),  # a tiny tree may lose most of it
        (tree(13), [], [f"src/f{i}.js" for i in range(10)], (10, 13)),  # rm -rf LOCAL_DIR/*, dotfiles left
        (tree(13), files(["src/new.js"]), [f"src/f{i}.js" for i in range(10)], (10, 13)),  # and one new file
        (tree(60), files([f"lib/f{i}.js" for i in range(60)]), ["src"], None),  # a big directory renamed
        (tree(60), files(["lib/one.js"]), ["src"], (60, 60)),  # emptied but for a new file
        (tree(0), [], ["src"], None),  # only directories
        (tree(60), [], [], None),
    ],
)
def test_a_batch_halts_when_it_would_delete_too_much(
    before: Manifest, sends: list[Entry], deletes: list[str], halts: object
) -> None:
    assert mass_delete(before, sends, deletes) == halts


def test_the_threshold_is_the_documented_one() -> None:
    assert MASS_DELETE_MIN_FILES == 10  # README, docs/behaviour.md and `reloadd sync --help` say 10
