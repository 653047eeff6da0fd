# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""``reloadd sync`` through the real ``kubectl`` binary, against a stand-in API server (kube_standin.py)
that speaks pods/exec over WebSocket and runs the agent on this machine: the clean path, the
network failing in the ways a developer's day does (a dropped connection, a frozen one, a stopped
agent), and kubectl's own failures, each of which must come out as one line of ours and the exit
status the README lists. Never run against a real cluster."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_standin import StandIn
from support import DEADLINE, free_port, make_app, starts, wait_for
from sync_support import control_env, first_sync_done, served, tree

from reloadd.sync.laptop.kubectl import EXIT_FORBIDDEN, EXIT_NO_AGENT, EXIT_NO_KUBECTL, EXIT_NOT_FOUND
from reloadd.sync.shared.heartbeat import HEARTBEAT_WINDOW

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs the kubectl binary on PATH")

KLOG_LINE = re.compile(r"^\S*\s*[EWI]\d{4} ", re.MULTILINE)  # kubectl's internal log lines must never show
SHORT_WINDOW = "2"  # --heartbeat for the fault tests that are not about the default window itself
RECONNECT_BOUND = 10.0  # a frozen link or a stopped agent is reported and reconnected within this (default window)
ONE_AGENT_AFTER = 15.0  # ...and by then at most one agent per stream is alive in the pod


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandIn]:
    server = StandIn(tmp_path / "cluster")
    yield server
    server.stop()


def sync_env(standin: StandIn, tmp_path: Path) -> dict[str, str]:
    return {**standin.env(), **control_env(tmp_path)}


def add_pod(standin: StandIn, tmp_path: Path, name: str, **kwargs: object) -> Path:
    pod = standin.cluster.add_pod(name, env=control_env(tmp_path), **kwargs)
    return pod.directory


def start(run_reloadd, standin: StandIn, tmp_path: Path, *args: str):
    laptop = tmp_path / "laptop"
    if not laptop.exists():
        make_app(laptop)
    return run_reloadd(["sync", str(laptop), *args], laptop, env=sync_env(standin, tmp_path))


def synced(run_reloadd, standin: StandIn, tmp_path: Path, *args: str):
    sync = start(run_reloadd, standin, tmp_path, *args)
    wait_with_log(sync, lambda: first_sync_done(sync) or sync.proc.poll() is not None, "the first sync", 2 * DEADLINE)
    assert sync.proc.poll() is None, sync.log()
    return sync


def wait_with_log(sync, condition, what: str, timeout: float = DEADLINE) -> None:
    """wait_for, with reloadd's log as it is when the wait fails (not as it was when it began)."""
    try:
        wait_for(condition, timeout=timeout, what=what)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{sync.log()}") from None


def agents(standin: StandIn) -> list[int]:
    """The pids of the agents alive in the "pods" (the processes the exec streams started)."""
    return [stream.proc.pid for stream in standin.cluster.live_streams()]


def run_app(run_reloadd, pod: Path, tmp_path: Path) -> int:
    port = free_port()
    app = run_reloadd(["server.js"], pod, env={"PORT": str(port), **control_env(tmp_path)})
    wait_for(lambda: served(port).startswith("v1"), what=f"the app in the pod:\n{app.log()}")
    return port


def same_file(one: Path, other: Path) -> bool:
    """Compared as bytes, and only when the sizes agree: decoding megabytes every poll starves a busy machine."""
    try:
        return one.stat().st_size == other.stat().st_size and one.read_bytes() == other.read_bytes()
    except FileNotFoundError:
        return False


def test_a_dropped_connection_reconnects_and_edits_made_meanwhile_arrive(
    run_reloadd, standin: StandIn, tmp_path: Path
) -> None:
    pod = add_pod(standin, tmp_path, "web-1")
    sync = synced(run_reloadd, standin, tmp_path, "--to", "pod/web-1", "--heartbeat", SHORT_WINDOW)
    laptop = tmp_path / "laptop"
    standin.cluster.drop_all()
    (laptop / "version.js").write_text("module.exports = 'while away';\n")
    (laptop / "added.js").write_text("added")
    sync.wait_log("— reconnecting")
    wait_with_log(sync, lambda: tree(pod) == tree(laptop), "the resync")
    # The dropped stream's agent kept its stdin open (as a node may): it ends by its own heartbeat.
    wait_for(lambda: len(agents(standin)) == 1, timeout=DEADLINE, what="one agent left in the pod")
    assert not KLOG_LINE.search(sync.log()) and "websocket" not in sync.log(), sync.log()


