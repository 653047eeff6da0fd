"""Forwarded ports' channels: the C frame codec, the credit rules and the socket buffering of both sides,
over socketpairs and pipes (no reloadd process)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from reloadd.errors import ConfigError
from reloadd.setup.config import validate
from reloadd.setup.forwards import Forward, parse_forward, parse_forwards
from reloadd.sync.laptop.forward import Forwarder
from reloadd.sync.laptop.openers import Openers
from reloadd.sync.laptop.options import parse_sync_args
from reloadd.sync.laptop.session import Session
from reloadd.sync.pod import dialer as dialer_module
from reloadd.sync.pod.dialer import Dialer
from reloadd.sync.shared import channels as channels_module
from reloadd.sync.shared.channels import CHANNEL_CHUNK, CREDIT_STEP, READ, WRITE, Channels
from reloadd.sync.shared.heartbeat import Outlet
from reloadd.sync.shared.protocol import (
    ChannelData,
    Frame,
    FrameReader,
    encode_channel,
    encode_message,
    is_channel_frame,
)
from reloadd.sync.shared.schema import CHANNEL_WINDOW, ProtocolError, check_message


class Stream:
    """What a side pushed onto the stream, decoded as the peer would."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.frames: list[Frame] = []

    def push(self, data: bytes) -> None:
        self.frames += self.reader.feed(data)

    def take(self) -> list[Frame]:
        frames, self.frames = self.frames, []
        return frames

    def data(self) -> bytes:
        return b"".join(frame.chunk for frame in self.take() if isinstance(frame, ChannelData))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the channel's socket, its client's end)."""
    mine, theirs = socket.socketpair()
    yield mine, theirs
    mine.close()
    theirs.close()


def opened(pair: tuple[socket.socket, socket.socket]) -> tuple[Openers, Stream]:
    """A laptop-side channel 1 the agent has answered, over ``pair``."""
    stream = Stream()
    table = Openers(stream.push, lambda port, why: None)
    table.open(pair[0], 3000)
    assert stream.take() == [{"t": "open", "ch": 1, "port": 3000}]
    table.take({"t": "opened", "ch": 1})
    return table, stream


def ready(table: Channels) -> None:
    """What a select loop would do once: every channel served for what it waits for."""
    for channel in table:
        if channel.events():
            table.ready(channel, channel.events())


# -- the codec --------------------------------------------------------------------------------------
def test_channel_frames_round_trip_in_any_pieces_among_other_frames() -> None:
    stream = encode_channel(7, b"\x00GET /") + encode_message({"t": "credit", "ch": 7, "bytes": 10})
    stream += encode_channel(2**32 - 1, b"x")
    reader = FrameReader()
    frames = []
    for index in range(len(stream)):
        frames += reader.feed(stream[index : index + 1])
    reader.finish()
    assert frames == [ChannelData(7, b"\x00GET /"), {"t": "credit", "ch": 7, "bytes": 10}, ChannelData(2**32 - 1, b"x")]
    assert all(is_channel_frame(frame) for frame in frames)
    assert not is_channel_frame({"t": "commit", "id": 1})


def test_a_channel_frame_without_bytes_or_id_is_a_protocol_error() -> None:
    for body in (b"", b"\x00\x00\x00\x01"):
        with pytest.raises(ProtocolError, match="channel frame without"):
            FrameReader().feed(b"C" + len(body).to_bytes(4, "big") + body)


@pytest.mark.parametrize(
    "message",
    [
        {"t": "open", "ch": 0, "port": 3000},  # channel 0 is no channel
        {"t": "open", "ch": 1, "port": 70000},
        {"t": "credit", "ch": 1, "bytes": CHANNEL_WINDOW + 1},
        {"t": "credit", "ch": 1, "bytes": 0},
        {"t": "close", "ch": 2**32},
        {"t": "opened", "ch": 1, "extra": True},
    ],
)
def test_channel_messages_out_of_range_are_refused(message: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        check_message(message)


# -- credit -----------------------------------------------------------------------------------------
def test_a_side_reads_its_socket_only_while_it_has_credit(pair: tuple[socket.socket, socket.socket]) -> None:
    table, stream = opened(pair)
    (channel,) = table
    pair[1].setblocking(False)
    sent = 0
    for _ in range(100):  # the client uploads as fast as it can; the channel is served between its writes
        try:
            sent += pair[1].send(b"u" * 65536)
        except BlockingIOError:
            pass
        ready(table)
    assert sent > CHANNEL_WINDOW
    carried = stream.data()
    assert len(carried) == CHANNEL_WINDOW  # the window, then nothing until credit comes back
    assert channel.credit == 0 and not channel.events() & READ
    table.take({"t": "credit", "ch": 1, "bytes": CREDIT_STEP})
    assert channel.events() & READ
    ready(table)
    assert 0 < len(stream.data()) <= min(CREDIT_STEP, CHANNEL_CHUNK)


def test_bytes_for_a_client_that_reads_nothing_wait_in_the_window_and_no_further(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    table, stream = opened(pair)
    (channel,) = table
    chunk = b"d" * CHANNEL_CHUNK
    for _ in range(CHANNEL_WINDOW // CHANNEL_CHUNK):  # the whole window: accepted, whatever the client does
        table.take(ChannelData(1, chunk))
    credits = [frame for frame in stream.take() if isinstance(frame, dict) and frame["t"] == "credit"]
    granted = sum(int(frame["bytes"]) for frame in credits)  # only what the socket buffer took is granted back
    assert channel.outbox and len(channel.outbox) + channel.written + granted == CHANNEL_WINDOW
    assert len(channel.outbox) <= CHANNEL_WINDOW
    with pytest.raises(ProtocolError, match="beyond the credit"):
        table.take(ChannelData(1, b"x" * (CHANNEL_WINDOW - len(channel.outbox) - channel.written + 1)))


def test_credit_is_granted_back_as_the_client_reads(pair: tuple[socket.socket, socket.socket]) -> None:
    table, stream = opened(pair)
    (channel,) = table
    pair[1].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    pair[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    for _ in range(CHANNEL_WINDOW // CHANNEL_CHUNK):
        table.take(ChannelData(1, b"d" * CHANNEL_CHUNK))
    read = 0
    pair[1].settimeout(1)
    while read < CHANNEL_WINDOW:  # the client reads: each write-out frees its bytes for the sender
        read += len(pair[1].recv(65536))
        ready(table)
    granted = sum(int(f["bytes"]) for f in stream.take() if isinstance(f, dict) and f["t"] == "credit")
    assert read == CHANNEL_WINDOW and not channel.outbox
    assert granted + channel.written == CHANNEL_WINDOW and channel.written < CREDIT_STEP


def test_credit_beyond_the_window_is_a_protocol_error(pair: tuple[socket.socket, socket.socket]) -> None:
    table, _ = opened(pair)
    with pytest.raises(ProtocolError, match="beyond the window"):
        table.take({"t": "credit", "ch": 1, "bytes": 1})


# -- opening and closing ----------------------------------------------------------------------------
def test_a_close_writes_out_what_is_held_then_ends_the_writing_half(pair: tuple[socket.socket, socket.socket]) -> None:
    table, stream = opened(pair)
    table.take(ChannelData(1, b"response"))
    table.take({"t": "close", "ch": 1})
    pair[1].settimeout(1)
    assert pair[1].recv(100) == b"response" and pair[1].recv(100) == b""  # then EOF
    assert len(table) == 1  # the client may still send
    pair[1].shutdown(socket.SHUT_WR)
    ready(table)
    assert stream.take() == [{"t": "close", "ch": 1}] and len(table) == 0


def test_frames_for_a_channel_already_gone_are_dropped(pair: tuple[socket.socket, socket.socket]) -> None:
    table, stream = opened(pair)
    pair[1].close()
    table.take(ChannelData(1, b"x" * 10))  # the write fails: the channel ends, the agent is told
    assert len(table) == 0 and stream.take() == [{"t": "close", "ch": 1, "abort": True}]
    table.take(ChannelData(1, b"in flight"))
    table.take({"t": "credit", "ch": 1, "bytes": 5})
    table.take({"t": "close", "ch": 1})


def test_an_aborted_channel_ends_at_once_whatever_it_holds(pair: tuple[socket.socket, socket.socket]) -> None:
    table, stream = opened(pair)
    table.take(ChannelData(1, b"unread"))
    table.take({"t": "close", "ch": 1, "abort": True})
    assert len(table) == 0 and stream.take() == [] and pair[0].fileno() == -1


def test_bytes_before_the_open_is_answered_are_a_protocol_error(pair: tuple[socket.socket, socket.socket]) -> None:
    stream = Stream()
    table = Openers(stream.push, lambda port, why: None)
    table.open(pair[0], 3000)
    assert not table.table[1].events()  # the client is not read before the agent connected
    with pytest.raises(ProtocolError, match="before it opened"):
        table.take(ChannelData(1, b"x"))


def test_a_refused_open_closes_the_client_and_says_why(pair: tuple[socket.socket, socket.socket]) -> None:
    said: list[tuple[int, str]] = []
    stream = Stream()
    table = Openers(stream.push, lambda port, why: said.append((port, why)))
    table.open(pair[0], 3000)
    table.take({"t": "open-failed", "ch": 1, "message": "127.0.0.1:3000: nothing listens there"})
    assert said == [(3000, "127.0.0.1:3000: nothing listens there")] and len(table) == 0
    assert stream.take() == [{"t": "open", "ch": 1, "port": 3000}]  # no close for a channel never opened
    failed = {"t": "open-failed", "message": "again"}
    for ident, answer in ((2, failed), (3, {"t": "opened"}), (4, failed)):
        other, client = socket.socketpair()
        table.open(other, 3000)
        table.take({**answer, "ch": ident})
        client.close()
    assert said == [(3000, "127.0.0.1:3000: nothing listens there"), (3000, "again")]  # once, then after a success
    table.close_all()


def test_clients_never_answered_outlive_their_session(pair: tuple[socket.socket, socket.socket]) -> None:
    kept: list[tuple[socket.socket, int]] = []
    table = Openers(Stream().push, lambda port, why: None)
    table.open(pair[0], 3000)
    other, client = socket.socketpair()
    table.open(other, 4000)
    table.take({"t": "opened", "ch": 2})
    table.close_all(lambda sock, port: kept.append((sock, port)))
    assert kept == [(pair[0], 3000)] and other.fileno() == -1  # the opened one is closed, the other kept
    client.close()


def test_only_the_laptop_opens_and_only_the_agent_answers(pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(ProtocolError, match="only the laptop"):
        Openers(Stream().push, lambda port, why: None).take({"t": "open", "ch": 1, "port": 3000})
    dialer = Dialer(Stream().push)
    dialer.table[1] = channels_module.Channel(1, pair[0], 3000, connected=True)
    with pytest.raises(ProtocolError, match="only the agent"):
        dialer.take({"t": "opened", "ch": 1})


def _serve(table: Dialer, until: float) -> None:
    """A select loop's turns for the dialer (connects in progress, retries due) until ``until``."""
    while time.monotonic() < until and len(table):
        table.tick(time.monotonic())
        for channel in table:
            if channel.events() & WRITE:
                table.ready(channel, WRITE)
        time.sleep(0.01)


