"""Inspector, event hooks, config reload and soft reload, on real node apps."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable, Optional

import psutil
import pytest
from fs_support import hold
from support import Reloadd, free_port, greeting, reloadd_argv, starts, starts_reach, touch, wait_for

RunReloadd = Callable[..., Reloadd]


def inspector_version(port: int) -> Optional[dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=1) as response:
            return dict(json.loads(response.read()))
    except OSError:
        return None


# ---------------------------------------------------------------- inspector


def test_inspector_survives_20_quick_restarts(app: Path, run_reloadd: RunReloadd) -> None:
    port = free_port()
    runner = run_reloadd([f"--inspect=127.0.0.1:{port}", "--", "node", "server.js"], app)
    # node opens its inspector before it runs server.js: on a loaded machine a change made as
    # soon as the inspector answers restarted the first app before it wrote starts.log, and
    # the count stalled at "restart 2" with reloadd doing the right thing. Wait for both.
    wait_for(starts_reach(app, 1), what=f"the first start; log:\n{runner.log()}")
    wait_for(lambda: inspector_version(port), what=f"the inspector; log:\n{runner.log()}")
    for count in range(2, 22):
        touch(app / "version.js")
        if count % 5 == 0:
            touch(app / "version.js", "module.exports = 'again';\n")  # back to back, no wait in between
        wait_for(starts_reach(app, count), what=f"restart {count}; log:\n{runner.log()}")
        wait_for(lambda: inspector_version(port), what=f"the inspector after restart {count}")
    text = runner.log() + runner.out()
    assert "address already in use" not in text.lower() and "EADDRINUSE" not in text, text


def test_inspect_written_the_nodemon_way_reaches_node(app: Path, run_reloadd: RunReloadd) -> None:
    port = free_port()
    runner = run_reloadd([f"--inspect=127.0.0.1:{port}", "server.js"], app)
    wait_for(lambda: inspector_version(port), what=f"the inspector; log:\n{runner.log()}")
    assert f"node --inspect=127.0.0.1:{port} server.js" in runner.log()


def test_bare_inspect_is_loopback_9229(app: Path) -> None:
    dump = subprocess.run(
        [*reloadd_argv(), "--inspect", "--dump", "--", "node", "server.js"], cwd=app, capture_output=True, check=True
    )
    assert json.loads(dump.stdout)["command"][:2] == ["node", "--inspect=127.0.0.1:9229"]


def test_inspect_with_a_program_that_is_not_node_is_a_usage_error(app: Path) -> None:
    done = subprocess.run([*reloadd_argv(), "--inspect", "--", "sh", "-c", "true"], cwd=app, capture_output=True)
    assert done.returncode == 2
    assert "NODE_OPTIONS" in done.stderr.decode() and "Traceback" not in done.stderr.decode()


def test_inspector_on_all_interfaces_warns(app: Path, run_reloadd: RunReloadd) -> None:
    port = free_port()
    runner = run_reloadd([f"--inspect=0.0.0.0:{port}", "--", "node", "server.js"], app)
    log = runner.wait_log("0.0.0.0")
    assert "inspector" in log and "run code" in log, log


# ---------------------------------------------------------------- events

RECORD = 'echo "$RELOADD_EVENT pid=$RELOADD_CHILD_PID code=$RELOADD_EXIT_CODE greeting=$GREETING" >> events.log'


def events(app: Path) -> list[str]:
    log = app / "events.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def test_events_fire_once_each_in_nodemons_order(app: Path, run_reloadd: RunReloadd) -> None:
    names = ["start", "restart", "crash", "exit", "quit", "config:update"]
    config = {"env": {"GREETING": "hi"}, "events": {name: RECORD for name in names}}
    config["events"]["restart"] = RECORD + '; printf "%s" "$RELOADD_CHANGED" > changed.txt'
    (app / "nodemon.json").write_text(json.dumps(config))
    runner = run_reloadd(["server.js"], app)
    wait_for(lambda: events(app) == ["start"], what=f"start event; log:\n{runner.log()}")
    touch(app / "version.js")
    wait_for(lambda: events(app) == ["start", "restart", "exit", "start"], what=f"restart events: {events(app)}")
    assert (app / "changed.txt").read_text() == str(app / "version.js")
    assert "greeting=hi" in (app / "events.log").read_text()
    (app / "server.js").write_text("process.exit(3);\n")
    wait_for(lambda: "crash" in events(app), what=f"crash event: {events(app)}")
    assert "code=3" in (app / "events.log").read_text().splitlines()[-1]
    runner.signal(15)
    runner.wait_exit()
    assert events(app).count("quit") == 1, events(app)
    assert events(app).count("start") == 3, events(app)


def test_a_hanging_or_failing_hook_never_holds_restarts_back(app: Path, run_reloadd: RunReloadd) -> None:
    hooks = {"restart": "echo $$ > hang.pid; sleep 1000", "start": "exit 3"}
    (app / "nodemon.json").write_text(json.dumps({"events": hooks, "eventTimeout": 1}))
    runner = run_reloadd(["server.js"], app)
    wait_for(lambda: len(starts(app)) == 1)
    runner.wait_log("failed with status 3")
    for count in (2, 3):
        began = time.monotonic()
        touch(app / "version.js")
        wait_for(starts_reach(app, count), what=runner.log())
        assert time.monotonic() - began < 3
    hook_pid = int((app / "hang.pid").read_text())
    wait_for(lambda: gone(hook_pid), timeout=4)
    runner.wait_log("killed after 1s timeout")
    sleepers = [p.pid for p in psutil.Process(runner.pid).children(recursive=True) if named(p, "sleep")]
    wait_for(lambda: all(gone(pid) for pid in sleepers), timeout=4)


def gone(pid: int) -> bool:
    """Exited (a zombie counts: it runs nothing), whenever psutil looks."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def named(proc: psutil.Process, name: str) -> bool:
    """Whether ``proc`` runs ``name``; one that exited meanwhile (warm and hook processes come and go) does not."""
    try:
        return proc.name() == name
    except psutil.NoSuchProcess:
        return False


