"""The sync's .gitignore rules against the real ``git check-ignore``: one table, every answer compared.

Each row is a path (a file, or a directory when it ends with "/") created in a real repository
whose ignore files use the syntax that hand-written matchers get wrong: negation (and a parent
directory that cannot be re-included), ``\\#``/``\\!`` escapes, anchored and unanchored names,
``**`` forms, trailing spaces (and an escaped one), directory-only patterns, character classes,
nested ``.gitignore`` files, ``.git/info/exclude`` and the user's ``core.excludesFile``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from reloadd.sync.laptop.gitignore import GITIGNORE, load
from reloadd.sync.laptop.localview import LocalView
from reloadd.sync.shared.excludes import sync_globs
from reloadd.sync.shared.manifest import FILE

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="compares against the git binary")

ROOT_GITIGNORE = """\
# a comment, and a blank line

\\#hash.txt
\\!bang.txt
*.log
!keep.log
build/
/rootonly.txt
doc/*.txt
**/deep/x.js
lib/**
a/**/z.js
trailing.txt   \n\
escaped\\ \n\
[abc].cls
[!abc]n.cls
file[0-9].num
[[:digit:]]x.cc
ab?.q
ignored-dir/
!ignored-dir/back.txt
!global.swp
**/anywhere
star*/inside.js
[]]y.br
[a-].dash
[z-a]never
"""
SUB_GITIGNORE = "!important.log\n*.tmp\n/anch.js\ninner/\n"
INFO_EXCLUDE = "*.secret\n"
USER_EXCLUDES = "*.swp\n"

PATHS = [
    "#hash.txt", "hash.txt", "!bang.txt", "bang.txt",
    "x.log", "sub/y.log", "keep.log", "sub/keep.log", "sub/important.log",
    "build/", "build/out.js", "sub/build/", "other/build",
    "rootonly.txt", "sub/rootonly.txt",
    "doc/a.txt", "doc/sub/b.txt",
    "deep/x.js", "p/q/deep/x.js", "p/deep/y.js",
    "lib/", "lib/a.js", "lib/b/c.js",
    "a/z.js", "a/b/z.js", "a/b/c/z.js", "b/a/z.js",
    "trailing.txt", "escaped ", "escaped",
    "a.cls", "d.cls", "dn.cls", "an.cls",
    "file5.num", "filex.num", "7x.cc", "xx.cc",
    "abc.q", "ab.q",
    "ignored-dir/", "ignored-dir/back.txt",
    "sub/x.tmp", "x.tmp", "sub/anch.js", "sub/deeper/anch.js", "sub/inner/", "sub/inner/f.js", "inner/",
    "s.secret", "sub/t.secret", "f.swp", "global.swp",
    "anywhere", "x/y/anywhere", "stars/inside.js", "star/inside.js", "star/x/inside.js",
    "]y.br", "y.br", "-.dash", "a.dash", "b.dash", "znever",
]  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("gitignore")
    root = base / "repo"
    home = base / "home"
    home.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=git_env(home))
    (root / GITIGNORE).write_text(ROOT_GITIGNORE)
    (root / "sub").mkdir()
    (root / "sub" / GITIGNORE).write_text(SUB_GITIGNORE)
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text(INFO_EXCLUDE)
    (home / "user-excludes").write_text(USER_EXCLUDES)
    (home / ".gitconfig").write_text('[core]\n\texcludesFile = "~/user-excludes"  ; the user\'s own list\n')
    for path in PATHS:
        target = root / path
        if path.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("")
    return root


def git_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "XDG_"))}
    return {**env, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}


def git_ignored(root: Path) -> set[str]:
    paths = [path.rstrip("/") for path in PATHS]
    done = subprocess.run(
        ["git", "check-ignore", "--stdin", "-z"],
        cwd=root,
        input="\0".join(paths) + "\0",
        capture_output=True,
        text=True,
        env=git_env(root.parent / "home"),
    )
    assert done.returncode in (0, 1), done.stderr
    return {path for path in done.stdout.split("\0") if path}


def read_gitignore(root: Path) -> Callable[[str], bytes]:
    def read(directory: str) -> bytes:
        path = root / directory / GITIGNORE
        return path.read_bytes() if path.is_file() else b""

    return read


def test_the_table_has_enough_rows() -> None:
    assert len(PATHS) >= 30


@pytest.fixture(scope="module")
def expected(repo: Path) -> set[str]:
    return git_ignored(repo)


@pytest.mark.parametrize("path", PATHS)
def test_ignored_exactly_as_git_check_ignore_says(repo: Path, expected: set[str], path: str) -> None:
    matcher = load(repo, read_gitignore(repo), git_env(repo.parent / "home"))
    plain = path.rstrip("/")
    assert matcher.ignored(plain, (repo / plain).is_dir()) == (plain in expected), f"git says {plain in expected}"


def test_the_table_has_both_answers(expected: set[str]) -> None:
    """Both answers occur often: a matcher that ignores everything (or nothing) fails many rows."""
    assert 20 <= len(expected) <= len(PATHS) - 20, sorted(expected)


@pytest.mark.parametrize("path", [path for path in PATHS if path.startswith("sub/")])
def test_a_subdirectory_of_the_repository_gets_the_rules_above_it(repo: Path, expected: set[str], path: str) -> None:
    """LOCAL_DIR inside a repository: the .gitignore files above it and info/exclude still apply."""
    matcher = load(repo / "sub", read_gitignore(repo / "sub"), git_env(repo.parent / "home"))
    plain = path.rstrip("/")
    inside = plain.removeprefix("sub/")
    assert matcher.ignored(inside, (repo / plain).is_dir()) == (plain in expected), f"git says {plain in expected}"


def test_a_whole_walk_leaves_out_exactly_what_git_ignores(repo: Path) -> None:
    """The walk asks git's rules once per directory and skips them where none applies: every file it
    finds is one git would list as untracked and not ignored, and no such file is missing."""
    env = git_env(repo.parent / "home")
    listed = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "-z"], cwd=repo, capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0, listed.stderr
    view = LocalView(repo, sync_globs([], [], []), env)
    try:
        found = {entry.path for entries in view.walk().values() for entry in entries if entry.kind == FILE}
    finally:
        view.tree.close()
    assert found == {path for path in listed.stdout.split("\0") if path}
