"""The Express example in examples/express: it serves, shuts down gracefully, and swaps its routes in place.

The first group runs ``node server.js`` alone and pins the app's own promises (signals, the
router swap on SIGHUP, keeping the old router when the new one does not load). The second
group runs it under the installed reloadd the way a developer does (``reloadd`` with no
arguments in the app's directory, as ``npm run dev`` does) and checks that a change under
routes/ is served by the same process while a change to server.js restarts it.

``npm ci`` runs once per lockfile (cached in pytest's cache directory); each test gets a fresh
copy of the sources with node_modules linked to that install.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import psutil
import pytest
from example_support import (
    EXAMPLE,
    REQUEST_TIMEOUT,
    body,
    copy_example,
    express_node_modules,
    http_get,
    install_cache,
    served,
)
from fs_support import hold
from support import Reloadd, free_port, kill_session, wait_for

RunReloadd = Callable[..., Reloadd]

EXIT_BOUND = 2.0  # seconds the app may take to exit after a shutdown signal with nothing in flight
SLOW_MS = 2000  # the in-flight request's duration: long enough to span a router swap or a shutdown
QUIET = 1.0  # seconds without a further restart that count as "no second restart"

# ---------------------------------------------------------------- installing and copying the app


@pytest.fixture(scope="session")
def node_modules(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return express_node_modules(install_cache(pytestconfig, tmp_path_factory))


@pytest.fixture
def express(tmp_path: Path, node_modules: Path) -> Path:
    return copy_example(tmp_path / "express", node_modules)


# ---------------------------------------------------------------- HTTP


def connected_to(port: int) -> bool:
    """Whether this test process holds an established TCP connection to ``port``."""
    return any(
        conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
        for conn in psutil.Process().net_connections(kind="tcp")
    )


class Hammer:
    """Requests / in a loop from a thread until stopped: every status it got, None for a failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.results: list[Optional[int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(REQUEST_TIMEOUT)

    def _run(self) -> None:
        while not self._stop.is_set():
            got = http_get(self.port, "/")
            self.results.append(got[0] if got else None)


# ---------------------------------------------------------------- the app on its own


class NodeApp:
    """``node server.js`` started directly (no reloadd), output collected in a file."""

    def __init__(self, root: Path, port: int, env: Optional[dict[str, str]] = None) -> None:
        self.output = root.parent / "node.out"
        self._out = open(self.output, "wb")
        full_env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", **(env or {})}
        self.proc = subprocess.Popen(
            ["node", "server.js"],
            cwd=root,
            env=full_env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.port = port
        wait_for(lambda: body(port, "/healthz").get("status") == "ok", what=f"the app to listen:\n{self.text()}")

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_text(self, text: str) -> str:
        wait_for(lambda: text in self.text(), what=f"{text!r} in the app's output:\n{self.text()}")
        return self.text()

    def stop(self) -> None:
        kill_session(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self._out.close()


@pytest.fixture
def start_node(express: Path) -> Iterator[Callable[..., NodeApp]]:
    started: list[NodeApp] = []

    def start(env: Optional[dict[str, str]] = None) -> NodeApp:
        started.append(NodeApp(express, free_port(), env))
        return started[-1]

    yield start
    for app in started:
        app.stop()


def test_app_serves_its_routes_and_health(start_node: Callable[..., NodeApp]) -> None:
    app = start_node()
    pid = app.proc.pid
    assert http_get(app.port, "/") == (200, {"message": "Hello from reloadd", "pid": pid})
    assert http_get(app.port, "/healthz") == (200, {"status": "ok", "pid": pid})
    assert http_get(app.port, "/users") == (200, [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}])
    assert http_get(app.port, "/users/2") == (200, {"id": 2, "name": "Grace"})
    assert http_get(app.port, "/users/99") == (404, {"error": "no such user"})
    assert f"listening on http://127.0.0.1:{app.port} (pid {pid})" in app.text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR2], ids=lambda s: s.name)
def test_shutdown_signal_closes_and_exits_zero_at_once(start_node: Callable[..., NodeApp], sig: signal.Signals) -> None:
    # A grace period far above EXIT_BOUND: exiting within the bound proves the app did not wait it out.
    app = start_node({"SHUTDOWN_GRACE_MS": "8000"})
    keep_alive = http.client.HTTPConnection("127.0.0.1", app.port, timeout=REQUEST_TIMEOUT)
    try:
        keep_alive.request("GET", "/")  # an idle keep-alive socket must not hold the close open
        keep_alive.getresponse().read()
        began = time.monotonic()
        app.proc.send_signal(sig)
        assert app.proc.wait(EXIT_BOUND + 5) == 0
        assert time.monotonic() - began < EXIT_BOUND, app.text()
    finally:
        keep_alive.close()
    assert f"[app] {sig.name}: closing the server" in app.text()
    assert "[app] closed cleanly" in app.text()


def test_shutdown_lets_the_request_in_flight_finish(start_node: Callable[..., NodeApp]) -> None:
    app = start_node()
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(http_get, app.port, f"/slow?ms={SLOW_MS}")
        # In flight means the app is handling it: a connection whose request node has not read
        # yet is idle, and a shutdown closes idle connections.
        wait_for(lambda: "slow request" in app.text(), what="the app to start on the slow request")
        app.proc.send_signal(signal.SIGTERM)
        assert slow.result() == (200, {"message": "slow response", "waited": SLOW_MS, "pid": app.proc.pid})
    assert app.proc.wait(EXIT_BOUND + 5) == 0
    assert http_get(app.port, "/") is None  # and nothing listens any more


def test_shutdown_gives_up_on_requests_after_its_grace_period(start_node: Callable[..., NodeApp]) -> None:
    app = start_node({"SHUTDOWN_GRACE_MS": "300"})
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(http_get, app.port, "/slow?ms=5000")
        wait_for(lambda: "slow request" in app.text(), what="the app to start on the slow request")
        began = time.monotonic()
        app.proc.send_signal(signal.SIGTERM)
        assert app.proc.wait(EXIT_BOUND + 5) == 1  # not a clean close: a request was cut off
        assert time.monotonic() - began < EXIT_BOUND
        assert slow.result() is None
    assert "requests still open after 300ms" in app.text()


def test_sighup_swaps_the_routes_in_the_same_process(start_node: Callable[..., NodeApp], express: Path) -> None:
    app = start_node()
    users = express / "routes" / "users.js"
    users.write_text(users.read_text().replace("'Grace'", "'Hopper'"))
    assert body(app.port, "/users/2") == {"id": 2, "name": "Grace"}  # nothing changes until told
    app.proc.send_signal(signal.SIGHUP)
    served(app.port, "Hopper", key="name", path="/users/2")
    assert body(app.port, "/")["pid"] == app.proc.pid
    assert "routes reloaded in place" in app.wait_text("routes/")  # no hot file: the whole directory


def test_sighup_names_the_files_from_the_hot_file(start_node: Callable[..., NodeApp], express: Path) -> None:
    hot_file = express.parent / "hot-changes"
    hot_file.write_text(f"{express / 'routes' / 'index.js'}\n")
    app = start_node({"RELOADD_HOT_FILE": str(hot_file)})
    app.proc.send_signal(signal.SIGHUP)
    assert f"(pid {app.proc.pid}): {os.path.join('routes', 'index.js')}" in app.wait_text("routes reloaded")


def test_a_broken_route_keeps_the_old_router_until_fixed(start_node: Callable[..., NodeApp], express: Path) -> None:
    app = start_node()
    users = express / "routes" / "users.js"
    good = users.read_text()
    users.write_text(good.replace("'Grace'", "'Hopper'") + "\nthis is not javascript(\n")
    app.proc.send_signal(signal.SIGHUP)
    app.wait_text("routes reload failed, keeping the previous routes")
    assert body(app.port, "/users/2") == {"id": 2, "name": "Grace"}
    assert body(app.port, "/")["message"] == "Hello from reloadd"  # index.js, restored from the old cache
    users.write_text(good.replace("'Grace'", "'Hopper'"))
    app.proc.send_signal(signal.SIGHUP)
    served(app.port, "Hopper", key="name", path="/users/2")
    assert app.proc.poll() is None


def test_many_swaps_do_not_accumulate_old_routers(start_node: Callable[..., NodeApp], express: Path) -> None:
    """Each swap drops the old modules from require's cache and from the loader's children list."""
    app = start_node()
    index = express / "routes" / "index.js"
    original = index.read_text()
    for round_ in range(5):
        index.write_text(original.replace("Hello from reloadd", f"Hello #{round_}"))
        app.proc.send_signal(signal.SIGHUP)
        served(app.port, f"Hello #{round_}")
    probe = express / "routes" / "probe.js"  # a route that reports what the process still holds
    probe.write_text(
        "const path = require('path');\n"
        "const dir = path.join(__dirname, path.sep);\n"
        "module.exports = (req, res) => res.json({\n"
        "  message: 'probe',\n"
        "  cached: Object.keys(require.cache).filter((f) => f.startsWith(dir)).length,\n"
        "  children: require.cache[require.resolve('../lib/hot-routes')].children.length,\n"
        "});\n"
    )
    mount_probe = "router.use('/users', users);\nrouter.get('/probe', require('./probe'));"
    index.write_text(original.replace("router.use('/users', users);", mount_probe))
    app.proc.send_signal(signal.SIGHUP)
    found = served(app.port, "probe", path="/probe")
    assert found["cached"] == 3  # index.js, users.js, probe.js: one copy each
    assert found["children"] == 1  # only the current routes/index.js


# ---------------------------------------------------------------- under reloadd


@pytest.fixture
def port() -> int:
    return free_port()


def start_reloadd(run_reloadd: RunReloadd, express: Path, port: int) -> Reloadd:
    """``reloadd`` with no arguments, as ``npm run dev`` runs it: nodemon.json and package.json main decide."""
    runner = run_reloadd([], express, env={"PORT": str(port), "HOST": "127.0.0.1"})
    wait_for(lambda: body(port, "/healthz"), what=f"the app to answer under reloadd; log:\n{runner.log()}")
    return runner


def restarts(runner: Reloadd) -> int:
    return runner.log().count("restarting due to changes")


def test_reloadd_serves_a_route_change_without_restarting(run_reloadd: RunReloadd, express: Path, port: int) -> None:
    runner = start_reloadd(run_reloadd, express, port)
    pid = body(port)["pid"]
    index = express / "routes" / "index.js"
    with ThreadPoolExecutor(1) as pool, Hammer(port) as hammer:
        slow = pool.submit(http_get, port, f"/slow?ms={SLOW_MS}")
        wait_for(lambda: connected_to(port), what="the slow request to connect")
        index.write_text(index.read_text().replace("Hello from reloadd", "Hello, hot routes"))
        served(port, "Hello, hot routes")
        assert slow.result() == (200, {"message": "slow response", "waited": SLOW_MS, "pid": pid})
    assert hammer.results and set(hammer.results) == {200}, f"dropped requests: {hammer.results.count(None)}"
    assert body(port)["pid"] == pid
    assert f"(pid {pid}): {os.path.join('routes', 'index.js')}" in runner.out()  # from RELOADD_HOT_FILE
    assert restarts(runner) == 0, runner.log()
    assert runner.log().count("starting `") == 1, runner.log()


def test_reloadd_restarts_on_a_server_change(run_reloadd: RunReloadd, express: Path, port: int) -> None:
    runner = start_reloadd(run_reloadd, express, port)
    old = body(port)["pid"]
    server = express / "server.js"
    server.write_text(server.read_text() + "\n// edited\n")
    wait_for(lambda: body(port).get("pid") not in (None, old), what=f"a new app process; log:\n{runner.log()}")
    assert not psutil.pid_exists(old)  # stopped, and reaped
    hold(lambda: restarts(runner) == 1, QUIET, f"one save, one restart; log:\n{runner.log()}")
    assert "[app] SIGUSR2: closing the server" in runner.out()  # the restart signal, handled gracefully
    assert "[app] closed cleanly" in runner.out()


def test_reloadd_stops_the_app_gracefully_and_exits_with_its_status(
    run_reloadd: RunReloadd, express: Path, port: int
) -> None:
    runner = start_reloadd(run_reloadd, express, port)
    runner.signal(signal.SIGTERM)
    assert runner.wait_exit() == 0
    assert "[app] SIGTERM: closing the server" in runner.out()
    assert "[app] closed cleanly" in runner.out()


def test_npm_run_dev_starts_the_app_under_reloadd(express: Path, port: int) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PORT": str(port), "NO_COLOR": "1", "PATH": venv_bin + os.pathsep + os.environ["PATH"]}
    env.pop("NODE_ENV", None)
    log = express.parent / "npm.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["npm", "run", "dev"], cwd=express, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for(lambda: body(port, "/healthz"), what=f"the app under `npm run dev`:\n{log.read_text()}")
            assert "[reloadd] starting `node server.js`" in log.read_text()
        finally:
            kill_session(proc.pid)
            proc.wait(10)


def test_production_mode_supervises_without_watching(run_reloadd: RunReloadd, express: Path, port: int) -> None:
    """deployment-prod.yaml: the same entrypoint with NODE_ENV=production is a plain init."""
    runner = run_reloadd(["--", "node", "server.js"], express, env={"PORT": str(port), "NODE_ENV": "production"})
    pid = wait_for(lambda: body(port, "/healthz").get("pid"), what=f"the app in production mode:\n{runner.log()}")
    assert "not watching files" in runner.log()
    server = express / "server.js"
    server.write_text(server.read_text() + "\n// edited in production\n")
    hold(lambda: body(port, "/healthz").get("pid") == pid, QUIET, f"no restart in production; log:\n{runner.log()}")
    runner.signal(signal.SIGTERM)
    assert runner.wait_exit() == 0
    assert "[app] closed cleanly" in runner.out()


# ---------------------------------------------------------------- the README's quick start

REPO = EXAMPLE.parents[1]
INSTALL_STEPS = ("python3 -m venv", "pip install", ".venv/bin/pip install", "npm install")  # networked: not run


def quick_start_commands() -> list[str]:
    """The shell commands of README's "Quick start", as a newcomer pastes them."""
    section = (REPO / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, re.S)


def without_installs(command: str) -> str:
    return " && ".join(step.strip() for step in command.split("&&") if not step.strip().startswith(INSTALL_STEPS))


def test_the_quick_start_commands_each_run_from_the_repository_root() -> None:
    """Pasted one after the other, in either order, in one shell: neither may leave it in another directory."""
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    for command in commands:
        assert not re.search(r"(^|&&|;|\|\|)\s*cd\s", command), f"a `cd` outlives this command: {command}"
    assert (REPO / "scripts" / "check").exists() and "scripts/check" in commands[1]
    assert (REPO / "examples" / "express").is_dir() and "examples/express" in commands[0]


def test_the_quick_start_runs_the_example_and_leaves_the_shell_where_it_was(
    tmp_path: Path, node_modules: Path, port: int
) -> None:
    root = tmp_path / "repo"
    copy_example(root / "examples" / "express", node_modules)
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "reloadd").symlink_to(Path(sys.executable).with_name("reloadd"))
    # What the venv's own activate script does that matters here: its bin first on PATH.
    (root / ".venv" / "bin" / "activate").write_text(f'export PATH="{root / ".venv" / "bin"}:$PATH"\n')
    script = f"{without_installs(quick_start_commands()[0])}; pwd > {tmp_path / 'after'}"
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "NO_COLOR": "1"}
    env.pop("NODE_ENV", None)
    log = tmp_path / "quick-start.out"
    with open(log, "wb") as out:
        shell = subprocess.Popen(
            ["bash", "-c", script], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for(lambda: body(port, "/healthz"), what=f"the example under the quick start:\n{log.read_text()}")
            (reloadd,) = psutil.Process(shell.pid).children()
            reloadd.send_signal(signal.SIGTERM)  # what Ctrl-C does, without ending the shell with it
            assert shell.wait(10) == 0, log.read_text()
        finally:
            kill_session(shell.pid)
    assert (tmp_path / "after").read_text().strip() == str(root)
