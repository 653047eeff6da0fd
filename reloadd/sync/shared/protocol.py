"""Frames on the wire between ``reloadd sync`` (laptop) and ``reloadd agent`` (pod).

The transport is a plain byte stream (the stdio of ``kubectl exec``, ``docker exec``, ``ssh``),
so every message is framed: one type byte, a 4-byte big-endian length, then the body. A ``J``
frame carries one JSON object (a message); a ``D`` frame carries raw file bytes that belong to
the file op announced just before. Both sides check the length before reading the body: a peer
cannot make the other allocate more than ``MAX_FRAME`` bytes, and a stream that ends inside a
frame is an error, never a shorter file. A ``C`` frame carries bytes of one forwarded TCP
connection (a channel, channels.py): a 4-byte big-endian channel id, then the bytes. Any other
type byte is a protocol error; a later frame kind gets its own type byte and a version bump.

Channels (``reloadd sync -p``) share the stream with the sync: the laptop asks the agent to
``open`` a connection to a port in the pod, the agent answers ``opened`` or ``open-failed``,
either side may ``close`` it, and bytes flow only against ``credit``: each side may have at most
``CHANNEL_WINDOW`` bytes of a channel in flight that the other has not yet written out to its
socket, so a client that stops reading holds up its own channel and nothing else.

The messages themselves are typed in messages.py and checked by schema.py as the reader here
decodes them. Nothing grows with the size of the tree: every list a message carries is cut by
``chunks`` below ``CHUNK_BYTES``, so a 100,000-file tree is many frames, never one big one.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar, Union

from .schema import CHANNEL_MESSAGES, ProtocolError, decode_message

# 2: chunked deletes/hashes/replies, all-or-nothing batches with a failed reply; 3: forwarded ports
PROTOCOL_VERSION = 3
HEADER = struct.Struct(">cI")  # type byte, body length
JSON_FRAME = b"J"
DATA_FRAME = b"D"
CHANNEL_FRAME = b"C"
FRAME_TYPES = (JSON_FRAME, DATA_FRAME, CHANNEL_FRAME)
CHANNEL_ID = struct.Struct(">I")  # the first bytes of a C frame's body
DATA_CHUNK = 256 * 1024  # file bytes per D frame: big enough for throughput, small enough to interleave
MAX_FRAME = 4 * 1024 * 1024  # larger frames end the session: no peer gets to make us allocate more
CHUNK_BYTES = 512 * 1024  # encoded list items per message; JSON escapes stay far below MAX_FRAME
CHUNK_ITEMS = 2000  # ...and at most this many items, so a reply is written while the next is read


# Frames' bodies are named tuples, not frozen dataclasses: a frozen dataclass costs ~1 ms to define at
# import, and the agent, which every sync start waits for, imports this module before it walks.
class Data(NamedTuple):
    """The body of a D frame: bytes of the file being sent."""

    chunk: bytes


class ChannelData(NamedTuple):
    """The body of a C frame: bytes of one forwarded connection."""

    channel: int
    chunk: bytes


Frame = Union[dict[str, Any], Data, ChannelData]  # a message checked by schema.py; its type is the taker's to say


def encode_message(message: Mapping[str, object]) -> bytes:
    """Any JSON object: the typed senders pass messages.py's types, the tests a peer's mistakes too."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return _frame(JSON_FRAME, body)


def encode_data(chunk: bytes) -> bytes:
    return _frame(DATA_FRAME, chunk)


def encode_channel(channel: int, chunk: bytes) -> bytes:
    return _frame(CHANNEL_FRAME, CHANNEL_ID.pack(channel) + chunk)


def is_channel_frame(frame: Frame) -> bool:
    """A frame for the channel table (channels.py), not for the sync."""
    return isinstance(frame, ChannelData) or (isinstance(frame, dict) and frame["t"] in CHANNEL_MESSAGES)


def _frame(kind: bytes, body: bytes) -> bytes:
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return HEADER.pack(kind, len(body)) + body


T = TypeVar("T")


def chunks(items: Iterable[T], limit_bytes: int = CHUNK_BYTES, limit_items: int = CHUNK_ITEMS) -> Iterator[list[T]]:
    """``items`` in lists whose JSON stays under ``limit_bytes`` (and ``limit_items`` long): one message each."""
    chunk: list[T] = []
    size = 0
    for item in items:
        length = _json_size(item) + 1
        if chunk and (size + length > limit_bytes or len(chunk) >= limit_items):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += length
    if chunk:
        yield chunk


def _json_size(item: object) -> int:
    """Bytes ``item`` takes in a message (an upper bound for text, exact for anything else)."""
    if isinstance(item, str):
        if item.isascii() and item.isprintable():
            return len(item) + item.count('"') + item.count("\\") + 2
        return 6 * len(item) + 2  # every character escaped (\u0001) at worst; UTF-8 takes at most 4
    return len(json.dumps(item, ensure_ascii=False))


class FrameReader:
    """Turns bytes read from the stream (in any pieces) into frames; raises ProtocolError on bad input."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        position, end = 0, len(buffer)
        while end - position >= HEADER.size:
            kind, length = HEADER.unpack_from(buffer, position)
            if kind not in FRAME_TYPES:
                raise ProtocolError(f"unknown frame type {kind!r}: the peer does not speak this protocol")
            if length > MAX_FRAME:
                raise ProtocolError(f"frame of {length} bytes is over the {MAX_FRAME}-byte limit")
            start = position + HEADER.size
            if end - start < length:
                break
            body = bytes(buffer[start : start + length])
            position = start + length
            frames.append(_decode(kind, body))
        del buffer[:position]  # once per read, not once per frame: a checkout is thousands of tiny frames
        return frames

    def finish(self) -> None:
        """The stream ended: bytes left over are a truncated frame."""
        if self._buffer:
            raise ProtocolError(f"the stream ended inside a frame ({len(self._buffer)} bytes left over)")


def _decode(kind: bytes, body: bytes) -> Frame:
    if kind == DATA_FRAME:
        return Data(body)
    if kind == CHANNEL_FRAME:
        if len(body) <= CHANNEL_ID.size:
            raise ProtocolError("channel frame without a channel id and bytes")
        (channel,) = CHANNEL_ID.unpack_from(body)
        return ChannelData(channel, body[CHANNEL_ID.size :])
    return decode_message(body)