# ---------------------------------------------------------------- config reload

ENV_APP = """\
const http = require('http');
require('fs').appendFileSync(__dirname + '/starts.log', process.pid + '\\n');
http.createServer((q, s) => s.end(String(process.env.GREETING))).listen(Number(process.env.PORT), '127.0.0.1');
"""


def check_reload(app: Path, runner: Reloadd, port: int, write: Callable[[str], None], broken: str) -> None:
    wait_for(lambda: greeting(port) == "one", what=runner.log())
    write("two")
    wait_for(lambda: greeting(port) == "two", what=f"the new env served; log:\n{runner.log()}")
    assert "config reloaded" in runner.log()
    pid = starts(app)[-1]
    (app / broken.split("|")[0]).write_text(broken.split("|")[1])
    runner.wait_log("config not reloaded")
    time.sleep(0.5)  # bounded negative check: the app must keep running with the old config
    assert starts(app)[-1] == pid and greeting(port) == "two", runner.log()
    write("three")
    wait_for(lambda: greeting(port) == "three", what=runner.log())


def test_editing_nodemon_json_reloads_it(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "server.js").write_text(ENV_APP)
    port = free_port()

    def write(value: str) -> None:
        (app / "nodemon.json").write_text(json.dumps({"env": {"GREETING": value, "PORT": port}}))

    write("one")
    runner = run_reloadd(["server.js"], app)
    check_reload(app, runner, port, write, 'nodemon.json|{"delay": "abc"}')
    assert "nodemon.json" in runner.log() and "delay" in runner.log()


