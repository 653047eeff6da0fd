"""The agent's spool: records of text fields on an unnamed file, read back in order and in reverse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reloadd.sync.pod import spool as spool_module
from reloadd.sync.pod.spool import Spool

AWKWARD = ["", "a\nb", "caf\udce9.js", "ünï/cödé", "x" * 5000, "tab\there"]  # newline, undecodable byte, long


@pytest.fixture
def directory(tmp_path: Path):  # type: ignore[no-untyped-def]
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_records_come_back_in_order_and_in_reverse_across_read_blocks(
    directory: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "READ_BLOCK", 97)  # records cross every block boundary
    spool = Spool(directory, "fallback", 3, reversible=True)
    records = [(str(index), AWKWARD[index % len(AWKWARD)], "z" * (index % 7)) for index in range(500)]
    for record in records:
        spool.append(*record)
    assert list(spool) == records
    assert list(spool.backwards()) == records[::-1]
    assert len(spool) == 500
    spool.close()


def test_many_one_field_records_at_once(directory: int) -> None:
    spool = Spool(directory, "fallback", 1)
    paths = [f"d{index // 100}/f{index}.js" for index in range(30_000)]
    spool.extend(paths[:10_000])
    spool.extend(paths[10_000:])
    assert [path for (path,) in spool] == paths
    spool.close()


def test_the_file_has_no_name_in_the_directory(directory: int, tmp_path: Path) -> None:
    spool = Spool(directory, "fallback", 1)
    spool.append("x")
    assert os.listdir(tmp_path) == []  # nothing to clean up however the agent ends
    spool.close()
