"""docs/design.md says no more than the code does: its state tables, its message list and the
files it names are checked against the code here."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from reloadd.host.warm import process as warm_process
from reloadd.supervise import machine
from reloadd.sync.shared.schema import MESSAGES

ROOT = Path(__file__).parents[2]
DESIGN = (ROOT / "docs" / "design.md").read_text()
E = TypeVar("E", bound=enum.Enum)


def table(allowed: Mapping[E, frozenset[E]]) -> str:
    """A state machine's allowed changes as the markdown table the doc shows: a row per state, in
    declaration order, with the states it may change to, or "none"."""
    states = list(allowed)
    rows = ["| from | to |", "| --- | --- |"]
    for old in states:
        targets = [new.value for new in states if new in allowed[old]]
        rows.append(f"| {old.value} | {', '.join(targets) or 'none'} |")
    return "\n".join(rows) + "\n"


def test_table_renders_a_row_per_state() -> None:
    rendered = table(machine.ALLOWED)
    assert len(rendered.splitlines()) == 2 + len(machine.State)
    assert "| running | restarting, cleaning up, exiting |" in rendered
    assert "| exited | none |" in rendered


@pytest.mark.parametrize(
    "allowed", [machine.ALLOWED, warm_process.ALLOWED], ids=["supervisor states", "warm process phases"]
)
def test_the_documented_state_tables_are_the_codes(allowed: Mapping[Any, frozenset[Any]]) -> None:
    assert table(allowed) in DESIGN, f"docs/design.md should show, verbatim:\n{table(allowed)}"


def section(title: str) -> str:
    found = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", DESIGN, re.S | re.M)
    assert found is not None, f"docs/design.md has no section {title!r}"
    return found.group(1)


def test_the_documented_messages_are_the_protocols() -> None:
    rows = re.findall(r"^\| `([a-z-]+)` \|", section("The sync's messages"), re.M)
    assert sorted(rows) == sorted(MESSAGES)


def test_every_file_the_doc_names_exists() -> None:
    named = set(re.findall(r"`((?:reloadd/|tests/|bench/|docs/)?[\w/]+\.(?:py|cjs|mjs|md))`", DESIGN))
    missing = [
        name
        for name in sorted(named)
        if not any((base / name).exists() for base in (ROOT, ROOT / "reloadd", ROOT / "reloadd" / "sync"))
    ]
    assert not missing, f"docs/design.md names files that do not exist: {missing}"