def test_the_agent_retries_a_refused_port_until_the_app_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = Stream()
    dialer = Dialer(stream.push)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dialer.take({"t": "open", "ch": 1, "port": port})  # nothing listens yet: the app is restarting
    _serve(dialer, time.monotonic() + 0.3)
    assert stream.take() == []  # still trying
    with socket.socket() as app:
        app.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        app.bind(("127.0.0.1", port))
        app.listen()
        deadline = time.monotonic() + 3
        while not stream.frames and time.monotonic() < deadline:
            _serve(dialer, time.monotonic() + 0.05)
        assert stream.take() == [{"t": "opened", "ch": 1}]
    dialer.close_all()


def test_the_agent_gives_up_on_a_port_after_its_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dialer_module, "CONNECT_RETRY", 0.3)
    stream = Stream()
    dialer = Dialer(stream.push)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    began = time.monotonic()
    dialer.take({"t": "open", "ch": 1, "port": port})
    _serve(dialer, began + 3)
    assert stream.take() == [{"t": "open-failed", "ch": 1, "message": f"127.0.0.1:{port}: nothing listens there"}]
    assert time.monotonic() - began < 2 and len(dialer) == 0


# -- the outlet -------------------------------------------------------------------------------------
def test_offered_frames_never_wait_and_never_split_around_a_write() -> None:
    read_fd, write_fd = os.pipe()
    outlet = Outlet(write_fd, 5.0)
    big = encode_channel(1, b"c" * (1024 * 1024))  # far more than a pipe holds
    began = time.monotonic()
    outlet.offer(big)
    assert time.monotonic() - began < 0.5 and outlet.backlog  # nobody reads: queued, not waited for
    reader = FrameReader()
    frames: list[Frame] = []
    os.set_blocking(read_fd, False)

    def read_some() -> None:
        try:
            while True:
                frames.extend(reader.feed(os.read(read_fd, 65536)))
        except BlockingIOError:
            pass

    read_some()  # the part the pipe took
    writer = threading.Thread(target=outlet.write, args=(encode_message({"t": "ping"}),))
    writer.start()  # a write (the heartbeat's ping) goes after the whole queued frame
    while writer.is_alive() or not frames or frames[-1] != {"t": "ping"}:
        read_some()
        time.sleep(0.001)
    writer.join()
    assert frames == [ChannelData(1, b"c" * (1024 * 1024)), {"t": "ping"}] and not outlet.backlog
    outlet.close()
    os.close(read_fd)


