# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""``reloadd sync -p`` through the real ``kubectl`` binary and its WebSocket exec stream, against the
stand-in API server (kube_standin.py; the agents run on this machine): forwarded bytes survive
kubectl's framing, a dropped stream and a pod going away, and a client that reads nothing delays
no batch. Never run against a real cluster."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_standin import StandIn
from support import DEADLINE, free_port, make_app, wait_for
from sync_support import FETCH_TIMEOUT, PORTS_SERVER_JS, control_env, fetch, fetch_on, first_sync_done, tree

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs the kubectl binary on PATH")

BIG_MB = 32  # the non-reading client's response: more than kubectl's, the agent's and the window's buffers
BATCH_BOUND_MS = 1000


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandIn]:
    server = StandIn(tmp_path / "cluster")
    yield server
    server.stop()


def start(run_reloadd, standin: StandIn, tmp_path: Path, *args: str):
    laptop = make_app(tmp_path / "laptop", server_js=PORTS_SERVER_JS)
    sync = run_reloadd(["sync", str(laptop), *args], laptop, env={**standin.env(), **control_env(tmp_path)})
    wait_for(lambda: first_sync_done(sync) or sync.proc.poll() is not None, 2 * DEADLINE, what="the first sync")
    assert sync.proc.poll() is None, sync.log()
    return sync, laptop


def run_app(run_reloadd, pod: Path, tmp_path: Path, port: int):
    env = {"PORT": str(port), "BIG_MB": str(BIG_MB), **control_env(tmp_path)}
    app = run_reloadd(["server.js"], pod, env=env)
    wait_for(lambda: fetch(port, timeout=1).startswith("v1 "), what=f"the app in the pod:\n{app.log()}")
    return app


def test_a_forwarded_port_through_kubectl_survives_a_dropped_stream_and_a_client_that_reads_nothing(
    run_reloadd, standin: StandIn, tmp_path: Path
) -> None:
    pod = standin.cluster.add_pod("web-1", env=control_env(tmp_path)).directory
    remote, local = free_port(), free_port()
    sync, laptop = start(run_reloadd, standin, tmp_path, "--to", "pod/web-1", "-p", f"{local}:{remote}")
    run_app(run_reloadd, pod, tmp_path, remote)
    assert fetch(local).startswith("v1 "), sync.log()
    assert fetch(local, "/big").count("x") == BIG_MB * 1024 * 1024  # every byte, through kubectl's framing
    slow = socket.create_connection(("127.0.0.1", local))
    try:
        slow.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(1.0)  # every buffer on the way fills up
        for number in range(3):  # .txt: synced, no restart (which would end the response)
            (laptop / "notes.txt").write_text(f"edit {number}")
            wait_for(lambda: tree(pod).get("notes.txt") == f"edit {number}", what=f"the batch:\n{sync.log()}")  # noqa: B023

        def batch_times() -> list[int]:  # the pod has the file before the laptop prints its line
            return [int(ms) for ms in re.findall(r"\] synced 1 file \(\d+ B\) to \S+ in (\d+) ms", sync.log())]

        times = wait_for(lambda: batch_times() if len(batch_times()) == 3 else None, what=f"3 lines:\n{sync.log()}")
        assert times is not None and max(times) < BATCH_BOUND_MS, sync.log()
    finally:
        slow.close()
    standin.cluster.drop_all()
    sync.wait_log("reconnected to pod/web-1")
    assert fetch(local).startswith("v1 "), sync.log()


def test_with_a_selector_the_port_moves_to_another_pod_when_its_pod_goes_away(
    run_reloadd, standin: StandIn, tmp_path: Path
) -> None:
    web1 = standin.cluster.add_pod("web-1", labels={"app": "web"}, env=control_env(tmp_path)).directory
    web2 = standin.cluster.add_pod("web-2", labels={"app": "web"}, env=control_env(tmp_path)).directory
    remote, local = free_port(), free_port()
    sync, laptop = start(run_reloadd, standin, tmp_path, "-l", "app=web", "-p", f"{local}:{remote}")
    wait_for(lambda: tree(web1) == tree(laptop) == tree(web2), 2 * DEADLINE, what=f"both pods:\n{sync.log()}")
    # The "pods" share this machine's loopback: one app (in web-2's directory) answers for both.
    run_app(run_reloadd, web2, tmp_path, remote)
    assert fetch(local).startswith("v1 "), sync.log()
    standin.cluster.remove_pod("web-1")
    sync.wait_log("pod/web-1 is gone")
    standin.cluster.remove_pod("web-2")
    sync.wait_log("pod/web-2 is gone")
    answers: list[str] = []
    with socket.create_connection(("127.0.0.1", local), timeout=FETCH_TIMEOUT + 1) as early:
        # Connected with no pod connected: it waits for the next one.
        client = threading.Thread(target=lambda: answers.append(fetch_on(early)))
        client.start()
        web3 = standin.cluster.add_pod("web-3", labels={"app": "web"}, env=control_env(tmp_path)).directory
        client.join(FETCH_TIMEOUT + 1)
    assert answers and answers[0].startswith("v1 "), sync.log()
    assert tree(web3) == tree(laptop)
