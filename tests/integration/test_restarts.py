"""The installed reloadd on real node apps: restarts, grouping, crash/exit, stdin, whole-tree stops."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import psutil
import pytest
from support import Reloadd, free_port, make_app, served_version, starts, starts_reach, touch, wait_for

RunReloadd = Callable[..., Reloadd]
QUIET = 1.0  # seconds to watch for an extra restart that must not come (a bounded negative check)


def hold(app: Path, count: int, seconds: float = QUIET) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert len(starts(app)) == count, f"expected exactly {count} starts, got {len(starts(app))}"
        time.sleep(0.02)


def wait_starts(app: Path, count: int, runner: Reloadd) -> None:
    try:
        wait_for(lambda: len(starts(app)) >= count, what=f"{count} starts")
    except AssertionError as exc:
        raise AssertionError(f"{exc} (have {len(starts(app))}); log:\n{runner.log()}\n{runner.out()}") from None


# ---------------------------------------------------------------- grouping


def test_one_save_is_one_restart(app: Path, run_reloadd: RunReloadd) -> None:
    runner = run_reloadd(["server.js"], app)
    wait_starts(app, 1, runner)
    touch(app / "version.js", "module.exports = 'v2';\n")
    wait_starts(app, 2, runner)
    hold(app, 2)
    assert runner.log().count("restarting due to changes") == 1


def test_200_files_in_a_tight_loop_are_one_restart(app: Path, run_reloadd: RunReloadd) -> None:
    runner = run_reloadd(["server.js"], app)
    wait_starts(app, 1, runner)
    (app / "lib").mkdir()
    for index in range(200):
        (app / "lib" / f"m{index}.js").write_text(f"module.exports = {index};\n")
    wait_starts(app, 2, runner)
    hold(app, 2)


def test_a_checkout_over_100_new_nested_directories_is_one_restart(app: Path, run_reloadd: RunReloadd) -> None:
    runner = run_reloadd(["server.js"], app)
    wait_starts(app, 1, runner)
    directory = app / "src"
    for index in range(100):
        directory = directory / f"d{index}"
        directory.mkdir(parents=True)
        (directory / "index.js").write_text(f"module.exports = {index};\n")
    wait_starts(app, 2, runner)
    hold(app, 2)


def test_changes_while_the_old_tree_stops_join_that_restart(app: Path, run_reloadd: RunReloadd) -> None:
    # The app takes a while to stop (it handles SIGUSR2 by exiting after 600 ms). Changes made
    # while it stops are on disk before the next generation starts, so that one start serves
    # them: exactly one more start, not two, and it runs the newest code.
    server = (app / "server.js").read_text()
    (app / "server.js").write_text(server + "process.on('SIGUSR2', () => setTimeout(() => process.exit(0), 600));\n")
    runner = run_reloadd(["server.js"], app)
    wait_starts(app, 1, runner)
    touch(app / "version.js", "module.exports = 'v2';\n")
    runner.wait_log("restarting due to changes")  # the signal goes out with this line
    touch(app / "version.js", "module.exports = 'v3';\n")
    touch(app / "b.js")
    wait_starts(app, 2, runner)
    hold(app, 2)
    assert runner.log().count("starting `node server.js`") == 2, runner.log()
    assert "the next start includes it" not in runner.log()  # only said with -V
    wait_for(lambda: served_version(app) == "v3", what=f"v3 served; log:\n{runner.log()}")


@pytest.mark.parametrize("how", ["config", "cli"])
def test_delay_holds_the_restart_back(app: Path, run_reloadd: RunReloadd, how: str) -> None:
    if how == "config":
        (app / "nodemon.json").write_text('{"delay": 1500}')
        args = ["server.js"]
    else:
        args = ["-d", "1.5", "server.js"]
    runner = run_reloadd(args, app)
    wait_starts(app, 1, runner)
    began = time.monotonic()
    touch(app / "version.js")
    wait_starts(app, 2, runner)
    assert time.monotonic() - began >= 1.4, runner.log()


def test_ignored_paths_do_not_restart(app: Path, run_reloadd: RunReloadd) -> None:
    (app / "node_modules" / "dep").mkdir(parents=True)
    (app / "scratch").mkdir()
    runner = run_reloadd(["-i", "scratch/", "server.js"], app)
    wait_starts(app, 1, runner)
    touch(app / "node_modules" / "dep" / "index.js")
    touch(app / "scratch" / "x.js")
    touch(app / "notes.txt")  # not a watched extension
    hold(app, 1)
    touch(app / "version.js")
    wait_starts(app, 2, runner)


# ---------------------------------------------------------------- crash and clean exit


def test_crash_waits_for_a_change(app: Path, run_reloadd: RunReloadd) -> None:
    (app / "server.js").write_text(
        "require('fs').appendFileSync(__dirname + '/starts.log', '1\\n'); process.exit(3);\n"
    )
    runner = run_reloadd(["server.js"], app)
    runner.wait_log("app crashed - waiting for file changes before starting...")
    hold(app, 1)
    touch(app / "version.js")
    wait_starts(app, 2, runner)


def test_clean_exit_waits_for_a_change(app: Path, run_reloadd: RunReloadd) -> None:
    (app / "server.js").write_text("require('fs').appendFileSync(__dirname + '/starts.log', '1\\n');\n")
    runner = run_reloadd(["server.js"], app)
    runner.wait_log("clean exit - waiting for changes before restart")
    hold(app, 1)
    touch(app / "server.js", "require('fs').appendFileSync(__dirname + '/starts.log', '2\\n');\n")
    wait_starts(app, 2, runner)


# ---------------------------------------------------------------- stdin, signals, output


def test_rs_restarts_and_other_input_reaches_the_app(app: Path, run_reloadd: RunReloadd) -> None:
    echo = "process.stdin.on('data', d => require('fs').appendFileSync(__dirname + '/stdin.log', d));\n"
    (app / "server.js").write_text((app / "server.js").read_text() + echo)
    runner = run_reloadd(["server.js"], app, stdin=subprocess.PIPE)
    wait_starts(app, 1, runner)
    assert runner.proc.stdin is not None
    runner.proc.stdin.write(b"hello app\n")
    runner.proc.stdin.flush()
    wait_for(lambda: (app / "stdin.log").exists() and "hello app" in (app / "stdin.log").read_text())
    runner.proc.stdin.write(b"rs\n")
    runner.proc.stdin.flush()
    wait_starts(app, 2, runner)


def test_no_stdin_gives_the_app_reloadds_stdin(app: Path, run_reloadd: RunReloadd) -> None:
    probe = (
        "const kind = require('fs').fstatSync(0).isFIFO() ? 'pipe' : 'other';\n"
        "require('fs').writeFileSync(__dirname + '/stdin.kind', kind);\n"
    )
    (app / "server.js").write_text((app / "server.js").read_text() + probe)
    with open(app / "input.txt", "w") as handle:
        handle.write("data\n")
    with open(app / "input.txt", "rb") as handle:
        runner = run_reloadd(["-I", "server.js"], app, stdin=handle.fileno())
        wait_for(lambda: (app / "stdin.kind").exists() and (app / "stdin.kind").read_text(), what=runner.log())
    assert (app / "stdin.kind").read_text() == "other"  # the file itself, not a pipe from reloadd
    assert "enter `rs`" not in runner.log()


def test_sighup_restarts(app: Path, run_reloadd: RunReloadd) -> None:
    runner = run_reloadd(["server.js"], app)
    wait_starts(app, 1, runner)
    runner.signal(signal.SIGHUP)
    wait_starts(app, 2, runner)


@pytest.mark.parametrize(
    ("sig", "handler", "status"),
    [
        (signal.SIGINT, "process.on('SIGINT', () => process.exit(0));", 0),
        (signal.SIGTERM, "process.on('SIGTERM', () => process.exit(5));", 5),
        (signal.SIGTERM, "", 128 + signal.SIGTERM),
    ],
)
def test_stop_signals_end_with_the_apps_status(
    app: Path, run_reloadd: RunReloadd, sig: int, handler: str, status: int
) -> None:
    (app / "server.js").write_text((app / "server.js").read_text() + handler + "\n")
    runner = run_reloadd(["server.js"], app)
    wait_for(lambda: (app / "port").exists(), what=runner.log())
    pid = starts(app)[0]
    runner.signal(sig)
    assert runner.wait_exit() == status, runner.log()
    assert not psutil.pid_exists(pid)


def test_exitcrash_exits_with_the_apps_status(app: Path, run_reloadd: RunReloadd) -> None:
    (app / "server.js").write_text("process.exit(9);\n")
    runner = run_reloadd(["--exitcrash", "server.js"], app)
    assert runner.wait_exit() == 9


def test_verbose_lists_changed_files_and_quiet_prints_nothing(app: Path, run_reloadd: RunReloadd) -> None:
    loud = run_reloadd(["-V", "server.js"], app)
    wait_starts(app, 1, loud)
    touch(app / "version.js")
    loud.wait_log("changed: version.js")
    loud.stop()
    quiet_app = make_app(app.parent / "quiet")
    quiet = run_reloadd(["-q", "server.js"], quiet_app)
    wait_starts(quiet_app, 1, quiet)
    touch(quiet_app / "version.js")
    wait_starts(quiet_app, 2, quiet)
    assert "[reloadd]" not in quiet.log(), quiet.log()


def test_startup_lines_match_nodemons(app: Path, run_reloadd: RunReloadd) -> None:
    runner = run_reloadd(["server.js"], app, stdin=subprocess.PIPE)
    log = runner.wait_log("starting `node server.js`")
    for line in (
        "[reloadd] watching path(s): *.*",
        "[reloadd] watching extensions: js,mjs,cjs,json",
        "[reloadd] to restart at any time, enter `rs`",
    ):
        assert line in log, log


def test_json_log_format(app: Path, run_reloadd: RunReloadd) -> None:
    runner = run_reloadd(["--log-format", "json", "server.js"], app)
    wait_starts(app, 1, runner)
    runner.wait_log("starting")
    records = [json.loads(line) for line in runner.log().splitlines() if line.startswith("{")]
    assert records and all({"ts", "level", "msg"} <= set(r) for r in records), runner.log()


# ---------------------------------------------------------------- whole process trees

LISTEN_ON_PORT = """\
const http = require('http');
const fs = require('fs');
fs.appendFileSync(__dirname + '/pids.log', process.pid + '\\n');
fs.appendFileSync(__dirname + '/starts.log', process.pid + '\\n');
http.createServer((q, s) => s.end('ok')).listen(Number(process.env.PORT), '127.0.0.1');
"""


def tree_app(root: Path, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "server.js").write_text(LISTEN_ON_PORT + extra)
    return root


def recorded_pids(app: Path) -> list[int]:
    log = app / "pids.log"
    return [int(p) for p in log.read_text().split()] if log.exists() else []


def waiting_warm_process(proc: psutil.Process, app: Path) -> bool:
    """The next generation's node, waiting to run the app (warm restarts): not part of the old tree.

    Its command line is the app's; the environment it started with names reloadd's preload."""
    try:
        started_app = proc.pid in recorded_pids(app)
        return not started_app and "warm_boot.cjs" in proc.environ().get("NODE_OPTIONS", "")
    except psutil.Error:
        return False


def assert_old_tree_gone(app: Path, runner: Reloadd, old: list[int]) -> None:
    alive = [pid for pid in old if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"old tree survived: {alive}\n{runner.log()}"
    text = runner.log() + runner.out()
    assert "EADDRINUSE" not in text and "address already in use" not in text, text


SETSID_GRANDCHILD = """
if (!process.env.GRANDCHILD) {
  require('child_process').spawn('setsid', [process.execPath, __filename],
    { env: { ...process.env, GRANDCHILD: '1', PORT: String(Number(process.env.PORT) + 1) }, stdio: 'ignore' });
}
"""
IGNORES_EVERYTHING = "process.on('SIGUSR2', () => {}); process.on('SIGTERM', () => {});\n"


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["--", "sh", "-c", "node server.js; echo done"], ""),
        (["--", "npm", "run", "dev"], ""),
        (["--", "node", "server.js"], SETSID_GRANDCHILD),
        (["--stop-timeout", "1", "--", "node", "server.js"], IGNORES_EVERYTHING),
        (["--stop-timeout", "1", "--", "node", "server.js"], SETSID_GRANDCHILD + IGNORES_EVERYTHING),
    ],
    ids=["sh-wrapper", "npm-run", "setsid-grandchild", "ignores-signals", "setsid-and-ignores"],
)
def test_no_process_of_the_old_tree_survives_a_restart(
    tmp_path: Path, run_reloadd: RunReloadd, args: list[str], extra: str
) -> None:
    app = tree_app(tmp_path / "app", extra)
    (app / "package.json").write_text(json.dumps({"name": "t", "scripts": {"dev": "node server.js"}}))
    port = free_port()
    runner = run_reloadd(args, app, env={"PORT": str(port)})
    expected = 2 if "GRANDCHILD" in extra else 1
    wait_for(lambda: len(recorded_pids(app)) >= expected, what=runner.log())
    for _ in range(3):
        old = psutil.Process(runner.pid).children(recursive=True)
        old_pids = [p.pid for p in old if not waiting_warm_process(p, app)]
        before = len(recorded_pids(app))
        touch(app / "version.js")
        grown = functools.partial(lambda b: len(recorded_pids(app)) >= b + expected, before)
        wait_for(grown, timeout=15, what=runner.log())
        assert_old_tree_gone(app, runner, old_pids)
    if IGNORES_EVERYTHING in extra:
        assert "SIGKILL" in runner.log()


def test_a_double_forked_daemon_is_stopped_with_its_generation(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    app = tree_app(tmp_path / "app")
    daemon = "sh -c '(sleep 300 & echo $! > daemon.pid) &'; exec node server.js"
    port = free_port()
    runner = run_reloadd(["--", "sh", "-c", daemon], app, env={"PORT": str(port)})
    wait_for(lambda: (app / "daemon.pid").exists() and (app / "daemon.pid").read_text().strip(), what=runner.log())
    daemon_pid = int((app / "daemon.pid").read_text())
    wait_for(lambda: len(recorded_pids(app)) >= 1)
    touch(app / "version.js")
    wait_for(
        lambda: not psutil.pid_exists(daemon_pid) or psutil.Process(daemon_pid).status() == "zombie",
        what=f"the daemon stopped with its generation\n{runner.log()}",
    )
    assert os.getsid(runner.pid) == runner.pid  # sanity: the test started reloadd in its own session


@pytest.mark.parametrize("args", [["later.js"], ["--", "node", "later.js"]])
def test_a_script_that_is_not_there_yet_is_started_once_it_appears(
    tmp_path: Path, run_reloadd: RunReloadd, args: list[str]
) -> None:
    """In a dev pod the code may arrive after the container starts: reloadd says so and waits for it."""
    app = make_app(tmp_path / "app")
    runner = run_reloadd(args, app)
    runner.wait_log("later.js does not exist (yet): it starts when it appears")
    shutil.copy(app / "server.js", app / "later.js")
    wait_for(lambda: len(starts(app)) == 1, what=f"the script to start once it appeared; log:\n{runner.log()}")
    # One line of reloadd's, not node's "Cannot find module" trace and a crash before the file came.
    assert "Cannot find module" not in runner.log() + runner.out() and "crashed" not in runner.log(), runner.log()


def test_a_quick_restart_says_what_nodemon_says_and_no_more(app: Path, run_reloadd: RunReloadd) -> None:
    """nodemon prints two lines per restart ("restarting due to changes...", "starting ..."); so does reloadd."""
    runner = run_reloadd(["server.js"], app)
    wait_for(starts_reach(app, 1), what=f"the first start; log:\n{runner.log()}")
    runner.wait_log("starting `node server.js`")
    before = runner.log()
    touch(app / "version.js", "module.exports = 'v2';\n")
    wait_for(lambda: served_version(app) == "v2", what=f"v2 served; log:\n{runner.log()}")
    runner.wait_log("starting `node server.js`", count=2)
    assert runner.log()[len(before) :].splitlines() == [
        "[reloadd] restarting due to changes...",
        "[reloadd] starting `node server.js`",
    ], runner.log()


def test_a_stop_names_one_pid_as_a_pid(app: Path, run_reloadd: RunReloadd) -> None:
    runner = run_reloadd(["--no-warm", "server.js"], app)
    wait_for(starts_reach(app, 1), what=f"the first start; log:\n{runner.log()}")
    runner.signal(signal.SIGTERM)
    runner.wait_exit()
    log = runner.log()
    assert re.search(r"sending SIGTERM to 1 process \(pid \d+\): SIGTERM received", log), log
    assert "the process exited after" in log and "pids" not in log and "all 1" not in log, log
