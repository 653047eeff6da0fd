"""Hostile names and addresses: a script name with shell syntax is never run as shell, and every
spelling of "all interfaces" for the inspector gets the warning."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from support import Reloadd, free_port, starts, wait_for

RunReloadd = Callable[..., Reloadd]

RECORD_START = "require('fs').appendFileSync(__dirname + '/starts.log', process.pid + '\\n');\n"


def test_a_script_name_with_shell_syntax_is_quoted_in_a_shell_command(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    app = tmp_path / "app"
    app.mkdir()
    script = "a;touch x;.js"
    (app / script).write_text(RECORD_START)
    runner = run_reloadd(["-x", 'sh -c "node {{filename}}"', script], app)
    wait_for(lambda: starts(app), what=f"the script to run; log:\n{runner.log()}")
    assert not (app / "x").exists(), "the name was run as shell: `touch x` ran"


# 0.0.0.0 and :: as node reads them (inet_aton shorthands, IPv6 zero runs); 127.0.0.1 must not warn.
ALL_INTERFACES = ["0.0.0.0", "0", "0.0", "[::0]", "[::]", "[0:0::0]"]


@pytest.mark.parametrize("host", ALL_INTERFACES)
def test_every_spelling_of_all_interfaces_gets_the_inspector_warning(
    app: Path, run_reloadd: RunReloadd, host: str
) -> None:
    # -C: the app (and so node's inspector) never starts; the warning comes at startup.
    runner = run_reloadd(["-C", f"--inspect={host}:{free_port()}", "--", "node", "server.js"], app)
    log = runner.wait_log("waiting for the first change")
    (line,) = [line for line in log.splitlines() if "inspector listens on" in line]
    assert "every interface" in line and "run code" in line, log


def test_a_loopback_inspector_gets_no_warning(app: Path, run_reloadd: RunReloadd) -> None:
    runner = run_reloadd(["-C", f"--inspect=127.0.0.1:{free_port()}", "--", "node", "server.js"], app)
    log = runner.wait_log("waiting for the first change")
    assert "inspector listens on" not in log, log
