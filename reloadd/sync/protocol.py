"""Frames and messages on the wire between ``reloadd sync`` (laptop) and ``reloadd agent`` (pod).

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

Every message is checked against ``MESSAGES`` here, in one place, before either side acts on
it: a known type, exactly the known keys, each of the right JSON type (a bool is not an int),
numbers inside their range, text that is valid Unicode. Nothing grows with the size of the tree:
every list a message carries is cut by ``chunks`` below ``CHUNK_BYTES``, so a 100,000-file tree
is many frames, never one big one.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, Union

from ..errors import ReloaddError

# 2: chunked deletes/hashes/replies, all-or-nothing batches with a failed reply; 3: forwarded ports
PROTOCOL_VERSION = 3
HEADER = struct.Struct(">cI")  # type byte, body length
JSON_FRAME = b"J"
DATA_FRAME = b"D"
CHANNEL_FRAME = b"C"
FRAME_TYPES = (JSON_FRAME, DATA_FRAME, CHANNEL_FRAME)
CHANNEL_ID = struct.Struct(">I")  # the first bytes of a C frame's body
CHANNEL_MAX = 2**32 - 1
CHANNEL_WINDOW = 256 * 1024  # bytes of one channel in flight, unwritten by the receiver: its credit
DATA_CHUNK = 256 * 1024  # file bytes per D frame: big enough for throughput, small enough to interleave
MAX_FRAME = 4 * 1024 * 1024  # larger frames end the session: no peer gets to make us allocate more
CHUNK_BYTES = 512 * 1024  # encoded list items per message; JSON escapes stay far below MAX_FRAME
CHUNK_ITEMS = 2000  # ...and at most this many items, so a reply is written while the next is read
EXIT_PROTOCOL = 65  # EX_DATAERR: the agent got a malformed or oversized frame

INT64 = 2**63 - 1
IDENT_MAX = 2**53  # batch ids: exact in every JSON implementation


class ProtocolError(ReloaddError):
    """The peer sent something that is not a valid frame: the session ends with this one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_PROTOCOL)


@dataclass(frozen=True)
class Data:
    """The body of a D frame: bytes of the file being sent."""

    chunk: bytes


@dataclass(frozen=True)
class ChannelData:
    """The body of a C frame: bytes of one forwarded connection."""

    channel: int
    chunk: bytes


Frame = Union[dict[str, Any], Data, ChannelData]
Check = Callable[[Any], bool]


def _int(low: int, high: int) -> Check:
    return lambda value: type(value) is int and low <= value <= high


