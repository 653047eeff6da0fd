# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""Dependency changes synced into the pod: a batch that changes package.json and its lockfile runs the
install there (npm ci, offline: the dependency is a local ``file:`` package) before one restart;
a failing install keeps the old app serving and says why on the laptop. ``--transport env`` and
a real node app under reloadd in the pod directory."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest
from fs_support import hold
from support import Reloadd, free_port, starts, wait_for
from sync_support import control_env, served, start_sync

QUIET = 1.5  # seconds with no further restart: "exactly one restart for this batch"
INSTALL_BOUND = 60.0  # seconds for npm ci of one local package (about 1 s here)
NPM_OFFLINE = {  # nothing from the registry: the tests' only dependency is a local folder
    "npm_config_offline": "true",
    "npm_config_audit": "false",
    "npm_config_fund": "false",
    "npm_config_update_notifier": "false",
}

SERVER_JS = """\
const fs = require('fs');
const http = require('http');
fs.appendFileSync(__dirname + '/starts.log', process.pid + '\\n');
const answer = () => { try { return require('greet')('pod'); } catch (e) { return 'v1'; } };
http.createServer((req, res) => res.end(answer())).listen(Number(process.env.PORT), '127.0.0.1');
"""
EMPTY_LOCK = {
    "name": "app",
    "version": "1.0.0",
    "lockfileVersion": 3,
    "requires": True,
    "packages": {"": {"name": "app", "version": "1.0.0"}},
}


