"""A simulated dev pod: reloadd as PID 1 running the Express example from a synced FUSE volume.

What a Kubernetes dev pod with a Syncthing sidecar looks like from inside the app container,
rebuilt from kernel parts: ``unshare --pid --fork --mount-proc --mount`` gives reloadd PID 1 of
a fresh PID namespace (the same rules as a container's init), and a bindfs mount stands in for
the volume. The "sync" writes into the directory *under* the mount, the way Syncthing does
(``.syncthing.<name>.tmp``, then a rename over the real file, with the other device's mtime), so
no inotify event ever reaches reloadd: it must notice the FUSE mount and poll.

Each test then stops the pod the way the kubelet does, SIGTERM to PID 1 (sent to the host pid
of the namespace's init), and checks the exit status reloadd reports. A sampler thread watches
the whole time for zombies under PID 1.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import psutil
import pytest
from example_support import body, copy_example, express_node_modules, install_cache, served
from fs_support import DEVPOD_MARKS, bindfs_mount, hold
from support import Reloadd, free_port, wait_for

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--kill-child"]
SERVE_BOUND = 10.0  # seconds from the end of a sync to the change being served: polls, FUSE attr cache, restart
QUIET = 1.5  # seconds without another restart that count as "exactly one restart for this batch"
ZOMBIE_GRACE = 1.0  # seconds a dead process may stay unreaped before it counts as a zombie left behind
SAMPLE_INTERVAL = 0.02  # seconds between zombie samples
PEER_CLOCK_LAG = 1.0  # seconds: Syncthing stamps the file with the mtime it had on the laptop
STOP_TIMEOUT = 1  # seconds reloadd gives the stubborn app before SIGKILL
SIGKILL_STATUS = 128 + signal.SIGKILL

pytestmark = DEVPOD_MARKS

# An app that does not stop on SIGTERM: only reloadd's SIGKILL after the stop-timeout ends it.
STUBBORN_JS = """\
const http = require('http');
process.on('SIGTERM', () => console.log('[stubborn] ignoring SIGTERM'));
const server = http.createServer((req, res) => res.end(JSON.stringify({ message: 'stubborn', pid: process.pid })));
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('[stubborn] listening'));
"""


# ---------------------------------------------------------------- the sync


def sync_batch(volume: Path, files: dict[str, str]) -> None:
    """Write ``files`` (relative path -> new text) into the volume one by one, as Syncthing does."""
    for relpath, text in files.items():
        target = volume / relpath
        temp = target.with_name(f".syncthing.{target.name}.tmp")
        temp.write_text(text)
        stamp = time.time() - PEER_CLOCK_LAG
        os.utime(temp, (stamp, stamp))
        os.replace(temp, target)


def edited(volume: Path, relpath: str, old: str = "", new: str = "", comment: str = "") -> str:
    """The file's text with ``old`` replaced by ``new`` and ``comment`` appended as a JS comment."""
    text = (volume / relpath).read_text()
    if old:
        assert old in text, f"{old!r} not in {relpath}"
        text = text.replace(old, new)
    return text + (f"\n// {comment}\n" if comment else "")


# ---------------------------------------------------------------- zombies


class ZombieWatch:
    """Samples PID 1's descendants in a thread and remembers how long each zombie stayed one."""

    def __init__(self, init: psutil.Process) -> None:
        self.init = init
        self.first_seen: dict[int, float] = {}
        self.last_seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            now = time.monotonic()
            for pid in self._zombie_pids():
                self.first_seen.setdefault(pid, now)
                self.last_seen[pid] = now

    def _zombie_pids(self) -> list[int]:
        found = []
        try:
            descendants = self.init.children(recursive=True)
        except psutil.Error:
            return []  # PID 1 is gone, and with it the whole namespace
        for proc in descendants:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    found.append(proc.pid)
            except psutil.Error:
                continue
        return found

    def lingering(self) -> dict[int, float]:
        """Zombies that stayed unreaped longer than ZOMBIE_GRACE, with how long they did."""
        spans = {pid: self.last_seen[pid] - first for pid, first in self.first_seen.items()}
        return {pid: span for pid, span in spans.items() if span > ZOMBIE_GRACE}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# ---------------------------------------------------------------- the pod