def _strs(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _hashes(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(h, str) or h is None for h in value.values())


_STR: Check = lambda value: isinstance(value, str)  # noqa: E731
_BOOL: Check = lambda value: type(value) is bool  # noqa: E731
_LIST: Check = lambda value: isinstance(value, list)  # noqa: E731
_ID = _int(0, IDENT_MAX)
_SIZE = _int(0, INT64)
_NS = _int(-INT64, INT64)
_CHANNEL = _int(1, CHANNEL_MAX)
_SECONDS: Check = lambda value: type(value) in (int, float) and 0 < value <= INT64  # noqa: E731


@dataclass(frozen=True)
class Schema:
    required: dict[str, Check]
    optional: dict[str, Check]
    open: bool = False  # extra keys allowed (hello: so a newer agent still reaches the version check)


# Every message either side may send; a new kind (a heartbeat "ping", say) is one more row.
MESSAGES: dict[str, Schema] = {
    # agent -> laptop
    "hello": Schema({"version": _int(0, IDENT_MAX)}, {"reloadd": _STR, "root": _STR}, open=True),
    "refused": Schema({"message": _STR}, {}),  # the pod forbids syncing (production): no retry
    "error": Schema({"message": _STR}, {}),  # the agent stops; one line
    "warn": Schema({"message": _STR}, {}),  # something in the pod is not synced (an unreadable dir...)
    "dirs": Schema({"items": _LIST}, {}),  # a chunk of [directory, digest] (listing.py), the answer to start
    "dirs-end": Schema({"count": _SIZE}, {}),
    "manifest": Schema({"entries": _LIST}, {}),  # a chunk of [path, kind, size, mtime_ns, exec, target]
    "manifest-end": Schema({"count": _SIZE}, {}),  # the end of the answer to one list request
    "hashes": Schema({"hashes": _hashes}, {}),  # one reply per hash request; null: not a readable file
    "skipped": Schema({"id": _ID, "items": _strs}, {}),  # paths refused by the gate, one line each
    "failed": Schema({"id": _ID, "items": _LIST}, {}),  # [path, errno name, strerror]: the batch rolled back
    "done": Schema({"id": _ID, "ok": _BOOL}, {}),  # the last reply of a batch: committed, or not at all
    # what a committed batch did to the app (agent.live_fields): sent on its own, after "done"
    "live": Schema(
        {"id": _ID, "what": _STR},
        {"ms": _SIZE, "status": _NS, "lines": _strs, "command": _STR, "installed": _STR, "install_ms": _SIZE},
    ),
    "output": Schema({"line": _STR}, {}),  # a line of a dependency install's output (installs.py)
    "log": Schema({"line": _STR, "stream": _STR}, {}),  # a line the app wrote (--logs)
    # laptop -> agent
    "start": Schema({"exclude": _strs}, {"onChange": _LIST, "logs": _BOOL}),  # onChange: agent._on_change checks it
    "list": Schema({"dirs": _strs}, {}),  # the entries of these directories, please (their digests differ)
    "compared": Schema({}, {}),  # the comparison is over: the agent drops its walk (no reply)
    "hash": Schema({"paths": _strs}, {}),
    "stamp": Schema({"items": _LIST}, {}),  # [path, mtime_ns]: same content, the laptop's mtime (no reply)
    "batch": Schema({"id": _ID}, {}),
    "delete": Schema({"paths": _strs}, {}),  # a chunk of the open batch's deletes
    "op": Schema({"op": _STR, "path": _STR}, {"size": _SIZE, "exec": _BOOL, "mtime": _NS, "target": _STR}),
    "commit": Schema({"id": _ID}, {}),
    "open": Schema({"ch": _CHANNEL, "port": _int(1, 65535)}, {}),  # connect channel ch to 127.0.0.1:port
    # agent -> laptop: the answer to open
    "opened": Schema({"ch": _CHANNEL}, {}),
    "open-failed": Schema({"ch": _CHANNEL, "message": _STR}, {}),
    # either way, when idle (heartbeat.py); the laptop's first one says its window in seconds
    "ping": Schema({}, {"window": _SECONDS}),
    # either way, per channel: no more bytes from this side (abort: its socket failed, drop the channel);
    # bytes written out, take this many more
    "close": Schema({"ch": _CHANNEL}, {"abort": _BOOL}),
    "credit": Schema({"ch": _CHANNEL, "bytes": _int(1, CHANNEL_WINDOW)}, {}),
}
CHANNEL_MESSAGES = frozenset({"open", "opened", "open-failed", "close", "credit"})


def check_message(message: Any) -> dict[str, Any]:
    """``message`` if it is one of ``MESSAGES`` with exactly its keys and types; else ProtocolError."""
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("malformed message frame (not an object with a type)")
    kind = message["t"]
    schema = MESSAGES.get(kind)
    if schema is None:
        raise ProtocolError(f"unknown message type {kind[:40]!r}")
    for key, check in schema.required.items():
        if key not in message:
            raise ProtocolError(f"{kind}: missing {key!r}")
        if not check(message[key]):
            raise ProtocolError(f"{kind}: bad value for {key!r}")
    for key, value in message.items():
        if key == "t" or key in schema.required:
            continue
        optional = schema.optional.get(key)
        if optional is None and not schema.open:
            raise ProtocolError(f"{kind}: unknown key {key[:40]!r}")
        if optional is not None and not optional(value):
            raise ProtocolError(f"{kind}: bad value for {key!r}")
    return message


def encode_message(message: dict[str, Any]) -> bytes:
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


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def decode_message(body: bytes) -> dict[str, Any]:
    """One J frame's body: JSON, valid Unicode, not absurdly nested, and one of ``MESSAGES``."""
    try:
        message = json.loads(body.decode())
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("malformed message frame (not JSON)") from None
    except RecursionError:
        raise ProtocolError("malformed message frame (nested too deeply)") from None
    checked = check_message(message)
    if _SURROGATE_ESCAPE.search(body) and not _valid_text(checked):
        raise ProtocolError(f"{checked['t']}: text with a lone surrogate (not valid Unicode)")
    return checked


def _valid_text(value: Any) -> bool:
    """Every string (keys too) encodes as UTF-8: an escaped pair became one character, a lone half did not."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return False
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, dict):
            stack += list(item)
            stack += list(item.values())
    return True