def with_dependency(folder: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """package.json and its package-lock.json with one dependency, ``greet``, from a local folder."""
    package = {"name": "app", "version": "1.0.0", "dependencies": {"greet": f"file:./{folder}"}}
    lock = {
        "name": "app",
        "version": "1.0.0",
        "lockfileVersion": 3,
        "requires": True,
        "packages": {
            "": {"name": "app", "version": "1.0.0", "dependencies": {"greet": f"file:./{folder}"}},
            "node_modules/greet": {"resolved": folder, "link": True},
            folder: {"version": "1.0.0"},
        },
    }
    return package, lock


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    root = tmp_path / "laptop"
    (root / "vendor" / "greet").mkdir(parents=True)
    (root / "vendor" / "greet" / "package.json").write_text('{"name": "greet", "version": "1.0.0"}')
    (root / "vendor" / "greet" / "index.js").write_text("module.exports = (name) => 'hello ' + name;\n")
    (root / "server.js").write_text(SERVER_JS)
    (root / "package.json").write_text(json.dumps({"name": "app", "version": "1.0.0"}))
    (root / "package-lock.json").write_text(json.dumps(EMPTY_LOCK))
    return root


def session(run_reloadd: Callable[..., Reloadd], laptop: Path, pod: Path) -> tuple[Reloadd, int]:
    sync = start_sync(run_reloadd, laptop, pod, env=NPM_OFFLINE)
    wait_for(lambda: "restarted" in sync.log() or "no reloadd in the pod" in sync.log(), what=sync.log())
    port = free_port()
    app = run_reloadd(["server.js"], pod, env={"PORT": str(port), **control_env(pod.parent)})
    wait_for(lambda: served(port) == "v1", what=f"the app in the pod:\n{app.log()}")
    return sync, port


def write_both(laptop: Path, package: dict[str, Any], lock: dict[str, Any]) -> None:
    """package.json and its lockfile in one save (one batch)."""
    (laptop / "package.json").write_text(json.dumps(package))
    (laptop / "package-lock.json").write_text(json.dumps(lock))


def test_a_new_dependency_is_installed_in_the_pod_before_one_restart(run_reloadd, laptop: Path, pod: Path) -> None:
    sync, port = session(run_reloadd, laptop, pod)
    before = len(starts(pod))
    write_both(laptop, *with_dependency("vendor/greet"))
    wait_for(lambda: served(port) == "hello pod", timeout=INSTALL_BOUND, what=f"the new route:\n{sync.log()}")
    time.sleep(QUIET)
    assert len(starts(pod)) == before + 1, sync.log()  # once, after the install, never before it
    assert (pod / "node_modules" / "greet").exists()
    log = sync.log()
    assert "| running npm ci" in log and re.search(r"→ installed \(npm ci, [\d.]+ m?s\), restarted in ", log), log


def test_a_failing_install_keeps_the_old_app_and_says_why_then_the_next_change_retries(
    run_reloadd, laptop: Path, pod: Path
) -> None:
    sync, port = session(run_reloadd, laptop, pod)
    before = len(starts(pod))
    package, lock = with_dependency("vendor/greet")
    lock["packages"]["node_modules/greet"]["resolved"] = "vendor/elsewhere"
    write_both(laptop, package, lock)  # the lockfile disagrees with package.json: npm ci refuses
    wait_for(lambda: "npm ci failed (exit status" in sync.log(), timeout=INSTALL_BOUND, what=sync.log())
    time.sleep(QUIET)
    assert len(starts(pod)) == before and served(port) == "v1", sync.log()  # the old app serves on
    assert "the app keeps running the previous code" in sync.log()

    write_both(laptop, *with_dependency("vendor/greet"))  # fixed: the same paths change, npm ci runs again
    wait_for(lambda: served(port) == "hello pod", timeout=INSTALL_BOUND, what=f"the retried install:\n{sync.log()}")


def test_configured_on_change_rules_replace_the_default(run_reloadd, laptop: Path, pod: Path) -> None:
    rules = [{"paths": ["schema/*.sql"], "run": "echo migrating > migrated.txt; echo done-migrating"}]
    (laptop / "nodemon.json").write_text(json.dumps({"sync": {"onChange": rules}}))
    sync, port = session(run_reloadd, laptop, pod)
    (laptop / "schema").mkdir()
    (laptop / "schema" / "001.sql").write_text("create table t (x int);\n")
    wait_for(lambda: (pod / "migrated.txt").exists(), timeout=INSTALL_BOUND, what=sync.log())
    wait_for(lambda: "| done-migrating" in sync.log(), what=sync.log())  # its output, on the laptop
    before = sync.log().count("| running ")
    write_both(laptop, *with_dependency("vendor/greet"))  # package.json is no rule's path any more
    wait_for(lambda: sync.log().count("→ ") >= 3, what=sync.log())
    time.sleep(QUIET)
    assert sync.log().count("| running ") == before and not (pod / "node_modules").exists(), sync.log()


def test_a_sync_stopped_during_an_install_ends_it_and_keeps_the_app(run_reloadd, laptop: Path, pod: Path) -> None:
    marker = "31.4159"  # a sleep nobody else runs
    (laptop / "nodemon.json").write_text(
        json.dumps({"sync": {"onChange": [{"paths": "deps.txt", "run": f"sleep {marker}"}]}})
    )
    sync, port = session(run_reloadd, laptop, pod)
    before = len(starts(pod))
    (laptop / "deps.txt").write_text("a change that needs the command\n")
    wait_for(lambda: f"| running sleep {marker}" in sync.log(), what=sync.log())
    wait_for(lambda: sleepers(marker), what="the command to start")
    sync.signal(signal.SIGTERM)
    sync.wait_exit()
    wait_for(lambda: not sleepers(marker), what="the command's process group to end with the session")
    time.sleep(QUIET)
    assert len(starts(pod)) == before and served(port) == "v1"  # the old app serves on, not restarted


def test_an_install_cut_off_with_the_session_runs_again_when_the_next_one_starts(
    run_reloadd, laptop: Path, pod: Path
) -> None:
    """A dead link during `npm ci` must not leave the pod on half-installed dependencies until the
    next dependency change: the reconnection (a new session, nothing to send) runs it again."""
    marker = "27.1828"  # a sleep nobody else runs
    once = f"if [ -e tried ]; then echo installed-ok; else touch tried; sleep {marker}; fi"
    (laptop / "nodemon.json").write_text(json.dumps({"sync": {"onChange": [{"paths": "deps.txt", "run": once}]}}))
    sync, port = session(run_reloadd, laptop, pod)
    before = len(starts(pod))
    (laptop / "deps.txt").write_text("a change that needs the command\n")
    wait_for(lambda: sleepers(marker), what=f"the command to start; log:\n{sync.log()}")
    sync.signal(signal.SIGTERM)
    sync.wait_exit()
    wait_for(lambda: not sleepers(marker), what="the command's process group to end with the session")
    assert len(starts(pod)) == before and served(port) == "v1"
    again = start_sync(run_reloadd, laptop, pod, env=NPM_OFFLINE)
    wait_for(lambda: "| installed-ok" in again.log(), timeout=INSTALL_BOUND, what=again.log())
    assert "did not finish in an earlier session: running it again" in again.log(), again.log()
    wait_for(lambda: len(starts(pod)) == before + 1, what=f"one restart after the install; log:\n{again.log()}")
    wait_for(lambda: re.search(r"\S+: installed \(if .*\), restarted in", again.log()), what=again.log())
    again.signal(signal.SIGTERM)
    again.wait_exit()
    third = start_sync(run_reloadd, laptop, pod, env=NPM_OFFLINE)  # paid: nothing is owed any more
    hold(
        lambda: "| running" not in third.log() and len(starts(pod)) == before + 1,
        QUIET,
        f"no install and no restart; log:\n{third.log()}",
    )


def sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", marker]:
            found.append(proc)
    return found


FLAKY_INSTALL = (
    "if [ -e deps-broken ]; then echo 'npm error code EUSAGE'; "
    'for n in $(seq 30); do echo "usage line $n"; done; exit 1; fi; echo installed-ok'
)


def test_after_a_failed_install_every_save_runs_it_again_before_any_restart(
    run_reloadd, laptop: Path, pod: Path
) -> None:
    (laptop / "nodemon.json").write_text(json.dumps({"sync": {"onChange": [{"paths": "deps*", "run": FLAKY_INSTALL}]}}))
    sync, port = session(run_reloadd, laptop, pod)
    before = len(starts(pod))
    (laptop / "deps-broken").write_text("the install fails while this file is here\n")
    wait_for(lambda: "failed (exit status 1)" in sync.log(), timeout=INSTALL_BOUND, what=sync.log())
    log = sync.log()
    summary = log[log.rindex("failed (exit status 1)") :]
    assert "npm error code EUSAGE" in summary and "usage line 30" not in summary, log  # why, not the usage text

    (laptop / "server.js").write_text(SERVER_JS + "// an ordinary edit\n")  # no dependency file changed
    wait_for(lambda: log.count("| running ") < sync.log().count("| running "), what=sync.log())
    wait_for(lambda: sync.log().count("failed (exit status 1)") == 2, timeout=INSTALL_BOUND, what=sync.log())
    time.sleep(QUIET)
    assert len(starts(pod)) == before and served(port) == "v1", sync.log()  # no restart onto broken deps

    (laptop / "deps-broken").unlink()
    wait_for(lambda: "| installed-ok" in sync.log(), timeout=INSTALL_BOUND, what=sync.log())
    wait_for(lambda: len(starts(pod)) == before + 1, what=sync.log())
