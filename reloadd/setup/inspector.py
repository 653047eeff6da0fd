"""node's inspector: the ``inspect`` setting (``[brk:]HOST:PORT``) and the ``--inspect`` flag that puts
it into node's argv, or the one the command already has.

The flag (--inspect, --inspect-brk), the config key and the command all agree through here: one
canonical value, ``HOST:PORT`` or ``brk:HOST:PORT``, and one place that turns it into node's flag.
Whether its host is every interface (the supervisor warns then) is answered here too.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Optional

from ..errors import ConfigError
from .forwards import MAX_PORT
from .node_argv import script_index
from .settings import Settings

# Reachable through kubectl port-forward, not from the network (docs/behaviour.md "Inspector").
INSPECT_DEFAULT_HOST = "127.0.0.1"
INSPECT_DEFAULT_PORT = 9229  # node's own default inspector port
INSPECT_BRK_PREFIX = "brk:"  # `inspect` value prefix meaning --inspect-brk (stop before the first line)
INSPECT_FLAGS = ("--inspect", "--inspect-brk", "--inspect-wait")
INSPECT_NOT_NODE = (
    "--inspect needs node as the program; put --inspect in your command instead, "
    "e.g. NODE_OPTIONS=--inspect=127.0.0.1:9229"
)


def parse_inspect(text: str) -> tuple[str, int]:
    """Parse node's ``[HOST:]PORT`` (an IPv6 HOST in brackets: ``[::1]:9229``) into (host, port).

    An empty text means the defaults. Raises ValueError for anything else.
    """
    text = text.strip()
    if not text:
        return INSPECT_DEFAULT_HOST, INSPECT_DEFAULT_PORT
    host, colon, port_text = text.rpartition(":")
    if not colon:
        host, port_text = "", text
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= MAX_PORT or "[" in host or "]" in host:
        raise ValueError("expected [HOST:]PORT such as 9229 or 127.0.0.1:9229")
    return host or INSPECT_DEFAULT_HOST, int(port_text)


def format_inspect(host: str, port: int, brk: bool = False) -> str:
    """The canonical ``inspect`` value: ``HOST:PORT``, ``brk:HOST:PORT`` for --inspect-brk."""
    shown = f"[{host}]" if ":" in host else host
    return f"{INSPECT_BRK_PREFIX if brk else ''}{shown}:{port}"


def inspect_target(value: str) -> tuple[bool, str, int]:
    """Split a canonical ``inspect`` value into (brk, host, port)."""
    brk = value.startswith(INSPECT_BRK_PREFIX)
    host, port = parse_inspect(value[len(INSPECT_BRK_PREFIX) :] if brk else value)
    return brk, host, port


def normalise_inspect(value: Any) -> Any:
    """The config key: accept ``true``, a port number, ``"PORT"`` or ``"[brk:]HOST:PORT"``; store
    ``[brk:]HOST:PORT``."""
    if value is None or value is False:
        return None
    if value is True:
        return format_inspect(INSPECT_DEFAULT_HOST, INSPECT_DEFAULT_PORT)
    if isinstance(value, int):
        return format_inspect(*parse_inspect(str(value)))
    if isinstance(value, str):
        brk, host, port = inspect_target(value)
        return format_inspect(host, port, brk)
    raise ValueError("expected HOST:PORT, PORT, or true")


def insert_inspect(argv: list[str], settings: Settings, is_node: bool) -> Optional[tuple[str, int]]:
    """Put ``--inspect=HOST:PORT`` right after node; without reloadd's flag, report node's own one."""
    if not settings.inspect:
        return _own_inspect(argv) if is_node else None
    flag, target = inspect_flag(settings.inspect, is_node)
    argv.insert(1, flag)
    return target


def inspect_flag(value: str, is_node: bool) -> tuple[str, tuple[str, int]]:
    """node's flag for a canonical ``inspect`` value, and the (host, port) it opens; only node takes it."""
    if not is_node:
        raise ConfigError(INSPECT_NOT_NODE)
    brk, host, port = inspect_target(value)
    name = "--inspect-brk" if brk else "--inspect"
    return f"{name}={format_inspect(host, port)}", (host, port)


def _own_inspect(argv: list[str]) -> Optional[tuple[str, int]]:
    """The inspector node will open because of an --inspect flag already in argv (before the script)."""
    end = script_index(argv) or len(argv)
    found: Optional[tuple[str, int]] = None
    for arg in argv[1:end]:
        name, _, value = arg.partition("=")
        if name in INSPECT_FLAGS:
            try:
                found = parse_inspect(value) if value else (INSPECT_DEFAULT_HOST, INSPECT_DEFAULT_PORT)
            except ValueError:
                continue  # node will complain about it itself
    return found


def listens_on_all_interfaces(host: str) -> bool:
    """Is ``host`` (as node's --inspect takes it) the unspecified address, i.e. every interface?

    ``0.0.0.0`` and ``::`` in any spelling: ``[::0]``, ``0:0::0``, and the IPv4 shorthands that
    inet_aton (and so node) reads as 0.0.0.0: ``0``, ``0.0``, ``0x0``, ``000``.
    """
    text = host.strip().strip("[]").split("%", 1)[0]  # an IPv6 zone (`::%eth0`) does not narrow it
    try:
        return ipaddress.ip_address(text).is_unspecified
    except ValueError:
        pass
    try:
        return socket.inet_aton(text) == bytes(4)
    except OSError:
        return False
