"""Warm restarts: a generation started from a waiting, preloaded node sees exactly what a cold start sees.

Each equivalence test runs the probe app twice, once with warm restarts (the default) and once
with --no-warm, restarts it once so the second generation comes from a warm process that had
preloaded the app's dependency, and compares what the two second generations observed.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest
from support import Reloadd, wait_for
from warm_support import make_probe_app, read_probe, set_version

RunReloadd = Callable[..., Reloadd]
READY_PRELOADED = "1 package(s) preloaded"  # the warm process that follows generation 1 has the dependency loaded
WARM_TAKEN = "warm start: pid"


def run_two_generations(
    run_reloadd: RunReloadd,
    root: Path,
    warm: bool,
    esm: bool = False,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Reloadd, dict[str, Any], dict[str, Any]]:
    script = "server.mjs" if esm else "server.js"
    flags = ["-V"] + ([] if warm else ["--no-warm"]) + (extra or [])
    runner = run_reloadd([*flags, script, "one", "two words"], root, env={"PROBE_ENV": "set", **(env or {})})
    first = read_probe(root, "v1", what=f"first probe; log:\n{runner.log()}")
    if warm and not esm:
        runner.wait_log(READY_PRELOADED)
    elif warm:
        runner.wait_log("ready in")
    set_version(root, "v2", esm=esm)
    second = read_probe(root, "v2", what=f"second probe; log:\n{runner.log()}")
    if warm:
        assert runner.log().count(WARM_TAKEN) >= 2, runner.log()
    return runner, first, second


def comparable(probe: dict[str, Any], root: Path) -> dict[str, Any]:
    """What must be equal between cold and warm: everything but the pids and the version."""
    probe = dict(probe)
    for key in ("pid", "ppid", "version"):
        probe.pop(key)
    return json.loads(json.dumps(probe).replace(str(root), "ROOT").replace(str(root.parent), "TMP"))


@pytest.mark.parametrize("esm", [False, True], ids=["commonjs", "esm"])
def test_a_warm_generation_sees_what_a_cold_one_sees(tmp_path: Path, run_reloadd: RunReloadd, esm: bool) -> None:
    observed = {}
    for mode in ("warm", "cold"):
        root = make_probe_app(tmp_path / mode / "app", esm=esm)
        runner, _, second = run_two_generations(run_reloadd, root, warm=mode == "warm", esm=esm)
        assert second["ppid"] == runner.pid  # reloadd is the app's parent, warm or cold
        assert os.getpgid(second["pid"]) == second["pid"]  # in its own process group, as a cold start
        observed[mode] = comparable(second, root)
        runner.stop()
    assert observed["warm"] == observed["cold"]
    if not esm:
        cold = observed["cold"]
        assert cold["mainIsModule"] and cold["moduleId"] == "." and cold["dep"]["mainAtRequire"].endswith("server.js")
        assert cold["argv"][1:] == ["ROOT/server.js", "one", "two words"]


def test_the_dependency_was_preloaded_before_the_warm_generation_ran(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    runner, first, second = run_two_generations(run_reloadd, root, warm=True)
    assert f"warm start: pid {second['pid']}, 1 package preloaded" in runner.log()
    assert second["dep"]["mainAtRequire"] == str(root / "server.js")  # required before "go", yet sees the entry


def test_a_changed_config_env_reaches_the_next_generation(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    (root / "nodemon.json").write_text(json.dumps({"env": {"CONFIG_ENV": "one"}}))
    runner, first, _ = run_two_generations(run_reloadd, root, warm=True)
    assert first["env"]["CONFIG_ENV"] == "one"
    (root / "nodemon.json").write_text(json.dumps({"env": {"CONFIG_ENV": "two"}}))
    runner.wait_log("config reloaded")
    wait_for(lambda: "probe written v2" in runner.out() and runner.out().count("probe written") >= 3)
    set_version(root, "v3")
    third = read_probe(root, "v3")
    assert third["env"]["CONFIG_ENV"] == "two", runner.log()


@pytest.mark.parametrize("mode", ["warm", "cold"])
def test_an_error_at_start_is_reported_and_exits_as_cold(tmp_path: Path, run_reloadd: RunReloadd, mode: str) -> None:
    root = make_probe_app(tmp_path / "app")
    flags = ["-V", "--exitcrash"] + ([] if mode == "warm" else ["--no-warm"])
    runner = run_reloadd([*flags, "server.js"], root, env={"PROBE_THROW": "1"})
    assert runner.wait_exit() == 1
    out = runner.log() + runner.out()
    assert "Error: probe failed at start" in out
    assert "server.js:" in out  # node points at the line that threw


@pytest.mark.parametrize("mode", ["warm", "cold"])
def test_the_exit_code_passes_through(tmp_path: Path, run_reloadd: RunReloadd, mode: str) -> None:
    root = make_probe_app(tmp_path / "app")
    flags = ["--exitcrash"] + ([] if mode == "warm" else ["--no-warm"])
    runner = run_reloadd([*flags, "server.js"], root, env={"PROBE_EXIT": "7"})
    assert runner.wait_exit() == 7


def test_signals_and_stdin_reach_the_warm_generation(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    import subprocess

    root = make_probe_app(tmp_path / "app")
    runner = run_reloadd(["-V", "server.js"], root, stdin=subprocess.PIPE)
    read_probe(root, "v1")
    runner.wait_log(READY_PRELOADED)
    set_version(root, "v2")
    second = read_probe(root, "v2")
    assert runner.proc.stdin is not None
    runner.proc.stdin.write(b"hello app\n")
    runner.proc.stdin.flush()
    wait_for(lambda: (root / "stdin.log").exists() and b"hello app" in (root / "stdin.log").read_bytes())
    runner.signal(signal.SIGUSR1)
    signals = root / "signals.log"
    wait_for(lambda: signals.exists() and f"SIGUSR1 {second['pid']}" in signals.read_text())


def test_the_stop_leaves_the_warm_process_alone_and_exit_takes_it(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    runner, _, second = run_two_generations(run_reloadd, root, warm=True)
    assert "sending SIGUSR2 to 1 process" in runner.log()  # the waiting warm process is not the app's
    waiting = wait_for(lambda: set(warm_processes(runner.pid)) - {second["pid"]}, what="a waiting warm process")
    runner.signal(signal.SIGTERM)
    runner.wait_exit()
    wait_for(lambda: not any(psutil.pid_exists(pid) and alive(pid) for pid in waiting), what="warm process gone")


def test_a_warm_process_does_not_outlive_a_killed_reloadd(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    runner = run_reloadd(["-V", "server.js"], root)
    app = read_probe(root, "v1")["pid"]
    runner.wait_log("ready in")
    waiting = wait_for(lambda: set(warm_processes(runner.pid)) - {app}, what="a waiting warm process")
    runner.proc.kill()  # SIGKILL: no clean-up code of reloadd runs
    runner.proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in waiting), what="the warm process to exit on its own")


def warm_processes(parent: int) -> list[int]:
    found = []
    for child in psutil.Process(parent).children():
        try:
            if any(arg.endswith("warm_boot.cjs") for arg in child.cmdline()):
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