def namespace_init(unshare_pid: int) -> Optional[psutil.Process]:
    """The process unshare forked as PID 1, once it has exec'd reloadd."""
    try:
        for child in psutil.Process(unshare_pid).children():
            if any("reloadd" in part for part in child.cmdline()):
                return child
    except psutil.Error:
        pass
    return None


def pid_in_namespace(proc: psutil.Process) -> int:
    """The pid ``proc`` has inside its own (innermost) PID namespace, from /proc/<pid>/status."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError("no NSpid line: kernel too old for PID namespace tests")


class Pod:
    """reloadd as PID 1 of a PID namespace, in ``app_dir``, plus the zombie watch on it."""

    def __init__(self, args: list[str], app_dir: Path, port: int) -> None:
        self.runner = Reloadd(args, app_dir, env={"PORT": str(port), "HOST": "127.0.0.1"}, prefix=UNSHARE)
        found = wait_for(lambda: namespace_init(self.runner.pid), what=f"PID 1 to exec reloadd:\n{self.runner.log()}")
        assert isinstance(found, psutil.Process)
        self.init = found
        self.zombies = ZombieWatch(self.init)

    def terminate(self) -> tuple[int, float]:
        """SIGTERM to PID 1, as the kubelet sends it; returns (reloadd's exit status, seconds taken)."""
        began = time.monotonic()
        os.kill(self.init.pid, signal.SIGTERM)
        status = self.runner.wait_exit(SERVE_BOUND + STOP_TIMEOUT)
        return status, time.monotonic() - began

    def close(self) -> None:
        self.zombies.stop()
        try:
            self.init.kill()  # unshare blocks SIGTERM; PID 1 dying takes the whole namespace with it
        except psutil.Error:
            pass
        self.runner.stop()

    def assert_no_zombies(self) -> None:
        assert not self.zombies.lingering(), f"zombies left unreaped: {self.zombies.lingering()}\n{self.runner.log()}"


@pytest.fixture(scope="module")
def node_modules(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return express_node_modules(install_cache(pytestconfig, tmp_path_factory))


@pytest.fixture
def volume(tmp_path: Path, node_modules: Path) -> Path:
    """The directory the sync tool writes into: the pod's volume as seen from outside the mount."""
    return copy_example(tmp_path / "volume", node_modules)


@contextmanager
def dev_pod(volume: Path, mount: Path, args: list[str], port: int) -> Iterator[Pod]:
    with bindfs_mount(volume, mount):
        pod = Pod(args, mount, port)
        try:
            yield pod
        finally:
            pod.close()


def served_by_new_process(port: int, message: str, old_pid: int, pod: Pod) -> dict[str, object]:
    """Wait until a process other than ``old_pid`` answers / with ``message``; return the answer."""
    found = wait_for(
        lambda: (lambda answer: answer if answer.get("message") == message and answer["pid"] != old_pid else None)(
            body(port)
        ),
        SERVE_BOUND,
        what=f"a new process serving {message!r}; log:\n{pod.runner.log()}{pod.runner.out()}",
    )
    assert isinstance(found, dict)
    return found


def restarts(pod: Pod) -> int:
    return pod.runner.log().count("restarting due to changes")


def test_synced_batches_restart_once_each_and_sigterm_stops_the_app_gracefully(tmp_path: Path, volume: Path) -> None:
    port = free_port()
    mount = tmp_path / "pod" / "app"
    with dev_pod(volume, mount, ["--", "node", "server.js"], port) as pod:
        assert pid_in_namespace(pod.init) == 1
        first = served(port, "Hello from reloadd")
        log = pod.runner.log()
        assert re.search(rf"polling {re.escape(str(mount))} every \d+ms: fuse(\.bindfs)? mount", log), log

        # Batch 1: server code and a route together -> one restart, both changes served.
        sync_batch(
            volume,
            {
                "routes/index.js": edited(volume, "routes/index.js", "Hello from reloadd", "Hello from the pod"),
                "server.js": edited(volume, "server.js", comment="sync 1"),
            },
        )
        second = served_by_new_process(port, "Hello from the pod", first["pid"], pod)
        hold(lambda: restarts(pod) == 1, QUIET, f"one restart for batch 1; log:\n{pod.runner.log()}")

        # Batch 2: routes only -> hot reload through the FUSE mount, same process, no restart.
        sync_batch(volume, {"routes/users.js": edited(volume, "routes/users.js", "'Grace'", "'Hopper'")})
        served(port, "Hopper", key="name", path="/users/2", timeout=SERVE_BOUND)
        assert body(port)["pid"] == second["pid"]
        hold(lambda: restarts(pod) == 1, QUIET, f"no restart for a routes-only sync; log:\n{pod.runner.log()}")

        # Batch 3: three files across directories -> one restart.
        sync_batch(
            volume,
            {
                "lib/hot-routes.js": edited(volume, "lib/hot-routes.js", comment="sync 3"),
                "routes/index.js": edited(volume, "routes/index.js", "Hello from the pod", "Hello again"),
                "server.js": edited(volume, "server.js", comment="sync 3"),
            },
        )
        served_by_new_process(port, "Hello again", int(str(second["pid"])), pod)
        hold(lambda: restarts(pod) == 2, QUIET, f"one restart for batch 3; log:\n{pod.runner.log()}")
        assert not list(volume.rglob(".syncthing.*.tmp"))

        status, _ = pod.terminate()
        assert status == 0, pod.runner.log()  # the app's own status: its SIGTERM handler exits 0
        out = pod.runner.out()
        assert "[app] SIGTERM: closing the server" in out and "[app] closed cleanly" in out, out
        pod.assert_no_zombies()


GREETING_JS = "module.exports = (name) => `Hello, ${name}, from a synced module`;\n"
GREETING_ROUTE = """
const greeting = require('./lib/greeting');
app.get('/greeting', (req, res) => res.json({ message: greeting('pod'), pid: process.pid }));
"""


def test_a_sync_that_adds_a_module_and_wires_it_in_restarts_once(tmp_path: Path, volume: Path) -> None:
    """A new file plus an edit that requires it, synced in one go: one restart, not two.

    On FUSE the new name is listed at the next poll, while the edited file's new attributes
    only show once the kernel's attribute cache for it expires (up to a second later): both
    belong to one sync all the same.
    """
    port = free_port()
    with dev_pod(volume, tmp_path / "pod" / "app", ["--", "node", "server.js"], port) as pod:
        first = served(port, "Hello from reloadd")
        server = edited(
            volume, "server.js", "app.use(routes.middleware);", GREETING_ROUTE + "app.use(routes.middleware);"
        )
        sync_batch(volume, {"lib/greeting.js": GREETING_JS, "server.js": server})
        answer = served(port, "Hello, pod, from a synced module", path="/greeting", timeout=SERVE_BOUND)
        assert answer["pid"] != first["pid"]
        hold(lambda: restarts(pod) == 1, QUIET, f"one restart for one sync; log:\n{pod.runner.log()}")
        pod.assert_no_zombies()


def test_an_app_that_ignores_sigterm_is_killed_after_the_stop_timeout(tmp_path: Path, volume: Path) -> None:
    (volume / "stubborn.js").write_text(STUBBORN_JS)
    port = free_port()
    args = ["--stop-timeout", str(STOP_TIMEOUT), "--", "node", "stubborn.js"]
    with dev_pod(volume, tmp_path / "pod" / "app", args, port) as pod:
        assert pid_in_namespace(pod.init) == 1
        served(port, "stubborn")
        status, took = pod.terminate()
        assert status == SIGKILL_STATUS, pod.runner.log()
        assert took >= STOP_TIMEOUT * 0.9, f"SIGKILL after {took:.2f}s, before the {STOP_TIMEOUT}s stop-timeout"
        assert "[stubborn] ignoring SIGTERM" in pod.runner.out()  # SIGTERM was passed on first
        log = pod.runner.log()
        assert re.search(rf"still running after {STOP_TIMEOUT}(\.0+)?s stop-timeout: sending SIGKILL", log), log
        assert body(port) == {}  # nothing answers: the namespace is gone with its PID 1
        pod.assert_no_zombies()
