"""The local "batch committed" channel: its private directory, the begin/commit exchange, and the
echo filter. Real Unix sockets in tmp_path; no reloadd process."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from reloadd.host.control import HOLD_LIMIT, HOLD_MAX, ControlServer, Echoes
from reloadd.host.control_wire import private_dir
from reloadd.sync.pod.announce import Announcement, LogFeed


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "control"
    assert private_dir(path, create=True) is None
    return path


def test_the_directory_is_made_private(directory: Path) -> None:
    assert oct(directory.stat().st_mode & 0o777) == oct(0o700)


@pytest.mark.parametrize("mode", [0o770, 0o755, 0o707])
def test_a_directory_others_can_open_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "shared"
    path.mkdir()
    path.chmod(mode)
    assert "not private" in str(private_dir(path, create=True))


def test_a_symlink_or_another_users_directory_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.mkdir(mode=0o700)
    os.symlink(target, tmp_path / "link")
    assert "not a directory" in str(private_dir(tmp_path / "link", create=True))
    if os.geteuid() == 0:
        os.chown(target, 65534, 65534)
        assert "not private" in str(private_dir(target, create=True))


def serve_until(server: ControlServer, stop: threading.Event, batches: list[list[str]]) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(server, selectors.EVENT_READ)  # what the supervisor's selector does
        while not stop.is_set():
            selector.select(0.05)
            batches += [batch.paths for batch in server.take_batches()]


@contextlib.contextmanager
def served(server: ControlServer) -> Iterator[list[list[str]]]:
    """The server answered from a thread, as the supervisor's loop would; the batches it handed over."""
    stop = threading.Event()
    batches: list[list[str]] = []
    thread = threading.Thread(target=serve_until, args=(server, stop, batches))
    thread.start()
    try:
        yield batches
    finally:
        stop.set()
        thread.join()
        server.close()