# -- the ports given ----------------------------------------------------------------------------------
def test_port_specs() -> None:
    assert parse_forward("3000") == Forward(3000, 3000)
    assert parse_forward(9229) == Forward(9229, 9229)
    assert parse_forward("8080:3000") == Forward(8080, 3000)
    assert str(Forward(8080, 3000)) == "8080:3000" and str(Forward(3000, 3000)) == "3000"
    for bad in ("0", "70000", "a:b", "3000:", ":3000", "1:2:3", "", " 80", "²", True, 3.5):
        with pytest.raises(ValueError):
            parse_forward(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="sync: -p: local port 3000 is forwarded twice"):
        parse_forwards(["3000", "3000:4000"], "sync: -p")
    assert parse_forwards(["3000", "3001:3000"], "x") == [Forward(3000, 3000), Forward(3001, 3000)]


def test_p_flags_are_parsed_in_order(tmp_path: object) -> None:
    options = parse_sync_args(["--transport", "ssh box", "-p", "3000", "--port", "8080:3000"])
    assert options is not None and options.forwards == [Forward(3000, 3000), Forward(8080, 3000)]
    with pytest.raises(ConfigError, match="sync: -p: '0': 0 is not a port"):
        parse_sync_args(["--transport", "ssh box", "-p", "0"])


