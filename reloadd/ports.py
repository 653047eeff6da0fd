"""TCP ports of the old tree: remembered before a restart, confirmed free before the next start.

The tree being gone normally means its listening sockets are closed; a socket passed to a
process outside the tree (or the kernel still tearing it down) is the exception, and that is
the one case a user needs named: which pid holds the port.
"""

from __future__ import annotations

import time
from typing import Optional

import psutil

from .output import out

PORT_FREE_WAIT = 2.0  # seconds to wait for a remembered port to be released before starting anyway
PORT_POLL_INTERVAL = 0.02
TCP_LISTEN = "0A"  # st column of /proc/net/tcp for a listening socket


def listening_ports(pids: set[int]) -> set[int]:
    """TCP ports on which any of ``pids`` listens."""
    ports: set[int] = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except (psutil.Error, OSError):
            continue
        ports |= {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN and c.laddr}
    return ports


def _listening_now(ports: set[int]) -> bool:
    """Cheap check of /proc/net/tcp{,6}: does anything listen on one of ``ports``? (No pid lookup.)"""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines, None)
                for line in lines:
                    fields = line.split()
                    if fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) in ports:
                        return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def _holders(ports: set[int]) -> dict[int, Optional[int]]:
    """Port -> pid of a listener still holding it (pid None when it cannot be seen)."""
    held: dict[int, Optional[int]] = {}
    if not _listening_now(ports):
        return held
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return held
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in ports:
            held[conn.laddr.port] = conn.pid
    return held


def _describe(pid: Optional[int]) -> str:
    if pid is None:
        return "an unknown process"
    try:
        return f"pid {pid} ({' '.join(psutil.Process(pid).cmdline()) or psutil.Process(pid).name()})"
    except psutil.Error:
        return f"pid {pid}"


def wait_until_free(ports: set[int], timeout: float = PORT_FREE_WAIT) -> None:
    """Wait (bounded) until no process listens on ``ports``; name whoever still does."""
    if not ports:
        return
    deadline = time.monotonic() + timeout
    held = _holders(ports)
    while held and time.monotonic() < deadline:
        time.sleep(PORT_POLL_INTERVAL)
        held = _holders(ports)
    for port, pid in sorted(held.items()):
        out.warn(f"port {port} is still in use by {_describe(pid)}, outside the app's process tree")
