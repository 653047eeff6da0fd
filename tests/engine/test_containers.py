"""reloadd in real containers: the dev loop, sync, docker stop, reaping, terminals, production.

Every container runs on the host's network and its app listens on 127.0.0.1 (a free port
picked here), so the tests reach nothing but this machine. Without an engine the whole layer is
skipped with one line saying why. ``.ci/engine`` starts a private engine and runs
``pytest -m engine``; ``scripts/check`` leaves this layer out (``-m "not engine"``), so CI runs
it once.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import engine_support as engine
import pytest
from engine_support import Container, docker
from support import DEADLINE, free_port, greeting, make_app, reloadd_argv, starts, touch, wait_for

# Plain node as PID 1 has no SIGTERM handler, and the kernel ignores signals PID 1 has no handler
# for: docker stop waits its whole timeout, then SIGKILLs. The tests use a short one.
STOP_TIMEOUT = 3
QUIET = 1.0  # seconds without another restart that count as "exactly one restart" (a second comes within ms)
SIGKILLED = 128 + signal.SIGKILL
ORPHANS = 40  # grandchildren the fork-heavy app leaves behind for PID 1 to reap
EXAMPLE_IMAGE = "reloadd-example-express:engine-test"  # examples/express/Dockerfile.dev on BASE_IMAGE
# The first test also waits for the images: on a fresh machine the node stand-in (Debian minbase)
# and Dockerfile.base take minutes to build; later runs find them in the engine's cache.
pytestmark = pytest.mark.timeout(engine.BUILD_TIMEOUT * 2)

# No engine: the whole layer is one skip with one line saying why (not one per test).
MISSING = engine.engine_missing()
if MISSING:
    pytest.skip(MISSING, allow_module_level=True)


def say(config: pytest.Config, line: str) -> None:
    """A figure worth seeing in CI's log (image sizes, build times), whatever -q or -s say."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"engine: {line}")


@pytest.fixture(scope="session")
def base_image(pytestconfig: pytest.Config) -> str:
    """Dockerfile.base built from this checkout, on the engine's (or a locally built) node image."""
    began = time.monotonic()
    try:
        engine.ensure_node_image()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    say(pytestconfig, f"{engine.NODE_IMAGE} ready in {time.monotonic() - began:.0f}s")
    took = engine.build(engine.BASE_IMAGE, engine.REPO / "Dockerfile.base", engine.REPO)
    size = engine.image_size_mb(engine.BASE_IMAGE)
    say(pytestconfig, f"Dockerfile.base -> {engine.BASE_IMAGE}: {size:.0f} MB, built in {took:.0f}s")
    return engine.BASE_IMAGE


@pytest.fixture(scope="session")
def example_image(base_image: str, pytestconfig: pytest.Config) -> str:
    """The Express example's dev image (npm ci inside the build), as the README builds it."""
    express = engine.REPO / "examples/express"
    took = engine.build(EXAMPLE_IMAGE, express / "Dockerfile.dev", express, f"BASE_IMAGE={base_image}")
    size = engine.image_size_mb(EXAMPLE_IMAGE)
    say(pytestconfig, f"examples/express/Dockerfile.dev -> {EXAMPLE_IMAGE}: {size:.0f} MB, built in {took:.0f}s")
    return EXAMPLE_IMAGE


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    """Containers a test started; removed after it, however it ended."""
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    """A folder to bind-mount: the image's user (uid 1000) writes into it, the test reads it."""
    folder = tmp_path / "app"
    folder.mkdir()
    os.chmod(folder, 0o777)
    return folder


def served(port: int) -> str:
    return greeting(port) or ""


def start_app(containers: list[Container], image: str, *run_args: str, command: tuple[str, ...] = ()) -> Container:
    container = Container(image, *run_args, command=command)
    containers.append(container)
    return container


def wait_served(container: Container, port: int, text: str, timeout: float = 30) -> None:
    wait_for(lambda: text in served(port), timeout, what=f"{text!r} on port {port}; container log:\n{container.logs()}")


def timed_stop(container: Container) -> float:
    began = time.monotonic()
    docker("stop", "-t", str(STOP_TIMEOUT), container.name, timeout=STOP_TIMEOUT + 30)
    return time.monotonic() - began


