"""reloadd as an init: exit statuses, signals, reaping, terminal, init mode.

Every test runs twice: as a real PID 1 (``unshare --pid --fork --mount-proc``, the kernel rules
of a container) and as a plain process that made itself a child subreaper.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import psutil
import pytest
from support import Reloadd, make_app, reloadd_argv, starts, starts_reach, touch, wait_for

PID1_PREFIX = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
MODES = {"pid1": PID1_PREFIX, "subreaper": []}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root")

# A shell child that writes the name of every signal it gets to ./signals, and exits 3 on the
# stop signals (a graceful app with its own exit code).
RECORDER = (
    'for s in HUP USR1 USR2 WINCH; do trap "echo $s >> signals" $s; done; '
    'for s in TERM INT QUIT; do trap "echo $s >> signals; exit 3" $s; done; '
    "echo ready >> signals; while :; do sleep 0.05; done"
)


class Init:
    """reloadd started in one of MODES; ``target`` is the pid that signals must go to."""

    def __init__(self, mode: str, args: list[str], cwd: Path, env: Optional[dict[str, str]] = None) -> None:
        self.mode = mode
        self.runner = Reloadd(args, cwd, env=env, prefix=MODES[mode])

    @property
    def target(self) -> int:
        if self.mode == "subreaper":
            return self.runner.pid
        children = wait_for(lambda: psutil.Process(self.runner.pid).children(), what="unshare's child")
        return int(children[0].pid)

    def kill(self, sig: int) -> None:
        os.kill(self.target, sig)

    def zombies(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.target).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        result = []
        for proc in found:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    result.append(proc)
            except psutil.NoSuchProcess:
                continue
        return result


@pytest.fixture(params=sorted(MODES))
def init(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Init]]:
    started: list[Init] = []

    def start(args: list[str], cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None) -> Init:
        one = Init(request.param, args, cwd or tmp_path, env)
        started.append(one)
        return one

    yield start
    for one in started:
        if one.runner.proc.poll() is None:
            try:
                one.kill(signal.SIGTERM)  # unshare does not forward signals: stop reloadd itself
                one.runner.proc.wait(10)
            except (OSError, AssertionError, subprocess.TimeoutExpired):
                pass  # already gone, or stop() below finishes the job
        one.runner.stop()


def run_once(mode: str, args: list[str], cwd: Path, timeout: float = 15) -> tuple[int, str]:
    """Run reloadd to completion; return its exit status and stderr."""
    done = subprocess.run(
        MODES[mode] + reloadd_argv() + args,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stderr.decode(errors="replace")


# ---------------------------------------------------------------- exit status


# Exit codes at every boundary reloadd or a shell gives a meaning to (0, 1, 2 = usage, the
# sysexits range, 126/127, 128+N, 255), not all 256: each is one reloadd start, and 512 starts
# on a loaded 2-core machine take longer than any sane per-test timeout.
EXIT_CODES = (0, 1, 2, 3, 64, 70, 78, 125, 126, 127, 128, 129, 130, 143, 254, 255)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_exit_code_passes_through(mode: str, tmp_path: Path) -> None:
    def status(code: int) -> tuple[int, int]:
        return code, run_once(mode, ["--no-watch", "-q", "--", "sh", "-c", f"exit {code}"], tmp_path)[0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(pool.map(status, EXIT_CODES))
    wrong = {code: got for code, got in results.items() if got != code}
    assert not wrong, f"exit code -> reloadd status: {wrong}"


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("sig", ["TERM", "HUP", "QUIT", "KILL", "USR1", "USR2"])
def test_death_by_signal_gives_128_plus_n(mode: str, sig: str, tmp_path: Path) -> None:
    status, log = run_once(mode, ["--no-watch", "--", "sh", "-c", f"kill -{sig} $$"], tmp_path)
    assert status == 128 + signal.Signals["SIG" + sig], log


@pytest.mark.parametrize("mode", sorted(MODES))
def test_missing_program_is_127_and_not_executable_is_126(mode: str, tmp_path: Path) -> None:
    (tmp_path / "plain.sh").write_text("#!/bin/sh\nexit 0\n")
    status, log = run_once(mode, ["--no-watch", "--", "no-such-program-xyz"], tmp_path)
    assert status == 127 and '"no-such-program-xyz" exec not found' in log, log
    status, log = run_once(mode, ["--no-watch", "--", "./plain.sh"], tmp_path)
    assert status == 126 and '"./plain.sh" is not executable' in log, log
    status, log = run_once(mode, ["--", "no-such-program-xyz"], tmp_path)  # watch mode too
    assert status == 127, log


@pytest.mark.parametrize("mode", sorted(MODES))
def test_usage_error_is_2(mode: str, tmp_path: Path) -> None:
    status, log = run_once(mode, ["--stop-timeout", "soon", "--", "true"], tmp_path)
    assert status == 2 and "--stop-timeout" in log and "Traceback" not in log, log


# ---------------------------------------------------------------- signals


def wait_recorded(directory: Path, *names: str) -> None:
    wait_for(
        lambda: (
            all(n in (directory / "signals").read_text().split() for n in names)
            if (directory / "signals").exists()
            else False
        ),
        what=f"{names} recorded by the child",
    )


@pytest.mark.parametrize("stop", ["TERM", "INT", "QUIT"])
def test_signals_reach_the_child_and_stop_ends_with_its_status(
    init: Callable[..., Init], tmp_path: Path, stop: str
) -> None:
    one = init(["--no-watch", "--", "sh", "-c", RECORDER])
    wait_recorded(tmp_path, "ready")
    for name in ("HUP", "USR1", "USR2", "WINCH"):  # --no-watch: SIGHUP is forwarded, not a restart
        one.kill(signal.Signals["SIG" + name])
        wait_recorded(tmp_path, name)
    one.kill(signal.Signals["SIG" + stop])
    assert one.runner.wait_exit() == 3, one.runner.log()
    wait_recorded(tmp_path, stop)


def test_sighup_restarts_in_watch_mode(init: Callable[..., Init], tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    one = init(["server.js"], cwd=app)
    wait_for(lambda: len(starts(app)) == 1, what="first start")
    one.kill(signal.SIGHUP)
    wait_for(lambda: len(starts(app)) == 2, what=f"restart after SIGHUP:\n{one.runner.log()}")
    assert one.runner.proc.poll() is None


def test_a_graceful_app_stops_with_its_own_code(init: Callable[..., Init], tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    (app / "server.js").write_text(
        (app / "server.js").read_text() + "process.on('SIGTERM', () => server.close(() => process.exit(0)));\n"
    )
    one = init(["server.js"], cwd=app)
    wait_for(lambda: (app / "port").exists(), what="the app listening")
    one.kill(signal.SIGTERM)
    assert one.runner.wait_exit() == 0, one.runner.log()


def test_an_app_ignoring_sigterm_is_killed_after_stop_timeout(init: Callable[..., Init], tmp_path: Path) -> None:
    one = init(["--no-watch", "--stop-timeout", "1", "--", "sh", "-c", "trap '' TERM; echo ready > ok; sleep 60"])
    wait_for(lambda: (tmp_path / "ok").exists(), what="child ready")
    began = time.monotonic()
    one.kill(signal.SIGTERM)
    assert one.runner.wait_exit() == 128 + signal.SIGKILL, one.runner.log()
    assert 0.8 < time.monotonic() - began < 6
    assert "SIGKILL" in one.runner.log()


def test_a_second_sigterm_kills_at_once(init: Callable[..., Init], tmp_path: Path) -> None:
    one = init(["--no-watch", "--stop-timeout", "60", "--", "sh", "-c", "trap '' TERM; echo ready > ok; sleep 60"])
    wait_for(lambda: (tmp_path / "ok").exists(), what="child ready")
    one.kill(signal.SIGTERM)
    one.runner.wait_log("sending SIGTERM")
    began = time.monotonic()
    one.kill(signal.SIGTERM)
    assert one.runner.wait_exit(timeout=5) == 128 + signal.SIGKILL, one.runner.log()
    assert time.monotonic() - began < 5


def test_sigterm_with_no_app_running_exits_0(init: Callable[..., Init], tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    (app / "server.js").write_text("process.exit(4);\n")
    one = init(["server.js"], cwd=app)
    one.runner.wait_log("app crashed")
    one.kill(signal.SIGTERM)
    assert one.runner.wait_exit() == 0, one.runner.log()


# ---------------------------------------------------------------- reaping


def test_a_hundred_orphans_leave_no_zombie(init: Callable[..., Init], tmp_path: Path) -> None:
    script = "i=0; while [ $i -lt 100 ]; do (sleep 0.2 &); i=$((i+1)); done; echo spawned > ok; sleep 30"
    one = init(["--no-watch", "--", "sh", "-c", script])
    wait_for(lambda: (tmp_path / "ok").exists(), what="orphans spawned")
    wait_for(lambda: not live_sleepers(one.target), what="the 100 orphans finished")
    # From here on a zombie may only live until the next reap (at least once a second).
    wait_for(lambda: not one.zombies(), timeout=3, what=f"no zombies (have {len(one.zombies())})")
    assert one.runner.proc.poll() is None


def live_sleepers(pid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.cmdline()[-1:] == ["0.2"]:
                found.append(proc)
        except psutil.Error:
            continue
    return found


STORM = 20  # restarts: a leak of one zombie or descriptor each shows many times over the slack below
WARM_START_FDS = 2  # both ends of two pipes are held while the next warm process starts, one of each after


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_restart_storm_leaks_no_zombie_and_no_descriptor(init: Callable[..., Init], tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    one = init(["server.js"], cwd=app)
    wait_for(lambda: len(starts(app)) == 1, what="first start")
    target = one.target
    before = fd_count(target)
    for count in range(2, STORM + 2):
        os.kill(target, signal.SIGHUP)
        wait_for(starts_reach(app, count), what=f"restart {count}:\n{one.runner.log()[-2000:]}")
    wait_for(lambda: not one.zombies(), timeout=3, what="no zombies after the storm")
    # The pipes to the next warm process come and go with its start (two more while it starts);
    # a leak of one descriptor per restart would be STORM more.
    assert fd_count(target) <= before + WARM_START_FDS, (before, os.listdir(f"/proc/{target}/fd"))


def test_subreaper_adopts_double_forked_daemons(tmp_path: Path, run_reloadd: Callable[..., Reloadd]) -> None:
    """Not PID 1: reloadd still reaps what its app double-forks (PR_SET_CHILD_SUBREAPER)."""
    runner = run_reloadd(["--no-watch", "--", "sh", "-c", "(sh -c 'sleep 0.3' &); echo ok > ok; sleep 30"], tmp_path)
    wait_for(lambda: (tmp_path / "ok").exists(), what="daemon started")
    sleeper = wait_for(
        lambda: [p for p in psutil.Process(runner.pid).children() if "sleep 30" not in " ".join(p.cmdline())],
        what="the orphan re-parented to reloadd",
    )
    assert sleeper
    wait_for(lambda: not [p for p in psutil.Process(runner.pid).children() if p.status() == "zombie"], timeout=3)


# ---------------------------------------------------------------- init mode and crash policy


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--no-watch"], {}), ([], {"RELOADD_WATCH": "0"}), ([], {"NODE_ENV": "production"})],
    ids=["flag", "RELOADD_WATCH=0", "NODE_ENV=production"],
)
def test_init_mode_watches_nothing(
    init: Callable[..., Init], tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    app = make_app(tmp_path / "app")
    one = init([*args, "server.js"], cwd=app, env=env)
    wait_for(lambda: len(starts(app)) == 1, what="start")
    touch(app / "version.js")
    time.sleep(0.5)  # a watcher would have restarted by now (bounded negative check)
    assert len(starts(app)) == 1, one.runner.log()
    assert "watching path" not in one.runner.log()
    if "NODE_ENV" in env:
        assert sum("production" in line for line in one.runner.log().splitlines()) == 1, one.runner.log()


def test_reloadd_watch_1_overrides_production(init: Callable[..., Init], tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    one = init(["server.js"], cwd=app, env={"NODE_ENV": "production", "RELOADD_WATCH": "1"})
    wait_for(lambda: len(starts(app)) == 1, what="start")
    touch(app / "version.js")
    wait_for(lambda: len(starts(app)) == 2, what=f"restart:\n{one.runner.log()}")


def test_watch_false_in_config_is_init_mode(init: Callable[..., Init], tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    (app / "nodemon.json").write_text('{"watch": false}')
    one = init(["server.js"], cwd=app)
    wait_for(lambda: len(starts(app)) == 1, what="start")
    one.kill(signal.SIGTERM)
    assert one.runner.wait_exit() == 128 + signal.SIGTERM
    assert "watching path" not in one.runner.log()


def test_restart_on_crash_backs_off(init: Callable[..., Init], tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    crash = "require('fs').appendFileSync('starts.log', process.pid + '\\n'); process.exit(1);\n"
    (app / "server.js").write_text(crash)
    one = init(["--restart-on-crash", "server.js"], cwd=app)
    wait_for(lambda: len(starts(app)) >= 3, what=f"three starts:\n{one.runner.log()}")
    log = one.runner.log()
    assert "restarting in 0.5s" in log and "restarting in 1s" in log, log


def test_exitcrash_exits_with_the_apps_status(init: Callable[..., Init], tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    (app / "server.js").write_text("process.exit(7);\n")
    one = init(["--exitcrash", "server.js"], cwd=app)
    assert one.runner.wait_exit() == 7, one.runner.log()


# ---------------------------------------------------------------- terminal


def run_on_terminal(argv: list[str], cwd: Path, keys: bytes, ready: bytes) -> tuple[int, bytes]:
    """Run argv as the session leader of a new pseudo-terminal, type ``keys`` once ``ready`` shows."""
    pid, master = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        os.chdir(cwd)
        os.environ["NO_COLOR"] = "1"
        os.execv(argv[0], argv)
    seen = b""
    deadline = time.monotonic() + 10
    typed = False
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.05)[0]:
            try:
                seen += os.read(master, 4096)
            except OSError:
                pass  # EIO: the terminal's last user is gone; the exit status follows
        if not typed and ready in seen:
            os.write(master, keys)
            typed = True
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            while select.select([master], [], [], 0.2)[0]:  # what the app wrote just before the end
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
            os.close(master)
            return os.waitstatus_to_exitcode(status), seen
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"no exit; terminal showed:\n{seen.decode(errors='replace')}")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_ctrl_c_reaches_the_app_that_owns_the_terminal(mode: str, tmp_path: Path) -> None:
    probe = (
        "process.on('SIGINT', () => { console.log('GOT' + '-INT'); process.exit(130); });"
        "const fg = require('child_process').execSync('ps -o tpgid= -p ' + process.pid).toString().trim();"
        "console.log('F' + 'G=' + (Number(fg) === require('child_process').execSync('ps -o pgid= -p ' + process.pid)"
        ".toString().trim() * 1));"
        "setInterval(() => {}, 1000);"
    )
    # In a container PID 1 is a session leader with the terminal as its controlling tty (docker
    # run -it does that); `setsid -c` gives the namespace's PID 1 the same.
    prefix = [*PID1_PREFIX, "setsid", "-c"] if MODES[mode] else []
    argv = [*prefix, *reloadd_argv(), "--no-watch", "--", "node", "-e", probe]
    if prefix:
        argv[0] = subprocess.check_output(["which", argv[0]]).decode().strip()
    status, seen = run_on_terminal(argv, tmp_path, b"\x03", b"FG=")
    text = seen.decode(errors="replace")
    assert "FG=true" in text, text
    assert "GOT-INT" in text, text
    assert status == 130, text


def test_python_minus_m_runs_as_init(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reloadd", "--no-watch", "--", "sh", "-c", "exit 5"], cwd=tmp_path, check=False
    )
    assert done.returncode == 5