def test_editing_package_json_and_reloadd_toml_reloads_them(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    for kind in ("package.json", "reloadd.toml"):
        app = tmp_path / kind
        app.mkdir()
        (app / "server.js").write_text(ENV_APP)
        port = free_port()

        def write(value: str, kind: str = kind, app: Path = app, port: int = port) -> None:
            if kind == "package.json":
                data = {"name": "x", "nodemonConfig": {"env": {"GREETING": value, "PORT": port}}}
                (app / kind).write_text(json.dumps(data))
            else:
                (app / kind).write_text(f'[env]\nGREETING = "{value}"\nPORT = {port}\n')

        write("one")
        runner = run_reloadd(["server.js"], app)
        broken = f"{kind}|{{ broken" if kind == "package.json" else f"{kind}|[env\n"
        check_reload(app, runner, port, write, broken)
        runner.stop()


KEPT_FOR = 0.5  # seconds a kept app is watched for an unwanted restart
ENV_APP_DEFAULT_PORT = ENV_APP.replace("Number(process.env.PORT)", "Number(process.env.PORT || process.argv[2])")


def without_config(tmp_path: Path, run_reloadd: RunReloadd) -> tuple[Path, Reloadd, int]:
    """An app started with no config file at all (its port on the command line)."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "server.js").write_text(ENV_APP_DEFAULT_PORT)
    port = free_port()
    runner = run_reloadd(["server.js", str(port)], app)
    wait_for(lambda: greeting(port) == "undefined", what=runner.log())
    return app, runner, port


@pytest.mark.parametrize("kind", ["nodemon.json", "reloadd.toml", "package.json"])
def test_a_config_file_that_appears_after_the_start_is_read(tmp_path: Path, run_reloadd: RunReloadd, kind: str) -> None:
    """As in a pod that reloadd starts before the sync has delivered the project's config."""
    app, runner, port = without_config(tmp_path, run_reloadd)
    if kind == "nodemon.json":
        (app / kind).write_text(json.dumps({"env": {"GREETING": "read"}}))
    elif kind == "reloadd.toml":
        (app / kind).write_text('[env]\nGREETING = "read"\n')
    else:  # first without a config section: an ordinary change; then with one
        (app / kind).write_text(json.dumps({"name": "x"}))
        wait_for(lambda: len(starts(app)) == 2, what=f"an ordinary restart; log:\n{runner.log()}")
        assert "config reloaded" not in runner.log()
        (app / kind).write_text(json.dumps({"name": "x", "nodemonConfig": {"env": {"GREETING": "read"}}}))
    wait_for(lambda: greeting(port) == "read", what=f"the new config used; log:\n{runner.log()}")
    assert "config reloaded: env" in runner.log(), runner.log()


def test_a_broken_config_file_that_appears_is_reported_and_the_app_kept(
    tmp_path: Path, run_reloadd: RunReloadd
) -> None:
    app, runner, port = without_config(tmp_path, run_reloadd)
    pid = starts(app)[-1]
    (app / "nodemon.json").write_text('{"delay": "abc"}')
    runner.wait_log("config not reloaded")
    hold(
        lambda: starts(app)[-1] == pid and greeting(port) == "undefined",
        KEPT_FOR,
        f"the app running on with the config it had; log:\n{runner.log()}",
    )
    (app / "nodemon.json").write_text(json.dumps({"env": {"GREETING": "fixed"}}))
    wait_for(lambda: greeting(port) == "fixed", what=runner.log())


@pytest.mark.parametrize("code", [3, 0])
def test_rs_after_the_app_ended_fires_restart_as_nodemon_does(app: Path, run_reloadd: RunReloadd, code: int) -> None:
    """`rs` is a restart request whatever the app's state: nodemon fires `restart` for it even after a crash.

    With no app left to stop, `restart` and the next `start` fire a moment apart, and two hooks
    running at once may append to a file in either order: the order is read from reloadd's own
    log of what it fired (-V), the file proves both hooks ran."""
    (app / "server.js").write_text(f"process.exit({code});\n")
    (app / "nodemon.json").write_text(json.dumps({"events": {name: RECORD for name in ["start", "restart"]}}))
    runner = run_reloadd(["-V", "server.js"], app, stdin=subprocess.PIPE)
    runner.wait_log("app crashed" if code else "clean exit")
    assert runner.proc.stdin is not None
    runner.proc.stdin.write(b"rs\n")
    runner.proc.stdin.flush()
    expected = ["start", "restart", "start"]
    wait_for(lambda: sorted(events(app)) == sorted(expected), what=f"events: {events(app)}; log:\n{runner.log()}")
    assert re.findall(r"event (\w+): running", runner.log()) == expected, runner.log()


STDIN_ECHO = "process.stdin.on('data', d => require('fs').appendFileSync(__dirname + '/stdin.log', d));\n"


def test_a_config_reload_switches_rs_on_and_off(app: Path, run_reloadd: RunReloadd) -> None:
    """`restartable` changed in nodemon.json: reloadd starts (or stops) reading `rs` itself."""
    (app / "server.js").write_text((app / "server.js").read_text() + STDIN_ECHO)
    (app / "nodemon.json").write_text(json.dumps({"restartable": False}))
    runner = run_reloadd(["server.js"], app, stdin=subprocess.PIPE)
    wait_for(lambda: len(starts(app)) == 1, what=runner.log())
    assert runner.proc.stdin is not None

    def send(text: str) -> None:
        assert runner.proc.stdin is not None
        runner.proc.stdin.write(text.encode())
        runner.proc.stdin.flush()

    def app_read(text: str) -> bool:
        return (app / "stdin.log").exists() and text in (app / "stdin.log").read_text()

    send("rs\n")  # not restartable: the app reads reloadd's stdin itself
    wait_for(lambda: app_read("rs"), what=f"the app reading `rs`; log:\n{runner.log()}")
    assert len(starts(app)) == 1

    (app / "nodemon.json").write_text(json.dumps({"restartable": "again"}))
    runner.wait_log("enter `again`")
    wait_for(lambda: len(starts(app)) == 2, what=f"the restart for the config; log:\n{runner.log()}")
    send("again\n")
    wait_for(lambda: len(starts(app)) == 3, what=f"a restart for `again`; log:\n{runner.log()}")
    send("hello\n")  # other input still reaches the app, through reloadd now
    wait_for(lambda: app_read("hello"), what=f"the app reading forwarded input; log:\n{runner.log()}")

    (app / "nodemon.json").write_text(json.dumps({"restartable": False}))
    wait_for(lambda: len(starts(app)) == 4, what=f"the restart for the config; log:\n{runner.log()}")
    send("again\n")
    wait_for(lambda: app_read("again"), what=f"the app reading `again` itself; log:\n{runner.log()}")
    assert len(starts(app)) == 4, runner.log()


# ---------------------------------------------------------------- soft reload

HOT_APP = """\
const http = require('http');
const fs = require('fs');
fs.appendFileSync(__dirname + '/starts.log', process.pid + '\\n');
let route = require('./routes/index.js');
process.on('SIGHUP', () => {
  fs.appendFileSync(__dirname + '/hot.log', fs.readFileSync(process.env.RELOADD_HOT_FILE, 'utf8'));
  delete require.cache[require.resolve('./routes/index.js')];
  route = require('./routes/index.js');
});
http.createServer((q, s) => s.end(route())).listen(Number(process.env.PORT), '127.0.0.1');
"""


def test_a_change_only_in_hot_paths_signals_instead_of_restarting(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    app = tmp_path / "app"
    (app / "routes").mkdir(parents=True)
    (app / "server.js").write_text(HOT_APP)
    (app / "routes" / "index.js").write_text("module.exports = () => 'one';\n")
    (app / "nodemon.json").write_text(json.dumps({"hot": {"paths": ["routes/**"], "signal": "SIGHUP"}}))
    port = free_port()
    runner = run_reloadd(["server.js"], app, env={"PORT": str(port)})
    wait_for(lambda: greeting(port) == "one", what=runner.log())
    (app / "routes" / "index.js").write_text("module.exports = () => 'two';\n")
    wait_for(lambda: greeting(port) == "two", what=f"the hot route; log:\n{runner.log()}")
    assert len(starts(app)) == 1, runner.log()
    assert str(app / "routes" / "index.js") in (app / "hot.log").read_text()
    touch(app / "server.js", HOT_APP + "// edited\n")
    wait_for(lambda: len(starts(app)) == 2, what=f"a real restart; log:\n{runner.log()}")
    assert os.path.exists(app / "hot.log")
