# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""What a ``reloadd sync`` start sends when the pod already holds the tree: nothing, whether the
mtimes agree or only the content does (and then the pod takes the laptop's mtimes)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from support import make_app, wait_for
from sync_support import start_sync

FILES_PER_DIR = 20
DIRS = 10
OLD_NS = 1_000_000_000_000_000_000  # 2001: an mtime the laptop's files certainly do not have


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    root = make_app(tmp_path / "laptop")
    for index in range(DIRS):
        directory = root / "src" / f"pkg{index}"
        directory.mkdir(parents=True)
        for number in range(FILES_PER_DIR):
            (directory / f"m{number}.js").write_text(f"module.exports = {index * 100 + number};\n")
    return root


def files_under(root: Path) -> dict[str, os.stat_result]:
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            found[str(path.relative_to(root))] = path.stat()
    return found


def start_record(log: str) -> dict[str, Any]:
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return next(record for record in records if record.get("event") == "synced")


def test_a_start_on_an_identical_pod_sends_nothing(run_reloadd, laptop: Path, tmp_path: Path) -> None:
    pod = tmp_path / "pod"
    shutil.copytree(laptop, pod)  # content, modes and mtimes (to the nanosecond)
    before = {path: st.st_ino for path, st in files_under(pod).items()}
    sync = start_sync(run_reloadd, laptop, pod, "--log-format", "json")
    record = start_record(sync.log())
    assert record["files"] == 0 and record["bytes"] == 0 and record["deleted"] == 0, record
    assert record["compared"] == len(before)
    assert f"({len(before)} files compared, nothing to send) in " in record["msg"]
    assert {path: st.st_ino for path, st in files_under(pod).items()} == before  # nothing rewritten


def test_same_content_with_other_mtimes_sends_nothing_and_the_pod_takes_the_laptops_mtimes(
    run_reloadd, laptop: Path, tmp_path: Path
) -> None:
    pod = tmp_path / "pod"
    shutil.copytree(laptop, pod)
    for path in files_under(pod):
        os.utime(pod / path, ns=(OLD_NS, OLD_NS))
    before = {path: st.st_ino for path, st in files_under(pod).items()}
    sync = start_sync(run_reloadd, laptop, pod, "--log-format", "json", "-V")
    record = start_record(sync.log())
    assert record["files"] == 0 and record["bytes"] == 0, record
    assert "nothing to send" in record["msg"]
    assert f"{len(before)} file(s) with the same content" in sync.log()
    laptop_times = {path: st.st_mtime_ns for path, st in files_under(laptop).items()}
    wait_for(
        lambda: {path: st.st_mtime_ns for path, st in files_under(pod).items()} == laptop_times,
        what="the pod's files to take the laptop's mtimes",
    )
    assert {path: st.st_ino for path, st in files_under(pod).items()} == before  # stamped, not rewritten
    sync.stop()
    again = start_sync(run_reloadd, laptop, pod, "--log-format", "json", "-V")
    assert "nothing to send" in start_record(again.log())["msg"]
    assert "with the same content" not in again.log()  # the quick check settles them now: nothing hashed


def test_a_start_sends_only_what_differs_among_unchanged_directories(run_reloadd, laptop: Path, tmp_path: Path) -> None:
    pod = tmp_path / "pod"
    shutil.copytree(laptop, pod)
    (pod / "src" / "pkg3" / "m7.js").write_text("module.exports = 'old';\n")
    os.utime(pod / "src" / "pkg3" / "m7.js", ns=(OLD_NS, OLD_NS))
    (pod / "src" / "pkg5" / "m1.js").write_text("module.exports = 501;\n")  # same size and content, other mtime
    os.utime(pod / "src" / "pkg5" / "m1.js", ns=(OLD_NS, OLD_NS))
    (laptop / "src" / "pkg8" / "new.js").write_text("new")
    sync = start_sync(run_reloadd, laptop, pod, "--log-format", "json", "-V")
    record = start_record(sync.log())
    assert record["files"] == 2, sync.log()
    assert (pod / "src" / "pkg3" / "m7.js").read_text() == (laptop / "src" / "pkg3" / "m7.js").read_text()
    assert (pod / "src" / "pkg8" / "new.js").read_text() == "new"
    sent = [json.loads(line)["msg"].strip() for line in sync.log().splitlines() if '"  src/' in line]
    assert sorted(sent) == ["src/pkg3/m7.js", "src/pkg8/new.js"]
