"""Warm restarts: a generation started from a waiting, preloaded node sees exactly what a cold start sees.

Each equivalence test runs the probe app twice, once with warm restarts (the default) and once
with --no-warm, restarts it once so the second generation comes from a warm process that had
preloaded the app's dependency, and compares what the two second generations observed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest
from support import Reloadd, free_port, wait_for
from warm_support import inspector_evaluate, listeners, make_probe_app, read_probe, set_version

RunReloadd = Callable[..., Reloadd]
READY_PRELOADED = "s: 1 package preloaded"  # the warm process that follows generation 1 has the dependency loaded
WARM_TAKEN = "warm start: pid"
GATE_READY = "1 package preloaded and wrapped as an ES module"


def run_two_generations(
    run_reloadd: RunReloadd,
    root: Path,
    warm: bool,
    esm: bool = False,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    script: str = "",
    count: int = 2,
) -> tuple[Reloadd, dict[str, Any], dict[str, Any]]:
    """Start the probe app and change it ``count - 1`` times; the first probe and the last."""
    script = script or "server.js"
    flags = ["-V"] + ([] if warm else ["--no-warm"]) + (extra or [])
    runner = run_reloadd([*flags, script, "one", "two words"], root, env={"PROBE_ENV": "set", **(env or {})})
    first = last = read_probe(root, "v1", what=f"first probe; log:\n{runner.log()}")
    for number in range(2, count + 1):
        if warm:  # the warm process that follows this generation has its package loaded
            ready = "ready in" if esm else READY_PRELOADED
            warm_ready = lambda: runner.log().count(ready) >= number - 1  # noqa: B023, E731
            wait_for(warm_ready, what=f"warm process {number - 1}:\n{runner.log()}")
        set_version(root, f"v{number}", esm=esm)
        last = read_probe(root, f"v{number}", what=f"probe {number}; log:\n{runner.log()}")
    if warm:
        assert runner.log().count(WARM_TAKEN) >= count, runner.log()
    return runner, first, last


CLOCK_SMALL = 2.0  # seconds: process.uptime() and performance.now() when the app's first line runs
HRTIME_NEAR = 30e9  # ns: process.hrtime is the system's monotonic clock, as read by the test moments later


def comparable(probe: dict[str, Any], root: Path) -> dict[str, Any]:
    """What must be equal between cold and warm: everything but the pids, the version and values that
    differ between any two runs (ports and ids of an ephemeral inspector; clocks are turned into facts),
    plus what is seen from outside the process: its command line and the inspector's target list."""
    probe = dict(probe)
    pid = probe["pid"]
    for key in ("pid", "ppid", "version"):
        probe.pop(key)
    probe["uptime"] = probe["uptime"] < CLOCK_SMALL
    probe["performanceNow"] = probe["performanceNow"] < CLOCK_SMALL * 1000
    probe["hrtimeNs"] = abs(time.monotonic_ns() - int(probe["hrtimeNs"])) < HRTIME_NEAR
    probe["cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    if probe["inspectorUrl"]:
        probe["targets"] = inspector_targets(probe["inspectorUrl"])
    text = json.dumps(probe).replace(str(root), "ROOT").replace(str(root.parent), "TMP")
    if probe.get("ephemeral"):
        text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
        text = re.sub(r'"debugPort": \d+', '"debugPort": "PORT"', text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
    return dict(json.loads(text))


def inspector_targets(url: str) -> list[dict[str, Any]]:
    """What a debugger lists (Chrome's chrome://inspect, VS Code): /json/list of the inspector at ``url``."""
    port = int(url.split("/")[2].rsplit(":", 1)[1])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
        targets: list[dict[str, Any]] = json.loads(response.read())
    return targets


KINDS = ["commonjs", "esm", "esm-syntax-in-js", "inspect", "inspect-esm", "inspect-ephemeral"]


def script_name(kind: str) -> str:
    return "server.mjs" if kind in ("esm", "inspect-esm") else "server.js"


@pytest.mark.parametrize("kind", KINDS)
def test_a_warm_generation_sees_what_a_cold_one_sees(tmp_path: Path, run_reloadd: RunReloadd, kind: str) -> None:
    observed = {}
    port = "0" if kind == "inspect-ephemeral" else str(free_port())
    extra = [f"--inspect=127.0.0.1:{port}"] if kind.startswith("inspect") else []
    esm = "esm" in kind
    for mode in ("warm", "cold"):
        root = make_probe_app(
            tmp_path / mode / "app", esm=kind in ("esm", "inspect-esm"), esm_in_js=kind == "esm-syntax-in-js"
        )
        script = script_name(kind)
        # An ES module app's second warm process is the first with its packages wrapped (GATE_READY).
        runner, _, second = run_two_generations(
            run_reloadd, root, warm=mode == "warm", esm=esm, extra=extra, script=script, count=3 if esm else 2
        )
        if esm and mode == "warm" and kind != "esm-syntax-in-js":
            assert GATE_READY in runner.log(), runner.log()
        assert second["ppid"] == runner.pid  # reloadd is the app's parent, warm or cold
        assert os.getpgid(second["pid"]) == second["pid"]  # in its own process group, as a cold start
        observed[mode] = comparable({**second, "ephemeral": port == "0"}, root)
        runner.stop()
    if extra:  # the one known difference (README): the inspector's flag is not on the warm command line
        cold_line = observed["cold"]["cmdline"]
        assert observed["warm"]["cmdline"] == [arg for arg in cold_line if not arg.startswith("--inspect=")]
        observed["warm"]["cmdline"] = cold_line
        (target,) = observed["cold"]["targets"]
        assert target["title"] == script_name(kind) and target["url"] == f"file://ROOT/{script_name(kind)}"
    assert observed["warm"] == observed["cold"]
    if kind == "commonjs":
        cold = observed["cold"]
        assert cold["mainIsModule"] and cold["moduleId"] == "." and cold["dep"]["mainAtRequire"].endswith("server.js")
        assert cold["argv"][1:] == ["ROOT/server.js", "one", "two words"]


# What a developer breaks, appended to the entry point once the first generation runs: the error
# node prints must be the same text warm or cold, the user's frames only, printed once.
FAILURES = {
    "start": ("throw new Error('thrown at start');\n", "Error: thrown at start"),
    "required": ("REQUIRE_BOOM\n", "Error: thrown in a required module"),
    "timer": (
        "setTimeout(function tick() {\n  throw new Error('thrown in a timer');\n}, 1);\n",
        "Error: thrown in a timer",
    ),
    "rejection": ("Promise.reject(new Error('an unhandled rejection'));\n", "Error: an unhandled rejection"),
}
BOOM = "function explode() {\n  throw new Error('thrown in a required module');\n}\nexplode();\n"


def node_output(log: str) -> str:
    return "".join(line for line in log.splitlines(keepends=True) if not line.startswith("[reloadd]"))


@pytest.mark.parametrize("where", sorted(FAILURES))
@pytest.mark.parametrize("kind", ["commonjs", "esm"])
def test_an_error_prints_as_node_prints_it(tmp_path: Path, run_reloadd: RunReloadd, kind: str, where: str) -> None:
    esm = kind == "esm"
    script = "server.mjs" if esm else "server.js"
    code, header = FAILURES[where]
    code = code.replace("REQUIRE_BOOM", "import './lib/boom.mjs';" if esm else "require('./lib/boom.js');")
    printed = {}
    for mode in ("warm", "cold"):
        root = make_probe_app(tmp_path / mode / "app", esm=esm)
        (root / "lib").mkdir()
        (root / "lib" / ("boom.mjs" if esm else "boom.js")).write_text(BOOM)
        runner = run_reloadd(["-V", *([] if mode == "warm" else ["--no-warm"]), script], root)
        read_probe(root, "v1")
        if mode == "warm":
            runner.wait_log(READY_PRELOADED if not esm else "ready in")
        if esm:  # one generation more: the warm process that runs the broken code is a gated one
            set_version(root, "v2", esm=True)
            read_probe(root, "v2")
            if mode == "warm":
                runner.wait_log(GATE_READY)
        mark = len(runner.log())
        with (root / script).open("a") as entry:
            entry.write(code)
        runner.wait_log("app crashed")
        printed[mode] = node_output(runner.log()[mark:]).replace(str(root), "ROOT")
        if mode == "warm":
            assert runner.log().count(WARM_TAKEN) >= 2, runner.log()
        runner.stop()
    assert printed["warm"] == printed["cold"]
    assert printed["warm"].count(header) == 1, printed["warm"]
    assert not any(ours in printed["warm"] for ours in ("warm_boot", "warm_gate", "reloadd"))
    assert f"ROOT/{'lib/boom' if where == 'required' else 'server'}.{'mjs' if esm else 'js'}:" in printed["warm"]


def test_the_clocks_count_from_the_apps_start(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    runner = run_reloadd(["-V", "server.js"], root)
    app = read_probe(root, "v1")["pid"]
    runner.wait_log(READY_PRELOADED)
    (waiting,) = wait_for(lambda: set(warm_processes(runner.pid)) - {app}, what="a waiting warm process")
    born = psutil.Process(waiting).create_time()
    wait_for(lambda: time.time() - born > CLOCK_SMALL + 0.5, what="the warm process to have waited a while")
    set_version(root, "v2")
    second = read_probe(root, "v2")
    assert second["pid"] == waiting
    assert second["uptime"] < CLOCK_SMALL and second["performanceNow"] < CLOCK_SMALL * 1000, second
    assert second["timeOriginIsStart"]


def test_the_dependency_was_preloaded_before_the_warm_generation_ran(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    runner, first, second = run_two_generations(run_reloadd, root, warm=True)
    assert f"warm start: pid {second['pid']}, 1 package preloaded" in runner.log()
    assert second["dep"]["mainAtRequire"] == str(root / "server.js")  # required before "go", yet sees the entry


def test_an_es_module_apps_commonjs_packages_are_preloaded(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app", esm=True)
    runner = run_reloadd(["-V", "server.mjs"], root)
    read_probe(root, "v1")
    runner.wait_log(READY_PRELOADED)  # the package the first generation imported
    set_version(root, "v2", esm=True)
    second = read_probe(root, "v2")
    assert f"warm start: pid {second['pid']}, 1 package preloaded" in runner.log()
    assert second["dep"]["mainIsUndefinedAtRequire"] is True  # required early, yet as an ES module app sees it


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


@pytest.mark.parametrize("kind", ["commonjs", "esm"])
@pytest.mark.parametrize("mode", ["warm", "cold"])
def test_an_error_at_start_is_reported_and_exits_as_cold(
    tmp_path: Path, run_reloadd: RunReloadd, mode: str, kind: str
) -> None:
    root = make_probe_app(tmp_path / "app", esm=kind == "esm")
    flags = ["-V", "--exitcrash"] + ([] if mode == "warm" else ["--no-warm"])
    script = "server.mjs" if kind == "esm" else "server.js"
    runner = run_reloadd([*flags, script], root, env={"PROBE_THROW": "1"})
    assert runner.wait_exit() == 1
    out = runner.log() + runner.out()
    assert out.count("Error: probe failed at start") == 1
    assert f"{script}:" in out  # node points at the line that threw


@pytest.mark.parametrize("kind", ["commonjs", "esm"])
@pytest.mark.parametrize("mode", ["warm", "cold"])
def test_the_exit_code_passes_through(tmp_path: Path, run_reloadd: RunReloadd, mode: str, kind: str) -> None:
    root = make_probe_app(tmp_path / "app", esm=kind == "esm")
    flags = ["--exitcrash"] + ([] if mode == "warm" else ["--no-warm"])
    script = "server.mjs" if kind == "esm" else "server.js"
    runner = run_reloadd([*flags, script], root, env={"PROBE_EXIT": "7"})
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
    waiting = set(wait_for(lambda: set(warm_processes(runner.pid)) - {second["pid"]}, what="a waiting warm process"))
    runner.signal(signal.SIGTERM)
    runner.wait_exit()
    wait_for(lambda: not any(psutil.pid_exists(pid) and alive(pid) for pid in waiting), what="warm process gone")


def test_a_warm_process_does_not_outlive_a_killed_reloadd(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    runner = run_reloadd(["-V", "server.js"], root)
    app = read_probe(root, "v1")["pid"]
    runner.wait_log("ready in")
    waiting = set(wait_for(lambda: set(warm_processes(runner.pid)) - {app}, what="a waiting warm process"))
    runner.proc.kill()  # SIGKILL: no clean-up code of reloadd runs
    runner.proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in waiting), what="the warm process to exit on its own")


def warm_processes(parent: int) -> list[int]:
    """Children of reloadd started as warm processes (waiting, or a generation that came from one).

    Their command line is the app's own; only the environment they started with names the bootstrap.
    """
    found = []
    for child in psutil.Process(parent).children():
        try:
            if "warm_boot.cjs" in child.environ().get("NODE_OPTIONS", ""):
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_inspector_port_belongs_to_the_running_generation_and_a_debugger_attaches(
    tmp_path: Path, run_reloadd: RunReloadd
) -> None:
    root = make_probe_app(tmp_path / "app")
    port = free_port()
    runner = run_reloadd(["-V", f"--inspect=127.0.0.1:{port}", "server.js"], root)
    first = read_probe(root, "v1")
    runner.wait_log(READY_PRELOADED)
    assert listeners(port) == {first["pid"]}  # the waiting warm process does not hold the port
    assert inspector_evaluate(port, "process.pid") == first["pid"]
    set_version(root, "v2")
    second = read_probe(root, "v2")
    assert f"warm start: pid {second['pid']}" in runner.log()
    wait_for(lambda: listeners(port) == {second["pid"]}, what=f"the new generation on {port}: {runner.log()}")
    assert inspector_evaluate(port, "process.pid") == second["pid"]
    assert second["execArgv"] == [f"--inspect=127.0.0.1:{port}"]


# ---------------------------------------------------------------- falling back to a cold start


@pytest.mark.parametrize(
    ("flags", "env", "config"),
    [(["--no-warm"], {}, None), ([], {"RELOADD_WARM": "0"}, None), ([], {}, {"warm": False})],
    ids=["flag", "variable", "config"],
)
def test_warm_restarts_can_be_turned_off(
    tmp_path: Path, run_reloadd: RunReloadd, flags: list[str], env: dict[str, str], config: Any
) -> None:
    root = make_probe_app(tmp_path / "app")
    if config is not None:
        (root / "nodemon.json").write_text(json.dumps(config))
    runner = run_reloadd(["-V", *flags, "server.js"], root, env=env)
    read_probe(root, "v1")
    set_version(root, "v2")
    read_probe(root, "v2")
    assert "cold start: warm restarts are off" in runner.log()
    assert WARM_TAKEN not in runner.log() and not warm_processes(runner.pid)


def test_a_command_that_is_not_node_running_a_script_starts_cold(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    runner = run_reloadd(["-V", "--", "sh", "-c", "exec node server.js"], root)
    read_probe(root, "v1")
    assert "cold start: `sh -c 'exec node server.js'` is not node running a script" in runner.log()
    assert not warm_processes(runner.pid)


def test_a_change_to_package_json_starts_with_nothing_preloaded(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    runner = run_reloadd(["-V", "server.js"], root)
    read_probe(root, "v1")
    runner.wait_log(READY_PRELOADED)
    (root / "package.json").write_text('{"name": "probe-app", "version": "1.0.1"}\n')
    runner.wait_log("starting with nothing preloaded: the change touched package.json")
    runner.wait_log("0 packages preloaded")


def test_a_manual_restart_starts_with_nothing_preloaded(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    runner = run_reloadd(["-V", "server.js"], root)
    read_probe(root, "v1")
    runner.wait_log(READY_PRELOADED)
    runner.signal(signal.SIGHUP)
    runner.wait_log("starting with nothing preloaded: a manual restart")


def test_a_warm_process_that_died_means_a_cold_start(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    runner = run_reloadd(["-V", "server.js"], root)
    app = read_probe(root, "v1")["pid"]
    runner.wait_log(READY_PRELOADED)
    (waiting,) = set(warm_processes(runner.pid)) - {app}
    os.kill(waiting, signal.SIGKILL)
    wait_for(lambda: not alive(waiting), what="the warm process to be reaped")
    set_version(root, "v2")
    read_probe(root, "v2")
    assert f"cold start: the warm process died (status {128 + signal.SIGKILL})" in runner.log()
    assert "reaped orphan" not in runner.log()


# A dependency that reads one of the app's files when it is required.
READS_SETTINGS = """\
const fs = require('fs');
const path = require('path');
module.exports = JSON.parse(fs.readFileSync(path.join(process.cwd(), 'settings.json'), 'utf8'));
"""


def test_a_dependency_that_reads_app_files_when_required_is_never_preloaded(
    tmp_path: Path, run_reloadd: RunReloadd
) -> None:
    root = make_probe_app(tmp_path / "app")
    add_dependency(root, "reads-settings", READS_SETTINGS)
    (root / "settings.json").write_text('{"value": "one"}')
    server = root / "server.js"
    server.write_text(server.read_text() + "\nconsole.log('settings ' + require('reads-settings').value);\n")
    runner = run_reloadd(["-V", "server.js"], root)
    read_probe(root, "v1")
    runner.wait_log("never preloading reads-settings: read " + str(root / "settings.json"))
    runner.wait_log(READY_PRELOADED)  # its replacement preloads only what is safe
    (root / "settings.json").write_text('{"value": "two"}')
    wait_for(lambda: "settings two" in runner.out(), what=f"the new settings; log:\n{runner.log()}")


POLYFILL = "globalThis.polyfilled = (globalThis.polyfilled || 0) + 1;\n"


def test_a_preloaded_dependency_the_new_code_no_longer_requires_is_dropped(
    tmp_path: Path, run_reloadd: RunReloadd
) -> None:
    root = make_probe_app(tmp_path / "app")
    add_dependency(root, "polyfill", POLYFILL)
    server = root / "server.js"
    original = server.read_text()
    server.write_text("require('polyfill');\n" + original + "\nconsole.log('polyfilled ' + globalThis.polyfilled);\n")
    runner = run_reloadd(["-V", "server.js"], root)
    read_probe(root, "v1")
    runner.wait_log("s: 2 packages preloaded")
    server.write_text(original + "\nconsole.log('polyfilled ' + globalThis.polyfilled);\n")
    runner.wait_log("the new code no longer requires polyfill, which was preloaded")
    wait_for(lambda: runner.out().rstrip().endswith("polyfilled undefined") or "polyfilled undefined" in runner.out())


def add_dependency(root: Path, name: str, source: str) -> None:
    package = root / "node_modules" / name
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": name, "version": "1.0.0"}))
    (package / "index.js").write_text(source)


def test_an_app_that_shares_reloadds_terminal_starts_cold(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    import pty

    root = make_probe_app(tmp_path / "app")
    leader, follower = pty.openpty()
    try:
        runner = run_reloadd(["-V", "--no-stdin", "server.js"], root, stdin=follower)
        first = read_probe(root, "v1")
        assert first["stdin"]["isTTY"] is True
        assert "cold start: the app shares reloadd's terminal" in runner.log()
        assert not warm_processes(runner.pid)
    finally:
        os.close(leader)
        os.close(follower)


def test_with_reloadd_reading_the_terminal_the_app_gets_a_pipe_warm_or_cold(
    tmp_path: Path, run_reloadd: RunReloadd
) -> None:
    import pty

    root = make_probe_app(tmp_path / "app")
    leader, follower = pty.openpty()
    try:
        runner = run_reloadd(["-V", "server.js"], root, stdin=follower)
        first = read_probe(root, "v1")
        runner.wait_log(READY_PRELOADED)
        set_version(root, "v2")
        second = read_probe(root, "v2")
        assert first["stdin"]["isTTY"] is False and second["stdin"]["isTTY"] is False
        assert f"warm start: pid {second['pid']}" in runner.log()
    finally:
        os.close(leader)
        os.close(follower)


def test_an_install_while_the_warm_process_waits_starts_with_nothing_preloaded(
    tmp_path: Path, run_reloadd: RunReloadd
) -> None:
    root = make_probe_app(tmp_path / "app")
    runner = run_reloadd(["-V", "server.js"], root)
    read_probe(root, "v1")
    runner.wait_log(READY_PRELOADED)
    dep = root / "node_modules" / "probe-dep"  # ignored by the watcher, as node_modules always is
    (dep / "package.json").write_text('{"name": "probe-dep", "version": "1.0.1", "main": "index.js"}\n')
    (dep / "index.js").write_text((dep / "index.js").read_text().replace("seen = {", "seen = { upgraded: true,"))
    set_version(root, "v2")
    second = read_probe(root, "v2")
    assert "starting with nothing preloaded: packages were installed or changed while the warm process waited" in (
        runner.log()
    )
    assert second["dep"]["upgraded"] is True


PATCHES_REQUIRE = """\
const Module = require('module');
const original = Module.prototype.require;
Module.prototype.require = function (id) { return original.apply(this, arguments); };
"""


def test_an_app_that_patches_the_module_loader_gets_nothing_preloaded(tmp_path: Path, run_reloadd: RunReloadd) -> None:
    root = make_probe_app(tmp_path / "app")
    server = root / "server.js"
    server.write_text(PATCHES_REQUIRE + server.read_text())
    runner = run_reloadd(["-V", "server.js"], root)
    read_probe(root, "v1")
    runner.wait_log("the app changes how modules are loaded: warm processes preload nothing")
    runner.wait_log("ready in")
    set_version(root, "v2")
    second = read_probe(root, "v2")
    assert f"warm start: pid {second['pid']}, 0 packages preloaded" in runner.log()


def test_an_es_module_app_keeps_its_packages_preloaded_and_wrapped_restart_after_restart(
    tmp_path: Path, run_reloadd: RunReloadd
) -> None:
    """A package whose main re-exports another file (as express's does) is still the app's after its ES
    module wrapper was built early: no restart says it is no longer required, and every warm start from
    the second on has it preloaded."""
    root = tmp_path / "app"
    root.mkdir()
    lib = root / "node_modules" / "reexporting"
    (lib / "lib").mkdir(parents=True)
    (lib / "package.json").write_text('{"name": "reexporting", "main": "index.js"}\n')
    (lib / "index.js").write_text("module.exports = require('./lib/impl.js');\n")
    (lib / "lib" / "impl.js").write_text("exports.greet = (who) => `hello ${who}`;\n")
    (root / "server.mjs").write_text(
        "import { greet } from 'reexporting';\nimport version from './version.mjs';\n"
        "import { appendFileSync } from 'fs';\n"
        "appendFileSync('starts.log', `${greet(version)}\\n`);\nsetInterval(() => {}, 1000);\n"
    )
    set_version(root, "v1", esm=True)
    runner = run_reloadd(["-V", "server.mjs"], root)
    started = root / "starts.log"
    for number in range(2, 6):
        wait_for(lambda: started.exists() and started.read_text().count("\n") >= number - 1, what=runner.log())  # noqa: B023
        wait_for(lambda: runner.log().count("ready in") >= number - 1, what=f"warm process:\n{runner.log()}")  # noqa: B023
        set_version(root, f"v{number}", esm=True)
    wait_for(lambda: "hello v5" in started.read_text(), what=runner.log())
    log = runner.log()
    assert "no longer requires" not in log, log
    assert GATE_READY in log, log
    preloaded = [int(n) for n in re.findall(r"warm start: pid \d+, (\d+) packages? preloaded", log)]
    assert len(preloaded) >= 5 and all(n >= 1 for n in preloaded[1:]), log  # the first start had nothing to preload
