# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""``reloadd sync -p``: ports forwarded over the sync's own stream (``--transport env``: the agent on
this machine, the same code path as kubectl exec) to a real node app that reloadd runs in the pod dir."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from support import DEADLINE, Reloadd, free_port, make_app, reloadd_argv, wait_for
from sync_support import FETCH_TIMEOUT, PORTS_SERVER_JS, SYNCED, agents_of, control_env, fetch, start_sync, tree

RESTARTS = 20
BIG_BYTES = 64 * 1024 * 1024  # the slow reader's response: far more than every buffer on the way
BATCH_BOUND_MS = 1000  # a batch while a forwarded client reads nothing: generous, the real figure is ms
RETRY_PAUSE = 0.5  # seconds before a client's one retry (the old app may take that long to be gone)

# The app: "<version> <pid>" on /, BIG_BYTES on /big; the port from the environment.


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    return make_app(tmp_path / "laptop", server_js=PORTS_SERVER_JS)


def start_app(run_reloadd: Callable[..., Reloadd], pod: Path, port: int) -> Reloadd:
    """reloadd running the synced app in the pod dir, on ``port`` (pod side)."""
    env = {"PORT": str(port), "BIG_MB": str(BIG_BYTES // (1024 * 1024)), **control_env(pod.parent)}
    app = run_reloadd(["server.js"], pod, env=env)
    wait_for(lambda: fetch(port, timeout=1).startswith("v1 "), what=f"the app in the pod:\n{app.log()}")
    return app


def write_version(laptop: Path, version: str) -> None:
    (laptop / "version.js").write_text(f"module.exports = {version!r};\n")


def test_a_forwarded_port_serves_across_restarts_and_an_agent_reconnect(run_reloadd, laptop: Path, pod: Path) -> None:
    remote, local = free_port(), free_port()
    sync = start_sync(run_reloadd, laptop, pod, "-p", f"{local}:{remote}")
    assert f"forwarding 127.0.0.1:{local} to port {remote} in the pod" in sync.log()
    app = start_app(run_reloadd, pod, remote)
    assert fetch(local).startswith("v1 ")
    for number in range(2, RESTARTS + 2):
        write_version(laptop, f"v{number}")
        sync.wait_log(SYNCED, count=number)  # the batch is in: the app is being restarted now
        # During the restart: the agent retries a refused connect, so a request waits rather than fails;
        # a connection the old app's socket took as it was stopped ends early: one retry, as a browser would.
        during = fetch(local)
        if not during:
            time.sleep(RETRY_PAUSE)
            during = fetch(local)
        assert during.startswith((f"v{number - 1} ", f"v{number} ")), f"restart {number}:\n{sync.log()}\n{app.log()}"
        expected = f"v{number} "
        wait_for(lambda: fetch(local).startswith(expected), what=f"{expected}:\n{sync.log()}\n{app.log()}")  # noqa: B023
    (agent,) = wait_for(lambda: agents_of(sync), what="the agent process")
    agent.kill()
    sync.wait_log("reconnected to")
    assert fetch(local).startswith(f"v{RESTARTS + 1} "), sync.log()


def test_a_client_arriving_while_the_agent_reconnects_waits_for_it(run_reloadd, laptop: Path, pod: Path) -> None:
    remote, local = free_port(), free_port()
    sync = start_sync(run_reloadd, laptop, pod, "-p", f"{local}:{remote}")
    start_app(run_reloadd, pod, remote)
    (agent,) = wait_for(lambda: agents_of(sync), what="the agent process")
    agent.kill()
    assert fetch(local).startswith("v1 "), sync.log()  # at once: accepted, held until the session is back
    assert sync.log().count(" — reconnecting") == 1


def test_a_client_that_closes_its_sending_half_still_gets_the_whole_answer(
    run_reloadd, laptop: Path, pod: Path
) -> None:
    answer_bytes = 8 * 1024 * 1024
    with socket.socket() as server:  # in the "pod": reads the request to its end, then answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        remote, local = server.getsockname()[1], free_port()
        start_sync(run_reloadd, laptop, pod, "-p", f"{local}:{remote}")

        def serve() -> None:
            connection, _ = server.accept()
            with connection:
                while connection.recv(65536):
                    pass
                connection.sendall(b"y" * answer_bytes)

        serving = threading.Thread(target=serve)
        serving.start()
        with socket.create_connection(("127.0.0.1", local), timeout=FETCH_TIMEOUT) as client:
            client.sendall(b"the whole request")
            client.shutdown(socket.SHUT_WR)  # "no more from me": the answer must still come, then the end
            received = bytearray()
            while chunk := client.recv(1024 * 1024):
                received += chunk
        serving.join(FETCH_TIMEOUT)
    assert len(received) == answer_bytes


def test_open_connections_end_with_their_session_and_the_listener_stays(run_reloadd, laptop: Path, pod: Path) -> None:
    remote, local = free_port(), free_port()
    sync = start_sync(run_reloadd, laptop, pod, "-p", f"{local}:{remote}")
    start_app(run_reloadd, pod, remote)
    with socket.create_connection(("127.0.0.1", local), timeout=FETCH_TIMEOUT) as client:
        client.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = len(client.recv(1024 * 1024))  # the response is under way; then nothing is read
        (agent,) = wait_for(lambda: agents_of(sync), what="the agent process")
        agent.kill()
        sync.wait_log(" — reconnecting")
        try:
            while chunk := client.recv(1024 * 1024):  # what was on its way, then the end (or a reset)
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < BIG_BYTES
    sync.wait_log("reconnected to")
    assert fetch(local).startswith("v1 "), sync.log()


def test_a_client_that_reads_nothing_does_not_hold_up_file_batches(run_reloadd, laptop: Path, pod: Path) -> None:
    remote, local = free_port(), free_port()
    sync = start_sync(run_reloadd, laptop, pod, "-p", f"{local}:{remote}")
    start_app(run_reloadd, pod, remote)
    slow = socket.create_connection(("127.0.0.1", local))
    try:
        slow.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(1.0)  # the app writes until every buffer and the channel's window are full
        for number in range(3):  # a .txt file: synced, but no restart, which would end the response
            (laptop / "notes.txt").write_text(f"edit {number}")
            wait_for(lambda: tree(pod).get("notes.txt") == f"edit {number}", what=f"the batch:\n{sync.log()}")  # noqa: B023
        times = [int(ms) for ms in re.findall(r"\] synced 1 file \(\d+ B\) to \S+ in (\d+) ms", sync.log())]
        assert len(times) == 3 and max(times) < BATCH_BOUND_MS, sync.log()
        assert fetch(local).startswith("v1 ")  # another client of the same port is not held up either
        received = 0
        slow.settimeout(FETCH_TIMEOUT)
        while chunk := slow.recv(1024 * 1024):  # and the slow one gets every byte once it reads
            received += len(chunk)
        assert received > BIG_BYTES
    finally:
        slow.close()


def test_a_download_and_file_batches_share_the_stream_both_whole(run_reloadd, laptop: Path, pod: Path) -> None:
    remote, local = free_port(), free_port()
    sync = start_sync(run_reloadd, laptop, pod, "-p", f"{local}:{remote}")
    start_app(run_reloadd, pod, remote)
    downloaded: list[int] = []
    download = threading.Thread(target=lambda: downloaded.append(fetch(local, "/big", timeout=60).count("x")))
    download.start()
    for number in range(5):  # channel frames arrive while the laptop waits for each batch's reply
        (laptop / "notes.txt").write_text(f"edit {number}")
        wait_for(lambda: tree(pod).get("notes.txt") == f"edit {number}", what=f"the batch:\n{sync.log()}")  # noqa: B023
    download.join(60)
    assert downloaded == [BIG_BYTES], sync.log()
    assert "bad data" not in sync.log() and "reconnecting" not in sync.log(), sync.log()


def test_a_port_nothing_listens_on_is_closed_and_said(run_reloadd, laptop: Path, pod: Path) -> None:
    remote, local = free_port(), free_port()
    sync = start_sync(run_reloadd, laptop, pod, "-p", f"{local}:{remote}")
    began = time.monotonic()
    assert fetch(local) == ""
    assert time.monotonic() - began < FETCH_TIMEOUT  # the agent's retries are bounded (5 s)
    sync.wait_log(f"forwarded port {remote}: 127.0.0.1:{remote}: nothing listens there")


def test_ports_come_from_the_config_and_the_command_line_wins(run_reloadd, laptop: Path, pod: Path) -> None:
    remote, configured, given = free_port(), free_port(), free_port()
    (laptop / "nodemon.json").write_text(json.dumps({"sync": {"ports": [f"{configured}:{remote}"]}}))
    sync = start_sync(run_reloadd, laptop, pod)
    start_app(run_reloadd, pod, remote)
    assert fetch(configured).startswith("v1 "), sync.log()
    sync.stop()
    sync = start_sync(run_reloadd, laptop, pod, "-p", f"{given}:{remote}")
    assert fetch(given).startswith("v1 "), sync.log()
    assert fetch(configured, timeout=2) == ""


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["-p", "0"], "sync: -p: '0': 0 is not a port (1 to 65535)"),
        (["-p", "70000"], "sync: -p: '70000': 70000 is not a port (1 to 65535)"),
        (["-p", "a:b"], "sync: -p: 'a:b': expected PORT or LOCAL:REMOTE"),
        (["-p", "3000", "-p", "3000:4000"], "sync: -p: local port 3000 is forwarded twice"),
    ],
)
def test_bad_port_flags_exit_2_in_one_line(tmp_path: Path, laptop: Path, pod: Path, flags, says) -> None:
    done = subprocess.run(
        reloadd_argv() + ["sync", str(laptop), "--transport", "env", "--to", str(pod), *flags],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env={**os.environ, **control_env(tmp_path), "NO_COLOR": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr


def test_a_bad_configured_port_and_a_port_in_use_exit_2_in_one_line(tmp_path: Path, laptop: Path, pod: Path) -> None:
    def sync(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            reloadd_argv() + ["sync", str(laptop), "--transport", "env", "--to", str(pod), *flags],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            env={**os.environ, **control_env(tmp_path), "NO_COLOR": "1"},
        )

    (laptop / "nodemon.json").write_text(json.dumps({"sync": {"ports": [3000, "x"]}}))
    done = sync()
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "sync.ports" in done.stderr and "'x'" in done.stderr, done.stderr
    (laptop / "nodemon.json").unlink()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        remote = free_port()
        done = sync("-p", f"{port}:{remote}")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"-p {port}:{remote}: cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr
