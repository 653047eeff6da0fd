"""Shared helpers for tests that run the installed ``reloadd`` on real node apps."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, TypeVar

import psutil

T = TypeVar("T")
# Generous upper bound for anything that "should happen soon". RELOADD_TEST_DEADLINE raises it
# where the suite shares the machine with disk-heavy work (CI runs one part beside an image
# build, whose writeback can stall a small file write for seconds).
DEADLINE = float(os.environ.get("RELOADD_TEST_DEADLINE") or 10.0)


def reloadd_argv() -> list[str]:
    """The installed console script, next to the interpreter running the tests."""
    script = Path(sys.executable).with_name("reloadd")
    if script.exists():
        return [str(script)]
    found = shutil.which("reloadd")
    return [found] if found else [sys.executable, "-m", "reloadd"]


def wait_for(condition: Callable[[], T], timeout: float = DEADLINE, interval: float = 0.02, what: str = "") -> T:
    """Poll ``condition`` until it is truthy; fail the test with ``what`` after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


# A small HTTP app: answers "<VERSION> <pid>", records each start in starts.log, and prints
# "listening <pid>" once it accepts connections. SIGUSR2 (nodemon's restart signal) ends it.
SERVER_JS = """\
const http = require('http');
const fs = require('fs');
const path = require('path');
const version = require('./version.js');
fs.appendFileSync(path.join(__dirname, 'starts.log'), process.pid + '\\n');
const port = Number(process.env.PORT || 0);
const server = http.createServer((req, res) => res.end(version + ' ' + process.pid));
server.listen(port, '127.0.0.1', () => {
  fs.writeFileSync(path.join(__dirname, 'port'), String(server.address().port));
  console.log('listening ' + process.pid);
});
"""


def served_version(app: Path) -> Optional[str]:
    """The version the app in ``app`` answers with now, or None if it does not answer."""
    import urllib.request

    try:
        port = int((app / "port").read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return str(response.read().decode().split()[0])
    except (OSError, ValueError):
        return None


def greeting(port: int) -> Optional[str]:
    """The whole answer of the app on ``port`` to GET /, or None while nothing answers."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            return str(response.read().decode())
    except OSError:
        return None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_app(root: Path, version: str = "v1", server_js: str = SERVER_JS) -> Path:
    """Write the example HTTP app into ``root`` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "server.js").write_text(server_js)
    (root / "version.js").write_text(f"module.exports = {version!r};\n")
    return root


def starts(root: Path) -> list[int]:
    log = root / "starts.log"
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def starts_reach(root: Path, count: int) -> Callable[[], bool]:
    """A condition for wait_for: the app in ``root`` has started at least ``count`` times."""
    return lambda: len(starts(root)) >= count


class Reloadd:
    """A running ``reloadd`` whose stderr is collected in a file (read it with ``.log()``)."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        env: Optional[dict[str, str]] = None,
        prefix: Optional[list[str]] = None,
        stdin: int | None = subprocess.DEVNULL,
        stderr: Optional[int] = None,
        command: Optional[list[str]] = None,
    ) -> None:
        """``stderr``: a descriptor for reloadd's stderr instead of the log file (``log()`` is then empty).
        ``command``: how to run reloadd, instead of ``prefix`` and the installed script."""
        self.cwd = cwd
        self.stderr_path = cwd.parent / f"reloadd-{os.getpid()}-{time.monotonic_ns()}.err"
        self.stdout_path = self.stderr_path.with_suffix(".out")
        full_env = dict(os.environ)
        full_env.pop("NODE_ENV", None)
        full_env.update({"NO_COLOR": "1"})
        full_env.update(env or {})
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(
            (command or (prefix or []) + reloadd_argv()) + args,
            cwd=cwd,
            env=full_env,
            stdin=stdin,
            stdout=self._out,
            stderr=self._err if stderr is None else stderr,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def out(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def wait_log(self, text: str, count: int = 1, timeout: float = DEADLINE) -> str:
        wait_for(
            lambda: self.log().count(text) >= count or self.proc.poll() is not None and self.log().count(text) >= count,
            timeout,
            what=f"{count}x {text!r} in reloadd's log:\n{self.log()}",
        )
        return self.log()

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"reloadd did not exit within {timeout}s; log:\n{self.log()}") from None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """End reloadd and everything in its session, whatever state the test left it in."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        kill_session(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdin:
            self.proc.stdin.close()
        self._err.close()
        self._out.close()


def kill_session(sid: int) -> None:
    """SIGKILL every process left in the session we started (tests start reloadd with setsid)."""
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid != os.getpid() and os.getsid(proc.pid) == sid:
                proc.kill()
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue


def session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(proc.pid) == sid:
                found.append(proc)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def zombies_of(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if p.status() == psutil.STATUS_ZOMBIE]
    except psutil.NoSuchProcess:
        return []


def touch(path: Path, text: Optional[str] = None) -> None:
    """Change a file the way an editor save does (new content, new mtime)."""
    path.write_text(text if text is not None else f"// {time.time_ns()}\n")
