"""``-p LOCAL:REMOTE`` and ``sync.ports``: what a forwarded port is, checked once for the command
line and the config alike. The listeners themselves are the sync's (sync/laptop/forward.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Union

from ..errors import ConfigError

MAX_PORT = 65535


LOOP_HINT_OFFSET = 10000  # the local port suggested instead of a looping one: PORT + this (3000 -> 13000)


class Forward(NamedTuple):
    """127.0.0.1:local on the laptop to 127.0.0.1:remote in the pod."""

    local: int
    remote: int

    def __str__(self) -> str:
        return str(self.local) if self.local == self.remote else f"{self.local}:{self.remote}"


def parse_forward(value: Union[str, int]) -> Forward:
    """``PORT`` or ``LOCAL:REMOTE`` (a number from the config is PORT); ValueError says what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{value!r}: expected PORT or LOCAL:REMOTE")
    local, colon, remote = str(value).partition(":")
    return Forward(_port(local, value), _port(remote, value) if colon else _port(local, value))


def _port(text: str, value: Union[str, int]) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{value!r}: expected PORT or LOCAL:REMOTE, ports being numbers (3000, 8080:3000)")
    port = int(text)
    if not 1 <= port <= MAX_PORT:
        raise ValueError(f"{value!r}: {port} is not a port (1 to {MAX_PORT})")
    return port


def check_forwards(values: Iterable[Union[str, int]]) -> list[Forward]:
    """Every ``-p`` (or ``sync.ports``) value; ValueError on a bad one or a local port given twice."""
    forwards: list[Forward] = []
    for value in values:
        forward = parse_forward(value)
        if any(other.local == forward.local for other in forwards):
            raise ValueError(f"local port {forward.local} is forwarded twice")
        forwards.append(forward)
    return forwards


def check_loops(forwards: list[Forward], same_host: bool, source: str) -> None:
    """Where the pod side is this machine (``--transport env``), 127.0.0.1:PORT in the "pod" is the
    laptop's own listener: a forward to the same port would connect to itself, without end."""
    for forward in forwards:
        if same_host and forward.local == forward.remote:
            raise ConfigError(
                f"{source}: {forward.local}: with --transport env the pod side is this machine, so "
                f"127.0.0.1:{forward.remote} would be this forward itself; give another local port "
                f"(-p {_other_port(forward.local)}:{forward.remote})"
            )


def _other_port(port: int) -> int:
    return port + LOOP_HINT_OFFSET if port + LOOP_HINT_OFFSET <= MAX_PORT else port - LOOP_HINT_OFFSET


def parse_forwards(values: Iterable[Union[str, int]], source: str) -> list[Forward]:
    """``check_forwards`` for the command line: a usage error in one line."""
    try:
        return check_forwards(values)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
