"""Output: a log line that cannot be written is lost, never raised; a full non-blocking pipe is waited on."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator

import pytest

from reloadd import output
from reloadd.output import Output


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        try:
            os.close(fd)
        except OSError:
            pass


def fill(fd: int) -> int:
    """Fill the pipe until a write would block; return how many bytes it holds."""
    os.set_blocking(fd, False)
    held = 0
    for size in (65536, 1):
        try:
            while True:
                held += os.write(fd, b"x" * size)
        except BlockingIOError:
            pass
    return held


def read_exactly(fd: int, count: int) -> None:
    """Read the filler and nothing after it, so a line written meanwhile stays in the pipe."""
    os.set_blocking(fd, True)
    while count:
        count -= len(os.read(fd, count))


def read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 1 << 20):
            data += chunk
    except BlockingIOError:
        pass
    return data


def test_a_full_disk_loses_the_line_silently() -> None:
    with open("/dev/full", "w") as stream:
        Output(stream).info("nowhere to go")  # ENOSPC: no exception


def test_a_closed_stream_loses_the_line_silently(pipe: tuple[int, int]) -> None:
    stream = os.fdopen(pipe[1], "w")
    os.close(pipe[0])  # EPIPE (SIGPIPE is ignored by Python)
    Output(stream).info("nobody listens")
    stream.close()
    with pytest.raises(ValueError):
        stream.fileno()
    Output(stream).info("closed stream")


def test_a_full_non_blocking_pipe_is_waited_on_then_the_line_arrives(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    held = fill(write_end)
    stream = os.fdopen(write_end, "w", closefd=False)
    timer = threading.Timer(0.2, read_exactly, args=(read_end, held))  # room appears after a while
    timer.start()
    Output(stream).info("waited for")
    timer.join()
    assert b"[reloadd] waited for\n" in read_all(read_end)


def test_a_pipe_that_stays_full_drops_the_line_after_the_wait_and_says_so(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "LINE_WRITE_WAIT", 0.2)
    read_end, write_end = pipe
    fill(write_end)
    stream = os.fdopen(write_end, "w", closefd=False)
    out = Output(stream)
    began = time.monotonic()
    out.info("dropped")
    assert 0.2 <= time.monotonic() - began < 2
    assert fcntl.fcntl(write_end, fcntl.F_GETFL) & os.O_NONBLOCK
    read_all(read_end)
    out.info("next")
    assert read_all(read_end) == b"[reloadd] 1 log line lost: stderr could not be written\n[reloadd] next\n"