def test_dev_loop_through_a_bind_mount_serves_an_edit_after_one_restart(
    example_image: str, containers: list[Container], shared_dir: Path
) -> None:
    """The README's container loop: the example's dev image with its code bind-mounted over /app."""
    shutil.copytree(engine.REPO / "examples/express", shared_dir, dirs_exist_ok=True, ignore=ignore_modules)
    port = free_port()
    app = start_app(
        containers,
        example_image,
        *("-v", f"{shared_dir}:/app", "-v", "/app/node_modules", "-e", f"PORT={port}", "-e", "HOST=127.0.0.1"),
    )
    wait_served(app, port, "Hello")
    server = shared_dir / "server.js"
    marker = "edited-in-a-container"
    routed = "app.get('/edited', (req, res) => res.send('" + marker + "'));\n"
    text = server.read_text()
    server.write_text(text.replace("const server = app.listen(", routed + "const server = app.listen(", 1))
    wait_for(lambda: marker in (fetch(port, "/edited") or ""), 30, what=f"the edit served; log:\n{app.logs()}")
    time.sleep(QUIET)  # nothing to poll for: the absence of a second restart
    log = app.logs()
    assert log.count("restarting due to changes") == 1, log
    assert log.count("starting `node server.js`") == 2, log


def ignore_modules(folder: str, names: list[str]) -> set[str]:
    return {"node_modules"} & set(names)


def fetch(port: int, path: str) -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


@pytest.mark.parametrize("spelling", ["transport", "docker-url"])
def test_sync_into_a_container_without_a_bind_mount(
    base_image: str, containers: list[Container], tmp_path: Path, spelling: str
) -> None:
    """Compose-style development without a mount: `reloadd sync` over `docker exec`, one restart per batch."""
    port = free_port()
    app = start_app(containers, base_image, "-e", f"PORT={port}")  # /app is empty: the code arrives by sync
    wait_for(lambda: "server.js does not exist (yet)" in app.logs(), 30, what=f"reloadd up; log:\n{app.logs()}")
    code = make_app(tmp_path / "code")
    if spelling == "transport":
        where = ["--transport", f"docker exec -i {app.name}", "--to", "/app"]
    else:
        where = ["--to", f"docker://{app.name}:/app"]
    sync = subprocess.Popen(
        [*reloadd_argv(), "sync", str(code), *where],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**engine.docker_env(), "NO_COLOR": "1"},
        start_new_session=True,
    )
    try:
        wait_served(app, port, "v1")
        touch(code / "version.js", "module.exports = 'v2';\n")
        wait_served(app, port, "v2")
        time.sleep(QUIET)  # nothing to poll for: the absence of a second restart
        assert len(app.exec("cat", "/app/starts.log").split()) == 2, app.logs()
    finally:
        sync.send_signal(signal.SIGINT)
        _, err = sync.communicate(timeout=DEADLINE)
    assert sync.returncode == 0, err.decode(errors="replace")
    assert f"to {app.name}" in err.decode(errors="replace") or "synced" in err.decode(errors="replace")


def test_docker_stop_is_quick_and_clean_where_plain_node_as_pid_1_is_killed(
    base_image: str, containers: list[Container], shared_dir: Path
) -> None:
    make_app(shared_dir)
    ports = free_port(), free_port()
    mount = ("-v", f"{shared_dir}:/app")
    supervised = start_app(containers, base_image, *mount, "-e", f"PORT={ports[0]}")
    plain = start_app(
        containers, base_image, *mount, "-e", f"PORT={ports[1]}", "--entrypoint", "node", command=("server.js",)
    )
    wait_served(supervised, ports[0], "v1")
    wait_served(plain, ports[1], "v1")
    supervised_took, plain_took = timed_stop(supervised), timed_stop(plain)
    assert plain.exit_code() == SIGKILLED and plain_took >= STOP_TIMEOUT  # the problem reloadd solves
    assert supervised_took < STOP_TIMEOUT - 1, supervised.logs()
    # The app ends on the forwarded SIGTERM; reloadd exits with its status (128+15), as docs/behaviour.md says.
    assert supervised.exit_code() in (0, 128 + signal.SIGTERM), supervised.logs()
    assert supervised.exit_code() != SIGKILLED


FORK_HEAVY_JS = f"""\
const {{ spawn }} = require('child_process');
// Each sh exits at once and leaves its sleep behind: an orphan that PID 1 must reap when it ends.
for (let i = 0; i < {ORPHANS}; i++) spawn('sh', ['-c', 'sleep 0.3 & exit 0'], {{ stdio: 'ignore' }});
setInterval(() => {{}}, 1000);
console.log('forked');
"""


def zombies(container: Container) -> int:
    return sum(1 for state, _ in container.processes() if state == "Z")


def sleeping(container: Container) -> int:
    return sum(1 for state, command in container.processes() if command == "sleep" and state != "Z")