def settle(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        threading.Event().wait(0.02)


def test_begin_holds_the_supervisor_and_commit_hands_over_the_paths(directory: Path) -> None:
    server = ControlServer(directory, ["/app"])
    with served(server) as batches:
        announcement = Announcement("/app", {"RELOADD_CONTROL_DIR": str(directory)})
        assert len(announcement.socks) == 1
        assert server.holding  # acknowledged before the agent renames anything
        announcement.commit(["/app/a.js", "/app/b.js", "relative/ignored"])
        settle(lambda: bool(batches))
    assert batches == [["/app/a.js", "/app/b.js"]]
    assert not server.holding and os.listdir(directory) == []  # its socket is gone


def test_stamped_files_are_handed_over_apart_from_batches_and_release_the_hold(directory: Path) -> None:
    server = ControlServer(directory, ["/app"])
    with served(server) as batches:
        announcement = Announcement("/app", {"RELOADD_CONTROL_DIR": str(directory)})
        assert server.holding
        announcement.stamped(["/app/a.js", "relative/ignored"])
        settle(lambda: not server.holding)
    stamped = server.take_stamped()
    assert batches == [] and stamped == ["/app/a.js"]  # no batch: nothing to restart for
    assert not server.holding and server.take_stamped() == []


def test_a_connection_closed_without_commit_releases_the_hold(directory: Path) -> None:
    server = ControlServer(directory, ["/app"])
    with served(server):
        announcement = Announcement("/app", {"RELOADD_CONTROL_DIR": str(directory)})
        assert server.holding
        announcement.close()  # the agent died mid-commit
        settle(lambda: not server.holding)
        assert not server.holding


def test_a_batch_reaches_only_the_supervisors_watching_its_directory_or_above(directory: Path) -> None:
    env = {"RELOADD_CONTROL_DIR": str(directory)}
    servers = {
        "app": ControlServer(directory, ["/srv/app"]),
        "parent": ControlServer(directory, ["/tmp", "/srv"]),
        "other": ControlServer(directory, ["/srv/other"]),
        "sub": ControlServer(directory, ["/srv/app/src"]),
    }
    try:
        for listeners in servers.values():
            for path in listeners.listeners:
                assert oct(path.stat().st_mode & 0o777) == oct(0o600)
        announcement = Announcement("/srv/app", env)
        reached = set()
        for name, server in servers.items():
            for _ in range(20):
                server.take_batches()
                if server.connections:
                    reached.add(name)
                    break
                threading.Event().wait(0.01)
        announcement.close()
        assert reached == {"app", "parent"}  # not another app's, not a directory below the batch's root
    finally:
        for server in servers.values():
            server.close()


def test_with_no_supervisor_the_announcement_is_empty(tmp_path: Path) -> None:
    assert Announcement("/app", {"RELOADD_CONTROL_DIR": str(tmp_path / "none")}).socks == []
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert Announcement("/app", {"RELOADD_CONTROL_DIR": str(shared)}).socks == []  # not private: not used


def test_echoes_are_dropped_until_the_file_changes_again(tmp_path: Path) -> None:
    written, deleted, other = tmp_path / "a.js", tmp_path / "gone.js", tmp_path / "b.js"
    written.write_text("batch")
    echoes = Echoes()
    echoes.remember([str(written), str(deleted)])
    paths = {str(written), str(deleted), str(other)}
    assert echoes.new_changes(paths) == {str(other)}
    assert echoes.new_changes(paths) == {str(other)}  # a second report of the same write: still an echo
    written.write_text("edited again, longer")
    assert echoes.new_changes(paths) == {str(written), str(other)}


def test_an_agent_that_asks_hears_the_outcome_the_supervisor_gives_its_batch(directory: Path) -> None:
    server = ControlServer(directory, ["/app"])
    try:
        announcement = Announcement("/app", {"RELOADD_CONTROL_DIR": str(directory)})
        announcement.commit(["/app/a.js"], fresh=True, outcome=True)
        batches = []
        for _ in range(100):
            batches += server.take_batches()
            if batches:
                break
            threading.Event().wait(0.01)
        (batch,) = batches
        assert batch.paths == ["/app/a.js"] and batch.fresh and batch.sock is not None
        assert server.awaiting == [batch] and not server.connections
        server.reply(batch, {"what": "restarted", "ms": 12})
        assert announcement.outcome(timeout=2) == {"what": "restarted", "ms": 12}
        assert server.awaiting == []
    finally:
        server.close()


def test_a_supervisor_that_stops_tells_the_waiting_agents(directory: Path) -> None:
    server = ControlServer(directory, ["/app"])
    announcement = Announcement("/app", {"RELOADD_CONTROL_DIR": str(directory)})
    announcement.commit(["/app/a.js"], outcome=True)
    settle(lambda: bool(server.take_batches()) or bool(server.awaiting))
    server.close()
    assert announcement.outcome(timeout=2) == {"what": "stopped"}


def test_an_asked_for_hold_outlasts_the_default_and_is_bounded(directory: Path) -> None:
    server = ControlServer(directory, ["/app"])
    with served(server):
        announcement = Announcement("/app", {"RELOADD_CONTROL_DIR": str(directory)})
        announcement.hold(HOLD_MAX * 3)
        settle(lambda: any(conn.hold > HOLD_MAX for conn in server.connections.values()))
        (conn,) = server.connections.values()
        assert conn.hold >= HOLD_MAX * 3 and server.holding
        announcement.hold(HOLD_LIMIT * 2)  # more than any install may take: ignored
        threading.Event().wait(0.1)
        assert conn.hold < HOLD_LIMIT
        announcement.close()


def test_log_lines_reach_a_listener_and_a_listener_that_reads_nothing_never_blocks_the_app(directory: Path) -> None:
    server = ControlServer(directory, ["/app"])
    heard: list[tuple[str, str]] = []
    feed = LogFeed("/app", {"RELOADD_CONTROL_DIR": str(directory)}, lambda stream, line: heard.append((stream, line)))
    stalled = socket.socket(socket.AF_UNIX)
    try:
        feed.start()
        stalled.connect(str(next(iter(server.listeners))))
        stalled.sendall(b'{"logs": true}\n')
        settle(lambda: bool(server.take_batches()) or len(server.log_socks) == 2)
        assert len(server.log_socks) == 2
        server.log_line("stdout", "listening on 3000")
        settle(lambda: bool(heard))
        assert heard == [("stdout", "listening on 3000")]
        started = time.monotonic()
        for _ in range(20_000):  # far more than the stalled listener's socket holds
            server.log_line("stderr", "x" * 200)
        assert time.monotonic() - started < 5.0  # dropped for the stalled one, never waited for
    finally:
        feed.stop()
        stalled.close()
        server.close()
