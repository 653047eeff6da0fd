"""TCP ports of the old tree: remembered before a restart, confirmed free before the next start.

The tree being gone normally means its listening sockets are closed; a socket passed to a
process outside the tree (or the kernel still tearing it down) is the exception, and that is
the one case a user needs named: which pid holds the port.

This sits on the restart path, so it asks the kernel for listening sockets only, over
netlink (what `ss -l` does). /proc/net/tcp lists every socket, TIME_WAIT included: after a
few hundred requests to a dev server it took 7-10 ms to read, psutil's per-process view as
long again, on every restart.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Optional

from ..output import out

PORT_FREE_WAIT = 2.0  # seconds to wait for a remembered port to be released before starting anyway
PORT_POLL_INTERVAL = 0.002  # the kernel frees a dead listener within a millisecond or two

# linux/sock_diag.h, linux/inet_diag.h, linux/netlink.h
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10
NLMSG_HEADER = struct.Struct("=IHHII")
DIAG_REQUEST = struct.Struct("=BBBxI48x")  # family, protocol, extensions, pad, states, inet_diag_sockid
DIAG_SPORT = struct.Struct(">H")  # inet_diag_msg: 4 bytes, then the socket id starting with the source port
DIAG_INODE = struct.Struct("=I")
DIAG_INODE_OFFSET = 4 + 48 + 16  # after family/state/timer/retrans, the socket id and expires..uid


def _netlink_listeners(family: int) -> dict[int, int]:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        body = DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN)
        nl.send(
            NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
            + body
        )
        found: dict[int, int] = {}
        while True:
            data = nl.recv(65536)
            offset = 0
            while offset + NLMSG_HEADER.size <= len(data):
                length, kind, _, _, _ = NLMSG_HEADER.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR or length < NLMSG_HEADER.size:
                    raise OSError("sock_diag request refused")
                msg = offset + NLMSG_HEADER.size
                port = DIAG_SPORT.unpack_from(data, msg + 4)[0]
                found[DIAG_INODE.unpack_from(data, msg + DIAG_INODE_OFFSET)[0]] = port
                offset += (length + 3) & ~3


def _proc_listeners() -> dict[int, int]:
    """Fallback where netlink sock_diag is not available: parse /proc/net/tcp{,6}."""
    found: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines, None)
                for line in lines:
                    fields = line.split()
                    if fields[3] == "0A":  # TCP_LISTEN in hex
                        found[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
        except (OSError, IndexError, ValueError):
            continue
    return found


def listeners() -> dict[int, int]:
    """Socket inode -> port of every listening TCP socket in this network namespace."""
    try:
        return {**_netlink_listeners(socket.AF_INET), **_netlink_listeners(socket.AF_INET6)}
    except OSError:
        return _proc_listeners()


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listening_ports(pids: set[int]) -> set[int]:
    """TCP ports on which any of ``pids`` listens."""
    by_inode = listeners()
    if not by_inode:
        return set()
    ports: set[int] = set()
    for pid in pids:
        ports |= {by_inode[inode] for inode in _socket_inodes(pid) if inode in by_inode}
    return ports


def _holder(inode: int) -> Optional[int]:
    """The pid that has socket ``inode`` open (a scan of every process: only on the rare failure path)."""
    for name in os.listdir("/proc"):
        if name.isdigit() and inode in _socket_inodes(int(name)):
            return int(name)
    return None


def _describe(pid: Optional[int]) -> str:
    if pid is None:
        return "a process reloadd cannot see"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = ""
    return f"pid {pid} ({command})" if command else f"pid {pid}"


def wait_until_free(ports: set[int], timeout: float = PORT_FREE_WAIT) -> None:
    """Wait (bounded) until nothing listens on ``ports``; name whoever still does."""
    if not ports:
        return
    deadline = time.monotonic() + timeout
    held = {inode: port for inode, port in listeners().items() if port in ports}
    while held and time.monotonic() < deadline:
        time.sleep(PORT_POLL_INTERVAL)
        held = {inode: port for inode, port in listeners().items() if port in ports}
    for inode, port in sorted(held.items(), key=lambda item: item[1]):
        out.warn(f"port {port} is still in use by {_describe(_holder(inode))}, outside the app's process tree")
