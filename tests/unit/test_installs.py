"""Which synced changes run which install command in the pod (sync/installs.py), the onChange rules as
they cross the wire, and the laptop's line for an install: pure logic, no processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reloadd.sync.laptop.live import Sent, describe
from reloadd.sync.pod.handlers import _on_change
from reloadd.sync.pod.installs import DEFAULT_RULES, Installer, Rule, matching, rules_from_wire
from reloadd.sync.shared.messages import Live
from reloadd.sync.shared.schema import ProtocolError


@pytest.mark.parametrize(
    ("lockfiles", "command"),
    [
        (["package-lock.json"], "npm ci"),
        (["npm-shrinkwrap.json"], "npm ci"),
        (["yarn.lock"], "yarn install --frozen-lockfile"),
        (["pnpm-lock.yaml"], "pnpm install --frozen-lockfile"),
        ([], "npm install"),
        (["package-lock.json", "yarn.lock"], "npm ci"),
    ],
)
def test_the_default_command_follows_the_lockfile(tmp_path: Path, lockfiles: list[str], command: str) -> None:
    for name in lockfiles:
        (tmp_path / name).write_text("")
    assert DEFAULT_RULES[0].command(str(tmp_path)) == command


@pytest.mark.parametrize(
    ("changed", "runs"),
    [
        (["package.json"], True),
        (["yarn.lock", "src/a.js"], True),
        (["pnpm-lock.yaml"], True),
        (["src/a.js", "README.md"], False),
        (["packages/web/package.json"], False),  # another package's manifest: not the project's
        ([], False),
    ],
)
def test_the_default_rule_is_the_projects_manifest_and_lockfiles(
    tmp_path: Path, changed: list[str], runs: bool
) -> None:
    assert bool(matching(DEFAULT_RULES, str(tmp_path), changed)) is runs


def test_configured_rules_run_in_order_each_once(tmp_path: Path) -> None:
    first, second, other = Rule(("schema/**",), "migrate"), Rule(("*.proto",), "gen"), Rule(("x",), "never")
    found = matching([first, second, other], str(tmp_path), ["api.proto", "schema/1.sql", "schema/2.sql"])
    assert found == [first, second]


def test_rules_cross_the_wire_checked() -> None:
    assert rules_from_wire(None) == DEFAULT_RULES
    assert rules_from_wire(_on_change([[["package.json"], "npm i", 30]])) == (Rule(("package.json",), "npm i", 30.0),)
    assert rules_from_wire(_on_change([])) == ()  # configured as none: nothing runs
    bad: list[Any] = [
        "npm ci",
        [["package.json"], "npm ci"],
        [[[], "npm ci", 30]],
        [[["package.json"], "  ", 30]],
        [[["package.json"], "npm ci", 0]],
        [[["package.json"], "npm ci", True]],
        [[["package.json"], "npm ci", 1e9]],
        [[[1], "npm ci", 30]],
    ]
    for value in bad:
        with pytest.raises(ProtocolError):
            _on_change(value)


def test_an_install_is_named_in_the_live_line() -> None:
    sent = Sent(began=0.0, done=0.01, files=2, deleted=0)
    restarted: Live = {"t": "live", "id": 1, "what": "restarted", "ms": 40, "installed": "npm ci", "install_ms": 3200}
    assert (
        describe("pod/web", sent, restarted, "/app")[1]
        == "pod/web: 2 files → installed (npm ci, 3.2 s), restarted in 50 ms"
    )
    lines = [f"npm ERR! line {n}" for n in range(15)]
    failed: Live = {"t": "live", "id": 1, "what": "install-failed", "command": "npm ci", "status": 1, "lines": lines}
    level, line, shown = describe("pod/web", sent, failed, "/app")
    assert (level, line) == (
        "error",
        "pod/web: 2 files → npm ci failed (exit status 1); the app keeps running the previous code",
    )
    assert shown == lines[-10:]
    timed_out: Live = {"t": "live", "id": 1, "what": "install-failed", "command": "npm ci", "lines": []}
    assert "npm ci failed (timed out)" in describe("pod/web", sent, timed_out, "/app")[1]


@pytest.mark.parametrize(
    ("written", "owed"),
    [
        (None, False),  # nothing written: nothing owed
        ('[[["./deps.txt"], "make deps", 600.0]]', True),
        ('[[["./other.txt"], "make other", 600.0]]', False),  # a rule the laptop no longer sends
        ("null", False),
        ("garbage", False),
        ('[["x"]]', False),
        ("[[1, 2, 3]]", False),
        ('[[["a"], "run", "soon"]]', False),
    ],
)
def test_an_owed_command_is_resumed_only_when_written_whole_and_still_a_rule(
    tmp_path: Path, written: str, owed: bool
) -> None:
    record = tmp_path / "control" / "owed.json"
    record.parent.mkdir(mode=0o700)
    if written is not None:
        record.write_text(written)
    said: list[dict[str, Any]] = []
    installer = Installer(str(tmp_path), said.append, lambda *args: None, record)
    installer.rules = (Rule(("./deps.txt",), "make deps"),)
    assert installer.resume() is owed
    assert installer.failed == (list(installer.rules) if owed else [])
    told = ["make deps did not finish in an earlier session: running it again"] if owed else []
    assert [message["line"] for message in said] == told
    assert installer.resume() is False  # a second start in the same session owes nothing new
    assert len(said) == len(told)