def test_an_agent_slower_to_start_than_the_window_is_waited_for(run_reloadd, standin: StandIn, tmp_path: Path) -> None:
    """Silence before the agent's first word is not a dead link: nothing can ping before the agent runs."""
    pod = add_pod(standin, tmp_path, "web-1")
    standin.cluster.start_delay = 2 * float(SHORT_WINDOW)
    sync = synced(run_reloadd, standin, tmp_path, "--to", "pod/web-1", "--heartbeat", SHORT_WINDOW)
    assert tree(pod) == tree(tmp_path / "laptop")
    assert "reconnecting" not in sync.log() and "could not start" not in sync.log(), sync.log()


def test_a_save_is_served_and_a_frozen_link_is_noticed_within_the_window_resynced_in_one_batch(
    run_reloadd, standin: StandIn, tmp_path: Path
) -> None:
    pod = add_pod(standin, tmp_path, "web-1")
    sync = synced(run_reloadd, standin, tmp_path, "--to", "pod/web-1")  # the default window
    laptop = tmp_path / "laptop"
    assert tree(pod) == tree(laptop)
    port = run_app(run_reloadd, pod, tmp_path)
    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    wait_with_log(sync, lambda: served(port).startswith("v2 "), "v2 served")
    restarts = len(starts(pod))
    frozen_at = time.monotonic()
    standin.cluster.freeze_all()  # the lid shut: the socket stays open, nothing flows
    (laptop / "version.js").write_text("module.exports = 'v3';\n")
    (laptop / "other.js").write_text("// made while the link was frozen\n")
    sync.wait_log(f"pod/web-1: no answer for {HEARTBEAT_WINDOW:g} s — reconnecting", timeout=RECONNECT_BOUND + 2)
    wait_with_log(sync, lambda: "reconnected to pod/web-1" in sync.log(), "reconnected", RECONNECT_BOUND)
    assert time.monotonic() - frozen_at <= RECONNECT_BOUND + 3  # generous for a loaded machine
    wait_with_log(sync, lambda: served(port).startswith("v3 "), "v3 served")
    assert (pod / "other.js").exists()
    remaining = ONE_AGENT_AFTER - (time.monotonic() - frozen_at)
    wait_for(lambda: len(agents(standin)) == 1, timeout=max(remaining, 0.5), what="at most one agent per stream")
    assert len(starts(pod)) == restarts + 1  # both files came in one batch: one restart
    assert not KLOG_LINE.search(sync.log()) and "websocket" not in sync.log(), sync.log()


def test_a_stopped_agent_with_a_full_pipe_does_not_hang_the_laptop(
    run_reloadd, standin: StandIn, tmp_path: Path
) -> None:
    pod = add_pod(standin, tmp_path, "web-1")
    sync = synced(run_reloadd, standin, tmp_path, "--to", "pod/web-1", "--heartbeat", SHORT_WINDOW, "-V")
    (stopped,) = agents(standin)
    os.kill(stopped, signal.SIGSTOP)
    try:
        laptop = tmp_path / "laptop"
        (laptop / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))  # more than every pipe on the way holds
        sync.wait_log("— reconnecting", timeout=4 * float(SHORT_WINDOW))
        wait_with_log(sync, lambda: same_file(pod / "big.bin", laptop / "big.bin"), "the resync")
    finally:
        os.kill(stopped, signal.SIGCONT)
    # Woken, the old agent finds its laptop gone (silence or a closed stream) and ends itself.
    wait_for(lambda: stopped not in agents(standin), timeout=DEADLINE, what="the stopped agent to end itself")


