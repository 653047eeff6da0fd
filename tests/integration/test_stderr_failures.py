"""reloadd's own log lines never take the app down: a full disk or a terminal that went away
loses the lines, a non-blocking stderr that an app floods delays them, and supervision goes on."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from support import Reloadd, make_app, session_processes, starts, starts_reach, touch, wait_for

RunReloadd = Callable[..., Reloadd]


def restart_then_stop(app: Path, runner: Reloadd) -> int:
    """One change restarts the app; SIGTERM then ends reloadd and the app's whole tree."""
    wait_for(lambda: len(starts(app)) >= 1, what="the first start")
    first = starts(app)[0]
    touch(app / "version.js", "module.exports = 'v2';\n")
    wait_for(lambda: len(starts(app)) >= 2, what="a restart after the change")
    assert runner.proc.poll() is None
    runner.signal(signal.SIGTERM)
    status = runner.wait_exit()
    wait_for(lambda: not session_processes(runner.pid), what="the app's tree to be gone")
    assert not any(os.path.exists(f"/proc/{pid}") for pid in (first, *starts(app)))
    return status


def test_a_full_disk_under_stderr_loses_log_lines_not_the_app(app: Path, run_reloadd: RunReloadd) -> None:
    fd = os.open("/dev/full", os.O_WRONLY)  # every write fails with ENOSPC
    try:
        runner = run_reloadd(["server.js"], app, stderr=fd)
    finally:
        os.close(fd)
    assert restart_then_stop(app, runner) in (0, 128 + signal.SIGTERM)


def test_a_terminal_that_went_away_loses_log_lines_not_the_app(app: Path, run_reloadd: RunReloadd) -> None:
    """stderr on a pty whose master was closed: writes fail with EIO. reloadd runs in its own
    session without that pty as controlling terminal, so the hangup sends it no SIGHUP."""
    master, slave = os.openpty()
    try:
        runner = run_reloadd(["server.js"], app, stderr=slave)
    finally:
        os.close(slave)
    reader = threading.Thread(target=drain, args=(master, bytearray()), daemon=True)
    reader.start()
    wait_for(lambda: len(starts(app)) >= 1, what="the first start")
    os.close(master)  # the terminal goes away (the reader then stops with EBADF)
    # reloadd passes on the app's status. A node started while the terminal was still there (a
    # warm process is) aborts on SIGTERM when it cannot restore the dead terminal's mode: 134.
    assert restart_then_stop(app, runner) in (0, 128 + signal.SIGTERM, 128 + signal.SIGABRT)


def drain(fd: int, into: bytearray, pause: float = 0.0) -> None:
    """Read ``fd`` until EOF (or it is closed), ``pause`` seconds between reads of at most 4 KB."""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        if not data:
            return
        into += data
        if pause:
            time.sleep(pause)


# Floods stderr as fast as the pipe takes it. Node makes its stderr pipe non-blocking, and the
# flag is on the pipe's open file, which reloadd shares: reloadd's writes hit EAGAIN too.
FLOOD_APP = """\
require('fs').appendFileSync(__dirname + '/starts.log', process.pid + '\\n');
const chunk = 'x'.repeat(16383) + '\\n';
setInterval(() => { while (process.stderr.writableLength < 1 << 20) process.stderr.write(chunk); }, 2);
"""
RESTARTS = 5


@pytest.mark.parametrize("passed_on", [False, True], ids=["shared", "passed-on"])
def test_a_non_blocking_stderr_flooded_by_the_app_still_gets_every_line(
    tmp_path: Path, run_reloadd: RunReloadd, passed_on: bool
) -> None:
    """shared: the app writes to reloadd's own stderr and makes it non-blocking. passed-on: reloadd
    takes synced batches, so the app's stderr is a pipe reloadd copies on (app_output.py)."""
    app = make_app(tmp_path / "app", server_js=FLOOD_APP)
    read_end, write_end = os.pipe()
    control = tmp_path / "control"
    control.mkdir(mode=0o700)
    env = {"RELOADD_CONTROL_DIR": str(control)} if passed_on else {"RELOADD_SYNC": "0"}  # no sync channel
    try:
        runner = run_reloadd(["server.js"], app, stderr=write_end, env=env)
    finally:
        os.close(write_end)
    received = bytearray()
    reader = threading.Thread(target=drain, args=(read_end, received, 0.002), daemon=True)
    reader.start()
    try:
        for count in range(2, RESTARTS + 2):
            wait_for(starts_reach(app, count - 1), what=f"start {count - 1}")
            flags = Path(f"/proc/{runner.pid}/fdinfo/2").read_text()
            touch(app / "version.js")
            wait_for(starts_reach(app, count), what=f"restart {count - 1}")
        runner.signal(signal.SIGTERM)
        runner.wait_exit()
        reader.join(30)
    finally:
        os.close(read_end)
    non_blocking = bool(int(flags.split("flags:")[1].split()[0], 8) & os.O_NONBLOCK)
    assert non_blocking != passed_on, "the app made its own stderr non-blocking, which is reloadd's only if shared"
    assert received.count(b"[reloadd] restarting due to changes") == RESTARTS, received.count(b"[reloadd]")
    assert received.count(b"[reloadd] starting `node server.js`") == RESTARTS + 1
