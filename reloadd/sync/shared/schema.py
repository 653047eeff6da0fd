"""The schema of the sync's messages: every message either side takes is checked here first.

Checked in one place, before either side acts on it: a known type (messages.py names each),
exactly the known keys, each of the right JSON type (a bool is not an int), numbers inside their
range, text that is valid Unicode. A message that fails is a ProtocolError: the session ends
with one line (exit 65), never a half-understood request.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, NamedTuple

from ...errors import ReloaddError

CHANNEL_MAX = 2**32 - 1
CHANNEL_WINDOW = 256 * 1024  # bytes of one channel in flight, unwritten by the receiver: its credit
EXIT_PROTOCOL = 65  # EX_DATAERR: the agent got a malformed or oversized frame
INT64 = 2**63 - 1
IDENT_MAX = 2**53  # batch ids: exact in every JSON implementation


class ProtocolError(ReloaddError):
    """The peer sent something that is not a valid frame: the session ends with this one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_PROTOCOL)


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


class Schema(NamedTuple):  # not a frozen dataclass: see protocol.Data
    required: dict[str, Check]
    optional: dict[str, Check]
    open: bool = False  # extra keys allowed (hello: so a newer agent still reaches the version check)


# Every message either side may send, one row per type of messages.py (what each is for is said there);
# a new kind is one more type there and one more row here.
MESSAGES: dict[str, Schema] = {
    "hello": Schema({"version": _int(0, IDENT_MAX)}, {"reloadd": _STR, "root": _STR}, open=True),
    "refused": Schema({"message": _STR}, {}),
    "error": Schema({"message": _STR}, {}),
    "warn": Schema({"message": _STR}, {}),
    "dirs": Schema({"items": _LIST}, {}),
    "dirs-end": Schema({"count": _SIZE}, {}),
    "manifest": Schema({"entries": _LIST}, {}),
    "manifest-end": Schema({"count": _SIZE}, {}),
    "hashes": Schema({"hashes": _hashes}, {}),
    "skipped": Schema({"id": _ID, "items": _strs}, {}),
    "failed": Schema({"id": _ID, "items": _LIST}, {}),
    "done": Schema({"id": _ID, "ok": _BOOL}, {}),
    "live": Schema(
        {"id": _ID, "what": _STR},
        {"ms": _SIZE, "status": _NS, "lines": _strs, "command": _STR, "installed": _STR, "install_ms": _SIZE},
    ),
    "output": Schema({"line": _STR}, {}),
    "log": Schema({"line": _STR, "stream": _STR}, {}),
    "start": Schema({"exclude": _strs}, {"onChange": _LIST, "logs": _BOOL}),
    "list": Schema({"dirs": _strs}, {}),
    "compared": Schema({}, {}),
    "hash": Schema({"paths": _strs}, {}),
    "stamp": Schema({"items": _LIST}, {}),
    "batch": Schema({"id": _ID}, {}),
    "delete": Schema({"paths": _strs}, {}),
    "op": Schema({"op": _STR, "path": _STR}, {"size": _SIZE, "exec": _BOOL, "mtime": _NS, "target": _STR}),
    "commit": Schema({"id": _ID}, {}),
    "open": Schema({"ch": _CHANNEL, "port": _int(1, 65535)}, {}),
    "opened": Schema({"ch": _CHANNEL}, {}),
    "open-failed": Schema({"ch": _CHANNEL, "message": _STR}, {}),
    "ping": Schema({}, {"window": _SECONDS}),
    "close": Schema({"ch": _CHANNEL}, {"abort": _BOOL}),
    "credit": Schema({"ch": _CHANNEL, "bytes": _int(1, CHANNEL_WINDOW)}, {}),
}
CHANNEL_MESSAGES = frozenset({"open", "opened", "open-failed", "close", "credit"})  # messages.ChannelMessage
# messages.Notice: what the agent sends on its own at any time, not as an answer (kept apart by the laptop)
NOTICE_MESSAGES = frozenset({"live", "output", "log"})


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
