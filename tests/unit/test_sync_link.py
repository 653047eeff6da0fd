"""The sync link's decisions, as pure logic: kubectl's stderr turned into one line and an exit status,
the reconnection pauses, the heartbeat window's sources, pod watch events, bounded writes."""

from __future__ import annotations

import json
import os
import time

import pytest

from reloadd.errors import ConfigError
from reloadd.sync.laptop import reconnect
from reloadd.sync.laptop.kubectl import (
    EXIT_FAILED,
    EXIT_FORBIDDEN,
    EXIT_NO_AGENT,
    EXIT_NO_CLUSTER,
    EXIT_NOT_FOUND,
    EXIT_VERSION,
    explain,
)
from reloadd.sync.laptop.pods import PodEvent, PodWatch, event_of
from reloadd.sync.laptop.transport import Where
from reloadd.sync.shared.heartbeat import HEARTBEAT_ENV, HEARTBEAT_WINDOW, Outlet, WriteStalled, window_from
from reloadd.sync.shared.protocol import PROTOCOL_VERSION

WHERE = Where("pod/web-1", None)
NOISE = 'E1204 16:59:07.424625   23803 memcache.go:265] "Unhandled Error" err="couldn\'t get current server API group"'


@pytest.mark.parametrize(
    ("status", "stderr", "code", "transient", "says"),
    [
        (127, ["exec: 'reloadd': executable file not found in $PATH", "command terminated with exit code 127"],
         EXIT_NO_AGENT, False, "reloadd is not installed in the container: build the dev image FROM"),
        (1, ['Error from server (Forbidden): pods "web-1" is forbidden: User "dev" cannot create resource '
             '"pods/exec" in API group "" in the namespace "dev"'],
         EXIT_FORBIDDEN, False, "not allowed to create pods/exec in namespace dev (user dev)"),
        (1, ['Error from server (NotFound): pods "web-9" not found'], EXIT_NOT_FOUND, False, "pod web-9 not found"),
        (1, ['Error from server (NotFound): deployments.apps "api" not found'], EXIT_NOT_FOUND, False,
         "deployment api not found"),
        (1, [NOISE, NOISE, "The connection to the server localhost:8080 was refused - did you specify the right host"],
         EXIT_NO_CLUSTER, False, "kubectl has no current context"),
        (1, ["Error in configuration: context was not found for specified context: nope"], EXIT_NO_CLUSTER, False,
         "kubectl has no context 'nope'"),
        (1, [NOISE, "The connection to the server 10.0.0.1:6443 was refused - did you specify the right host or port?"],
         EXIT_FAILED, True, "cannot reach the cluster"),
        (1, ["Error from server (ServiceUnavailable): the server is currently unable to handle the request"],
         EXIT_FAILED, True, "the API server answered with an error"),
        (1, ['Error from server (BadRequest): container "app" in pod "web-1" is waiting to start: ContainerCreating'],
         EXIT_FAILED, True, "the pod is not running yet"),
        (3, ["something nobody foresaw"], EXIT_FAILED, False, "could not start the sync: something nobody foresaw"),
    ],
)  # fmt: skip
def test_kubectl_failures_become_one_line_of_ours(
    status: int, stderr: list[str], code: int, transient: bool, says: str
) -> None:
    failure = explain("pod/web-1", status, stderr, WHERE)
    assert (failure.exit_code, failure.transient) == (code, transient)
    assert says in failure.message and "\n" not in failure.message
    assert "memcache" not in failure.message and "Error from server" not in failure.message


def test_a_kubectl_that_said_nothing_and_still_runs_is_explained_by_what_this_side_saw() -> None:
    failure = explain("pod/web-1", None, [], WHERE, "no answer for 8 s")
    assert failure.message == "pod/web-1: could not start the sync: no answer for 8 s"
    assert "None" not in explain("pod/web-1", None, [], WHERE).message


def test_reconnection_is_at_once_then_backs_off_to_a_few_seconds() -> None:
    assert [reconnect.backoff(n) for n in range(7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_the_heartbeat_window_comes_from_the_flag_then_the_environment() -> None:
    assert window_from(None, {}) == HEARTBEAT_WINDOW <= 10
    assert window_from(None, {HEARTBEAT_ENV: "5"}) == 5.0
    assert window_from("3", {HEARTBEAT_ENV: "5"}) == 3.0
    for bad in ("0.1", "soon", "99999"):
        with pytest.raises(ConfigError, match="--heartbeat"):
            window_from(bad, {})


def test_a_version_mismatch_names_both_versions_and_the_side_to_upgrade() -> None:
    older_pod = reconnect.version_mismatch(
        "pod/web-1", {"t": "hello", "version": PROTOCOL_VERSION - 1, "reloadd": "0.0.9"}
    )
    assert older_pod.exit_code == EXIT_VERSION
    assert "reloadd 0.0.9 (sync protocol" in older_pod.message and "upgrade the pod's image" in older_pod.message
    newer_pod = reconnect.version_mismatch(
        "pod/web-1", {"t": "hello", "version": PROTOCOL_VERSION + 1, "reloadd": "9.0"}
    )
    assert "upgrade reloadd on this laptop" in newer_pod.message


def pod(kind: str, phase: str = "Running", deleting: bool = False) -> dict[str, object]:
    metadata: dict[str, object] = {"name": "web-1"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"type": kind, "object": {"metadata": metadata, "status": {"phase": phase}}}


def test_a_pod_is_wanted_while_running_and_not_being_deleted() -> None:
    assert event_of(pod("ADDED")) == PodEvent("pod/web-1", True)
    assert event_of(pod("MODIFIED", "Pending")) == PodEvent("pod/web-1", False)
    assert event_of(pod("MODIFIED", deleting=True)) == PodEvent("pod/web-1", False)
    assert event_of(pod("DELETED")) == PodEvent("pod/web-1", False)
    assert event_of({"type": "ERROR", "object": {"kind": "Status"}}) is None


def test_watch_output_split_anywhere_is_decoded_object_by_object() -> None:
    read_fd, write_fd = os.pipe()
    watch = PodWatch(WHERE)
    watch.proc = type("P", (), {"stdout": os.fdopen(read_fd, "rb")})()
    text = json.dumps(pod("ADDED"), indent=4) + "\n" + json.dumps(pod("DELETED"), indent=4)
    os.write(write_fd, text[:37].encode())
    assert watch.read() == []
    os.write(write_fd, text[37:].encode())
    assert watch.read() == [PodEvent("pod/web-1", True), PodEvent("pod/web-1", False)]
    os.close(write_fd)
    assert watch.read() is None
    watch.proc.stdout.close()  # type: ignore[union-attr]


def test_a_write_nobody_reads_fails_after_the_window_instead_of_hanging() -> None:
    read_fd, write_fd = os.pipe()
    outlet = Outlet(write_fd, 0.3)
    began = time.monotonic()
    with pytest.raises(WriteStalled):
        outlet.write(b"x" * (4 * 1024 * 1024))  # far more than a pipe holds
    assert time.monotonic() - began < 3
    outlet.close()
    with pytest.raises(BrokenPipeError):
        outlet.write(b"after close")
    os.close(read_fd)
