"""reloadd under an interactive shell with job control, in a real pseudo-terminal.

A laptop user runs reloadd from bash: closing the terminal, `&` and `kill %1`, Ctrl-Z and `fg`
must behave as they do for any other program. Each test starts `bash -i` on a new pty as its
controlling terminal, types into the master side and reads what the terminal shows.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support import DEADLINE, kill_session, make_app, starts, wait_for

CTRL_Z = b"\x1a"


def _terminal_session() -> None:
    """In the shell's child before exec: what a terminal window gives its shell. The pty becomes the
    controlling terminal, and SIGHUP is the default whatever the test run inherited: under `nohup
    pytest` bash would keep SIGHUP ignored and pass that on, and reloadd rightly takes that as nohup."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Shell:
    """`bash -i` on a fresh pty, its controlling terminal; ``.screen`` is everything it printed."""

    def __init__(self, cwd: Path) -> None:
        self.master, slave = os.openpty()
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "HOME": str(cwd),
            "TERM": "dumb",
            "PS1": "$ ",
            "NO_COLOR": "1",
            "PORT": "0",
        }
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile", "-i"],
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_terminal_session,
        )
        os.close(slave)
        self._screen = bytearray()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # Never block in read(): a thread blocked there keeps the master open after close().
        while not self._closing.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return  # EIO: every slave side closed
            if not data:
                return
            with self._lock:
                self._screen += data

    @property
    def screen(self) -> str:
        with self._lock:
            return self._screen.decode(errors="replace")

    def type(self, text: str | bytes) -> None:
        os.write(self.master, text.encode() if isinstance(text, str) else text)

    def expect(self, pattern: str, timeout: float = DEADLINE) -> re.Match[str]:
        found = wait_for(
            lambda: re.search(pattern, self.screen), timeout, what=f"{pattern!r} on the terminal:\n{self.screen}"
        )
        assert isinstance(found, re.Match)
        return found

    def hang_up(self) -> None:
        """What closing a terminal window does: the master side goes away."""
        self._closing.set()
        self._reader.join()
        os.close(self.master)
        self.master = -1

    def close(self) -> None:
        if self.master >= 0:
            self.hang_up()
        kill_session(self.proc.pid)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    make_app(tmp_path / "app")
    started = Shell(tmp_path / "app")
    started.expect(r"\$ ")
    yield started
    started.close()


def app_pid(cwd: Path, count: int = 1) -> int:
    wait_for(lambda: len(starts(cwd)) >= count and (cwd / "port").exists(), what="the app to start")
    return starts(cwd)[-1]


def reloadd_of(app: int) -> psutil.Process:
    parent = psutil.Process(app).parent()
    assert parent is not None, f"app {app} has no parent"
    return parent


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def type_suspend(shell: Shell) -> None:
    """Type Ctrl-Z. The terminal echoes `^Z` when it turns the key into SIGTSTP; once, in a
    loaded CI run, neither the echo nor the signal came, so a key that the terminal did not
    see is typed again. A signal that reloadd got and ignored still fails the test."""
    shell.type(CTRL_Z)
    try:
        shell.expect(r"\^Z", timeout=2)
    except AssertionError:
        shell.type(CTRL_Z)


def stopped(pid: int) -> bool:
    return psutil.Process(pid).status() == psutil.STATUS_STOPPED


def serves(cwd: Path) -> str:
    port = int((cwd / "port").read_text())
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=DEADLINE) as response:
        return str(response.read().decode())


def shell_alive_and_in_front(shell: Shell, tag: str) -> None:
    """The shell still reads commands from its terminal: it runs one and prints its result."""
    shell.type(f"echo {tag}-$((6*7)) $(ps -o tpgid= -p $$) $(ps -o pgid= -p $$)\n")
    match = shell.expect(rf"{tag}-42 +(\d+) +(\d+)")
    assert match.group(1) == match.group(2), "the shell's group is not the terminal's foreground group"


@pytest.mark.parametrize("command", ["reloadd server.js", "reloadd -I server.js", "npm run dev"])
def test_closing_the_terminal_stops_the_app_and_reloadd(shell: Shell, tmp_path: Path, command: str) -> None:
    cwd = tmp_path / "app"
    if command.startswith("npm"):
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed")
        (cwd / "package.json").write_text('{"scripts": {"dev": "reloadd server.js"}}')
    shell.type(f"{command}\n")
    app = app_pid(cwd)
    reloadd = reloadd_of(app).pid
    shell.hang_up()
    wait_for(lambda: gone(app), what="the app to stop after the terminal hung up")
    wait_for(lambda: gone(reloadd), what="reloadd to exit after the terminal hung up")
    wait_for(lambda: gone(shell.proc.pid), what="bash to exit")


def test_nohup_keeps_the_app_running_when_the_terminal_closes(shell: Shell, tmp_path: Path) -> None:
    cwd = tmp_path / "app"
    shell.type("nohup reloadd -V server.js > ../nohup.log 2>&1 &\n")
    app = app_pid(cwd)
    reloadd = reloadd_of(app).pid
    shell.hang_up()
    log = tmp_path / "nohup.log"
    wait_for(lambda: "the terminal hung up; running on" in log.read_text(), what=f"the hang-up:\n{log.read_text()}")
    assert serves(cwd) == f"v1 {app}"
    assert not gone(reloadd) and starts(cwd) == [app], log.read_text()
    os.kill(reloadd, signal.SIGHUP)  # with the terminal gone, `kill -HUP` still restarts
    wait_for(lambda: len(starts(cwd)) == 2, what=f"a restart after kill -HUP:\n{log.read_text()}")


@pytest.mark.parametrize("flags", ["", "-I "])
def test_background_reloadd_leaves_the_terminal_to_the_shell(shell: Shell, tmp_path: Path, flags: str) -> None:
    cwd = tmp_path / "app"
    shell.type(f"reloadd {flags}server.js &\n")
    app = app_pid(cwd)
    reloadd = reloadd_of(app).pid
    shell_alive_and_in_front(shell, "started")
    shell.type("kill %1\n")
    wait_for(lambda: gone(app) and gone(reloadd), what="reloadd and the app to stop after kill %1")
    shell_alive_and_in_front(shell, "killed")
    assert shell.proc.poll() is None


def test_rs_works_once_a_background_reloadd_is_brought_to_the_front(shell: Shell, tmp_path: Path) -> None:
    cwd = tmp_path / "app"
    shell.type("reloadd server.js &\n")
    app_pid(cwd)
    shell_alive_and_in_front(shell, "typed")  # the shell reads this line; reloadd, in the background, cannot
    shell.type("fg\n")
    shell.expect(r"reloadd server.js\r?\n")
    shell.type("rs\n")
    wait_for(lambda: len(starts(cwd)) == 2, what=f"a restart after `rs`:\n{shell.screen}")


def terminal_foreground(pid: int) -> int:
    """The foreground process group of ``pid``'s terminal (tpgid in /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[5])


def test_with_no_stdin_the_app_gets_the_terminal_once_fg_brings_reloadd_to_the_front(
    shell: Shell, tmp_path: Path
) -> None:
    cwd = tmp_path / "app"
    shell.type("reloadd -I server.js &\n")
    app = app_pid(cwd)
    reloadd = reloadd_of(app).pid
    shell_alive_and_in_front(shell, "background")
    shell.type("fg\n")
    wait_for(lambda: terminal_foreground(app) == app, what=f"the app's group to get the terminal:\n{shell.screen}")
    shell.type(b"\x03")  # Ctrl-C reaches the app itself, and reloadd ends with it
    wait_for(lambda: gone(app) and gone(reloadd), what=f"Ctrl-C to end the app and reloadd:\n{shell.screen}")
    shell_alive_and_in_front(shell, "ended")


def test_with_no_stdin_each_restarted_app_gets_the_terminal(shell: Shell, tmp_path: Path) -> None:
    cwd = tmp_path / "app"
    shell.type("reloadd -I server.js\n")
    first = app_pid(cwd)
    wait_for(lambda: terminal_foreground(first) == first, what=f"the first app to get the terminal:\n{shell.screen}")
    (cwd / "version.js").write_text("module.exports = 'v2';\n")
    second = app_pid(cwd, count=2)
    wait_for(lambda: terminal_foreground(second) == second, what=f"the next app to get it:\n{shell.screen}")


@pytest.mark.parametrize("flags", ["", "-I "])
def test_ctrl_z_suspends_the_app_too_and_fg_resumes_both(shell: Shell, tmp_path: Path, flags: str) -> None:
    cwd = tmp_path / "app"
    shell.type(f"reloadd {flags}server.js\n")
    app = app_pid(cwd)
    reloadd = reloadd_of(app).pid
    assert serves(cwd).startswith("v1")
    type_suspend(shell)
    try:
        wait_for(lambda: stopped(reloadd) and stopped(app))
    except AssertionError:
        raise AssertionError(f"reloadd and the app did not stop on Ctrl-Z:\n{shell.screen}") from None
    shell.expect(r"Stopped")
    shell_alive_and_in_front(shell, "suspended")
    shell.type("fg\n")
    wait_for(lambda: not stopped(reloadd) and not stopped(app), what="reloadd and the app to continue")
    assert serves(cwd) == f"v1 {app}"
    shell.type(b"\x03")  # Ctrl-C ends both, as usual
    wait_for(lambda: gone(app) and gone(reloadd), what="Ctrl-C to stop reloadd and the app after fg")
    shell_alive_and_in_front(shell, "ended")


def test_kill_hup_without_a_terminal_still_restarts(run_reloadd, app: Path) -> None:  # type: ignore[no-untyped-def]
    runner = run_reloadd(["server.js"], app)
    first = app_pid(app)
    runner.signal(signal.SIGHUP)
    wait_for(lambda: len(starts(app)) == 2, what=f"a restart after SIGHUP:\n{runner.log()}")
    assert starts(app)[-1] != first and runner.proc.poll() is None