def test_no_zombies_after_a_fork_heavy_app_where_node_as_pid_1_leaves_them(
    base_image: str, containers: list[Container], shared_dir: Path
) -> None:
    (shared_dir / "server.js").write_text(FORK_HEAVY_JS)
    mount = ("-v", f"{shared_dir}:/app")
    supervised = start_app(containers, base_image, *mount)
    plain = start_app(containers, base_image, *mount, "--entrypoint", "node", command=("server.js",))
    for container in (supervised, plain):
        wait_for(lambda c=container: "forked" in c.logs(), 30, what=f"the app forked; log:\n{container.logs()}")  # type: ignore[misc]
        wait_for(lambda c=container: sleeping(c) == 0, 30, what="the orphans' sleeps to end")  # type: ignore[misc]
    wait_for(lambda: zombies(plain) >= ORPHANS, 10, what="node as PID 1 to leave zombies (the test can fail)")
    wait_for(lambda: zombies(supervised) == 0, 10, what=f"reloadd to reap every orphan; log:\n{supervised.logs()}")


def test_docker_run_init_in_front_of_reloadd_still_restarts_and_stops_quickly(
    base_image: str, containers: list[Container], shared_dir: Path
) -> None:
    """`docker run --init` (tini as PID 1) pushes reloadd down to PID 2: it becomes a subreaper."""
    make_app(shared_dir)
    port = free_port()
    app = start_app(containers, base_image, "--init", "-v", f"{shared_dir}:/app", "-e", f"PORT={port}")
    wait_served(app, port, "v1")
    touch(shared_dir / "version.js", "module.exports = 'v2';\n")
    wait_served(app, port, "v2")
    assert len(starts(shared_dir)) == 2, app.logs()
    assert timed_stop(app) < STOP_TIMEOUT - 1, app.logs()
    assert app.exit_code() != SIGKILLED, app.logs()


READ_ONLY_JS = """\
const http = require('http');
http.createServer((req, res) => res.end('v1 ' + process.pid)).listen(Number(process.env.PORT), '127.0.0.1');
"""


def test_production_init_mode_read_only_and_not_root(
    base_image: str, containers: list[Container], shared_dir: Path
) -> None:
    """The same image in production: NODE_ENV=production, a read-only root file system, uid 1000."""
    (shared_dir / "server.js").write_text(READ_ONLY_JS)
    os.chmod(shared_dir, 0o755)  # production code is not the app's to change
    port = free_port()
    app = start_app(
        containers,
        base_image,
        *("--read-only", "--user", "1000:1000", "-e", "NODE_ENV=production", "-e", f"PORT={port}"),
        *("-v", f"{shared_dir}:/app:ro"),
    )
    wait_served(app, port, "v1")
    log = app.logs()
    assert "NODE_ENV=production" in log and "Traceback" not in log, log
    assert app.exec("id", "-u").strip() == "1000"
    assert timed_stop(app) < STOP_TIMEOUT - 1, app.logs()


class Terminal:
    """`docker run -it` on a pseudo-terminal, as a developer's shell would run it."""

    def __init__(self, argv: list[str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes docker run, on the terminal's slave side
            os.execvpe(argv[0], argv, engine.docker_env())
        self.screen = b""

    def type(self, text: bytes) -> None:
        os.write(self.fd, text)

    def expect(self, text: str, count: int = 1, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while self.screen.decode(errors="replace").count(text) < count:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{count}x {text!r} not on the terminal:\n{self.screen.decode(errors='replace')}")
            if select.select([self.fd], [], [], min(left, 0.2))[0]:
                try:
                    self.screen += os.read(self.fd, 65536)
                except OSError:  # EIO: the terminal's last process is gone
                    return

    def wait(self, timeout: float = 30) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    self.screen += os.read(self.fd, 65536)
                except OSError:
                    pass
        raise AssertionError(f"docker run did not end:\n{self.screen.decode(errors='replace')}")

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


def test_interactive_rs_restarts_and_ctrl_c_stops(base_image: str, shared_dir: Path) -> None:
    make_app(shared_dir)
    port = free_port()
    name = engine.unique_name("tty")
    argv = ["docker", "run", "-it", "--rm", "--name", name, *engine.NETWORK, "-v", f"{shared_dir}:/app"]
    terminal = Terminal([*argv, "-e", f"PORT={port}", base_image])
    try:
        terminal.expect("listening")
        terminal.type(b"rs\r")
        terminal.expect("listening", count=2)
        assert len(starts(shared_dir)) == 2
        terminal.type(b"\x03")
        status = terminal.wait()
        assert status in (0, 128 + signal.SIGINT), terminal.screen.decode(errors="replace")
        assert docker("inspect", name, check=False).returncode != 0  # --rm: the container is gone
    finally:
        terminal.close()
        docker("rm", "-f", name, check=False)


def test_the_dev_image_stays_small(base_image: str) -> None:
    """reloadd's share of the dev image (Python and its packages) on top of the node image."""
    own = engine.image_size_mb(base_image) - engine.image_size_mb(engine.NODE_IMAGE)
    assert own < 300, f"reloadd adds {own:.0f} MB to {engine.NODE_IMAGE}"