def test_sync_ports_in_a_config_file_are_checked_like_p() -> None:
    assert validate({"sync": {"ports": [3000, "8080:3000"]}}, "nodemon.json").sync.ports == [3000, "8080:3000"]
    assert validate({"sync": {"ports": 9229}}, "nodemon.json").sync.ports == [9229]
    for bad, says in (([0], "0 is not a port"), (["a:b"], "expected PORT or LOCAL:REMOTE"), ([80, "80"], "twice")):
        with pytest.raises(ConfigError, match=f"nodemon.json: key 'sync.ports': .*{says}"):
            validate({"sync": {"ports": bad}}, "nodemon.json")


def test_a_client_accepted_without_a_session_waits_for_one_but_not_forever() -> None:
    forwarder = Forwarder([Forward(free_local_port(), 3000)])
    forwarder.listen()
    try:
        (listener,) = forwarder.listeners
        clients = [socket.create_connection(listener.sock.getsockname()) for _ in range(2)]
        time.sleep(0.05)
        forwarder.accept(listener, None)
        forwarder.accept(listener, None)
        assert len(forwarder.waiting) == 2 and forwarder.next_due() is not None
        forwarder.hand_over(None, time.monotonic())  # no session yet, not too long: still waiting
        assert len(forwarder.waiting) == 2
        forwarder.waiting[0].until = time.monotonic() - 1  # this one waited too long: closed
        forwarder.hand_over(None, time.monotonic())
        clients[0].settimeout(1)
        assert clients[0].recv(1) == b"" and len(forwarder.waiting) == 1
        session = Session("pod/web-1", ["true"], 8.0)
        forwarder.hand_over(session, time.monotonic())  # a session: the other becomes its channel
        assert not forwarder.waiting and [channel.port for channel in session.channels] == [3000]
        session.channels.close_all(forwarder.adopt)  # the session ended before the agent answered
        assert [client.remote for client in forwarder.waiting] == [3000]
        for client in clients:
            client.close()
    finally:
        forwarder.close()


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
