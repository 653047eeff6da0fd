# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""The production guard: ``reloadd agent`` refuses to write into a production container, the laptop
side stops on that answer, and a supervisor in production opens no sync channel."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support import free_port, make_app, reloadd_argv, wait_for
from sync_support import control_env

from reloadd.setup.production import EXIT_REFUSED
from reloadd.sync.shared.protocol import FrameReader

ALLOWED, REFUSED = "allowed", "refused"
PRODUCTION_LINE = "refusing to sync: NODE_ENV=production (set RELOADD_SYNC=1 in the container to allow)"
SWITCH_LINE = "refusing to sync: RELOADD_SYNC=0"

COMBINATIONS = [
    ({}, ALLOWED, ""),
    ({"NODE_ENV": "development"}, ALLOWED, ""),
    ({"NODE_ENV": "production"}, REFUSED, PRODUCTION_LINE),
    ({"NODE_ENV": "Production"}, REFUSED, PRODUCTION_LINE),  # any case, trimmed: production means production
    ({"NODE_ENV": " PRODUCTION\n"}, REFUSED, PRODUCTION_LINE),
    ({"NODE_ENV": "production-like"}, ALLOWED, ""),
    ({"NODE_ENV": "production", "RELOADD_WATCH": "1"}, ALLOWED, ""),  # the supervisor's own "watch anyway"
    ({"NODE_ENV": "production", "RELOADD_WATCH": "0"}, REFUSED, PRODUCTION_LINE),
    ({"NODE_ENV": "production", "RELOADD_SYNC": "1"}, ALLOWED, ""),
    ({"NODE_ENV": "production", "RELOADD_SYNC": "0"}, REFUSED, SWITCH_LINE),
    ({"NODE_ENV": "production", "RELOADD_WATCH": "1", "RELOADD_SYNC": "0"}, REFUSED, SWITCH_LINE),
    ({"RELOADD_SYNC": "0"}, REFUSED, SWITCH_LINE),
    ({"RELOADD_SYNC": "1"}, ALLOWED, ""),
]


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NODE_ENV", "RELOADD_WATCH", "RELOADD_SYNC")}
    return {**env, "NO_COLOR": "1", **extra}


@pytest.mark.parametrize(("variables", "expected", "line"), COMBINATIONS, ids=[str(c[0]) for c in COMBINATIONS])
def test_the_agent_follows_the_production_rule(
    tmp_path: Path, variables: dict[str, str], expected: str, line: str
) -> None:
    done = subprocess.run(
        reloadd_argv() + ["agent", str(tmp_path)], input=b"", capture_output=True, env=clean_env(variables), timeout=30
    )
    (first,) = FrameReader().feed(done.stdout)[:1]
    assert isinstance(first, dict), first
    if expected == ALLOWED:
        assert (done.returncode, first["t"]) == (0, "hello"), done.stderr
    else:
        assert done.returncode == EXIT_REFUSED
        assert first == {"t": "refused", "message": line}
        assert done.stderr == b""  # the laptop prints the line; nothing else reaches the user's terminal


def test_a_bad_switch_value_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(reloadd_argv() + ["agent", str(tmp_path)], input=b"", capture_output=True,
                          env=clean_env({"RELOADD_SYNC": "maybe"}), timeout=30)  # fmt: skip
    assert done.returncode == 2


@pytest.mark.parametrize("variables", [{"NODE_ENV": "production"}, {"RELOADD_SYNC": "0"}])
def test_the_laptop_stops_on_a_refusal_with_the_one_line(
    run_reloadd, tmp_path: Path, variables: dict[str, str]
) -> None:
    laptop = make_app(tmp_path / "laptop")
    pod = tmp_path / "pod"
    pod.mkdir()
    assignments = " ".join(f"{k}={v}" for k, v in variables.items())
    sync = run_reloadd(["sync", str(laptop), "--transport", f"env {assignments}", "--to", str(pod)], laptop,
                       env=control_env(tmp_path))  # fmt: skip
    assert sync.wait_exit() == EXIT_REFUSED
    expected = PRODUCTION_LINE if "NODE_ENV" in variables else SWITCH_LINE
    assert f"[reloadd] {pod}: {expected}\n" in sync.log()
    assert "reconnecting" not in sync.log() and os.listdir(pod) == []


@pytest.mark.parametrize(
    ("variables", "opens"),
    [
        ({}, True),
        ({"NODE_ENV": "production"}, False),  # not watching: an init, no channel
        ({"NODE_ENV": "production", "RELOADD_WATCH": "1"}, True),
        ({"RELOADD_SYNC": "0"}, False),
    ],
)
def test_a_supervisor_in_production_opens_no_channel(
    run_reloadd, tmp_path: Path, variables: dict[str, str], opens: bool
) -> None:
    app = make_app(tmp_path / "app")
    port = free_port()
    env = {**control_env(tmp_path), "PORT": str(port), **variables}
    runner = run_reloadd(["server.js"], app, env=env)
    wait_for(lambda: (app / "port").exists(), what=f"the app listening:\n{runner.log()}")
    sockets = [name for name in os.listdir(tmp_path / "control") if name.endswith(".sock")]
    assert bool(sockets) is opens, runner.log()
