"""Frames on the wire between ``reloadd sync`` (laptop) and ``reloadd agent`` (pod).

The transport is a plain byte stream (the stdio of ``kubectl exec``, ``docker exec``, ``ssh``),
so every message is framed: one type byte, a 4-byte big-endian length, then the body. A ``J``
frame carries one JSON object (a command or a reply); a ``D`` frame carries raw file bytes that
belong to the file op announced just before. Both sides check the length before reading the
body: a peer cannot make the other allocate more than ``MAX_FRAME`` bytes, and a stream that
ends inside a frame is an error, never a shorter file.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Union

from ..errors import ReloaddError

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">cI")  # type byte, body length
JSON_FRAME = b"J"
DATA_FRAME = b"D"
FRAME_TYPES = (JSON_FRAME, DATA_FRAME)
DATA_CHUNK = 256 * 1024  # file bytes per D frame: big enough for throughput, small enough to interleave
MAX_FRAME = 4 * 1024 * 1024  # larger frames end the session: no peer gets to make us allocate more
MANIFEST_CHUNK = 2000  # manifest entries per JSON frame, which keeps a 50,000-file manifest under MAX_FRAME
EXIT_PROTOCOL = 65  # EX_DATAERR: the agent got a malformed or oversized frame


class ProtocolError(ReloaddError):
    """The peer sent something that is not a valid frame: the session ends with this one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_PROTOCOL)


@dataclass(frozen=True)
class Data:
    """The body of a D frame: bytes of the file being sent."""

    chunk: bytes


Frame = Union[dict[str, Any], Data]


def encode_message(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return _frame(JSON_FRAME, body)


def encode_data(chunk: bytes) -> bytes:
    return _frame(DATA_FRAME, chunk)


def _frame(kind: bytes, body: bytes) -> bytes:
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return HEADER.pack(kind, len(body)) + body


class FrameReader:
    """Turns bytes read from the stream (in any pieces) into frames; raises ProtocolError on bad input."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            if kind not in FRAME_TYPES:
                raise ProtocolError(f"unknown frame type {kind!r}: the peer does not speak this protocol")
            if length > self.max_frame:
                raise ProtocolError(f"frame of {length} bytes is over the {self.max_frame}-byte limit")
            if len(self._buffer) < HEADER.size + length:
                break
            body = bytes(self._buffer[HEADER.size : HEADER.size + length])
            del self._buffer[: HEADER.size + length]
            frames.append(Data(body) if kind == DATA_FRAME else _decode_json(body))
        return frames

    def finish(self) -> None:
        """The stream ended: bytes left over are a truncated frame."""
        if self._buffer:
            raise ProtocolError(f"the stream ended inside a frame ({len(self._buffer)} bytes left over)")

    @property
    def pending(self) -> int:
        return len(self._buffer)


def _decode_json(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode())
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("malformed message frame (not JSON)") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("malformed message frame (not an object with a type)")
    return message
