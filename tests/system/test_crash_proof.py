"""reloadd never dies leaving the app behind: a failure inside reloadd itself (a bug, injected
here into the real program by a wrapper) stops the app's whole tree, then exits 70."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import psutil
import pytest
from support import Reloadd, starts, touch, wait_for

RunReloadd = Callable[..., Reloadd]
EXIT_INTERNAL = 70

# Runs the installed reloadd with one method made to raise once the file `fail-now` exists in
# its working directory: the same program, signals and processes, with a bug where and when
# the test puts it.
FAULTY = """\
import os
import sys
import reloadd.supervise.loop as supervisor

original = getattr(supervisor.Supervisor, sys.argv[1])

def broken(*args, **kwargs):
    if os.path.exists("fail-now"):
        raise ZeroDivisionError("injected fault")
    return original(*args, **kwargs)

setattr(supervisor.Supervisor, sys.argv[1], broken)
sys.argv = ["reloadd", *sys.argv[3:]]  # drop the method name and the console script path
from reloadd.__main__ import main
main()
"""

# The app starts a grandchild in a session of its own (as a daemonising helper would): it
# must go too.
SERVER_WITH_HELPER = """\
const { spawn } = require('child_process');
const fs = require('fs');
const helper = spawn('sleep', ['1000'], { detached: true, stdio: 'ignore' });
fs.appendFileSync('starts.log', process.pid + '\\n');
fs.writeFileSync('helper.pid', String(helper.pid));
setInterval(() => {}, 1000);
"""


def faulty(run_reloadd: RunReloadd, cwd: Path, method: str, args: list[str]) -> Reloadd:
    wrapper = cwd.parent / "faulty.py"
    wrapper.write_text(FAULTY)
    return run_reloadd([*args], cwd, prefix=[sys.executable, str(wrapper), method])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("method", ["_may_stop_early", "handle_timers"])
def test_a_failure_inside_reloadd_stops_the_whole_tree_then_exits_70(
    tmp_path: Path, run_reloadd: RunReloadd, method: str
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "server.js").write_text(SERVER_WITH_HELPER)
    runner = faulty(run_reloadd, app, method, ["server.js"])
    wait_for(lambda: starts(app) and (app / "helper.pid").exists(), what="the app and its helper")
    node, helper = starts(app)[0], int((app / "helper.pid").read_text())
    (app / "fail-now").write_text("")
    if method == "_may_stop_early":
        touch(app / "server.js", SERVER_WITH_HELPER)  # the fault fires when the burst is handled
    assert runner.wait_exit() == EXIT_INTERNAL, runner.log()
    assert gone(node) and gone(helper), f"left behind: node {node}, helper {helper}\n{runner.log()}"
    log = runner.log()
    assert "stopping the app before exiting" in log
    assert "internal error: ZeroDivisionError: injected fault" in log
    assert "Traceback" not in log  # only with --verbose