@pytest.mark.parametrize(
    ("setup", "args", "status", "line"),
    [
        ("forbid-exec", ["--to", "pod/web-1"], EXIT_FORBIDDEN, "pod/web-1: not allowed to create pods/exec"),
        ("forbid-list", ["-l", "app=web"], EXIT_FORBIDDEN, "not allowed to list pods in namespace default"),
        ("", ["--to", "pod/web-9"], EXIT_NOT_FOUND, "pod web-9 not found"),
        ("", ["--to", "deploy/nothing"], EXIT_NOT_FOUND, "deployment nothing not found"),
        ("", ["--to", "pod/web-1", "-c", "nope"], EXIT_NOT_FOUND, "no container 'nope': it has app, sidecar"),
        ("missing", ["--to", "pod/web-1"], EXIT_NO_AGENT, "reloadd is not installed in the container"),
    ],
)
def test_kubectl_failures_are_one_line_of_ours_and_a_documented_status(
    run_reloadd, standin: StandIn, tmp_path: Path, setup: str, args: list[str], status: int, line: str
) -> None:
    add_pod(standin, tmp_path, "web-1", labels={"app": "web"}, containers=["app", "sidecar"])
    standin.cluster.forbidden = {"forbid-exec": {"create pods/exec"}, "forbid-list": {"list pods"}}.get(setup, set())
    standin.cluster.missing_command = setup == "missing"
    sync = start(run_reloadd, standin, tmp_path, *args)
    assert sync.wait_exit(DEADLINE) == status, sync.log()
    errors = [entry for entry in sync.log().splitlines() if entry.strip() and "] watching " not in entry]
    assert len(errors) == 1 and line in errors[0], sync.log()
    assert not KLOG_LINE.search(sync.log()) and "Error from server" not in sync.log()


def test_with_minus_v_kubectls_own_lines_are_shown(run_reloadd, standin: StandIn, tmp_path: Path) -> None:
    sync = start(run_reloadd, standin, tmp_path, "--to", "pod/web-9", "-V")
    assert sync.wait_exit(DEADLINE) == EXIT_NOT_FOUND
    assert 'kubectl: Error from server (NotFound): pods "web-9" not found' in sync.log()


def test_without_kubectl_on_path_the_sync_ends_at_once(run_reloadd, tmp_path: Path) -> None:
    laptop = make_app(tmp_path / "laptop")
    python_only = str(Path(sys.executable).parent)
    sync = run_reloadd(["sync", str(laptop), "-l", "app=web"], laptop, env={"PATH": python_only})
    assert sync.wait_exit(DEADLINE) == EXIT_NO_KUBECTL
    assert "kubectl is not installed (not on PATH)" in sync.log() and sync.log().count("\n") == 1


def test_transient_failures_are_retried_and_said_once(run_reloadd, standin: StandIn, tmp_path: Path) -> None:
    pod = add_pod(standin, tmp_path, "web-1", phase="Pending")
    standin.cluster.server_errors = 1  # the API server has a bad moment first
    sync = start(run_reloadd, standin, tmp_path, "--to", "pod/web-1")
    sync.wait_log("pod/web-1: the pod is not running yet")
    wait_for(lambda: len(exec_attempts(standin)) >= 3, what="a few retries (at once, then 0.5 s, 1 s...)")
    standin.cluster.update_pod("web-1", phase="Running")
    wait_with_log(sync, lambda: first_sync_done(sync), "synced once running", 2 * DEADLINE)  # retries are seconds apart
    assert tree(pod) == tree(tmp_path / "laptop")
    log = sync.log()
    assert log.count("the API server answered with an error") == 1 and log.count("not running yet") == 1, log
    assert sync.proc.poll() is None


def exec_attempts(standin: StandIn) -> list[str]:
    return [r for r in standin.cluster.requests if "/exec?" in r and r.startswith("GET")]


def test_a_selector_follows_pods_by_watch_not_by_polling(run_reloadd, standin: StandIn, tmp_path: Path) -> None:
    web1 = add_pod(standin, tmp_path, "web-1", labels={"app": "web"})
    web2 = add_pod(standin, tmp_path, "web-2", labels={"app": "web"})
    add_pod(standin, tmp_path, "db-1", labels={"app": "db"})
    laptop = make_app(tmp_path / "laptop")
    sync = start(run_reloadd, standin, tmp_path, "-l", "app=web")
    wait_with_log(sync, lambda: tree(web1) == tree(laptop) == tree(web2), "both pods synced", timeout=2 * DEADLINE)
    web3 = add_pod(standin, tmp_path, "web-3", labels={"app": "web"})
    added = time.monotonic()
    wait_with_log(sync, lambda: tree(web3) == tree(laptop), "the new pod synced")
    assert time.monotonic() - added < 5.0
    standin.cluster.remove_pod("web-1")
    sync.wait_log("pod/web-1 is gone: no longer syncing to it")
    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    wait_with_log(sync, lambda: tree(web2) == tree(laptop) == tree(web3), "the save in both pods")
    assert "reconnecting" not in sync.log() and "retrying" not in sync.log(), sync.log()
    assert os.listdir(standin.cluster.root / "db-1") == []
    lists = [r for r in standin.cluster.requests if r.startswith("GET /api/v1/namespaces/default/pods?")]
    assert len(lists) <= 3, lists  # one list and one watch, not a `get` every few seconds
