"""Helpers for tests of ``reloadd sync``: a laptop dir, a pod dir, and the sync between them."""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path
from typing import Callable, Optional

import psutil
from support import Reloadd, wait_for

SYNCED = "] synced "  # the laptop's line after each batch
IN_SYNC = "] in sync with "  # ...or after a resync that had nothing to send
SYNCED_JSON = '"event": "synced"'  # either, with --log-format json

# The example app, recording at each start how many files of the checkout it found in place.
COUNTING_SERVER_JS = """\
const http = require('http');
const fs = require('fs');
const path = require('path');
const version = require('./version.js');
const many = path.join(__dirname, 'many');
const count = fs.existsSync(many) ? fs.readdirSync(many).length : 0;
fs.appendFileSync(path.join(__dirname, 'starts.log'), process.pid + '\\n');
fs.appendFileSync(path.join(__dirname, 'counts.log'), count + '\\n');
const server = http.createServer((req, res) => res.end(version + ' ' + process.pid));
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening ' + process.pid));
"""


def control_env(base: Path) -> dict[str, str]:
    """A private channel directory per test, so parallel tests' supervisors never hear each other."""
    directory = base / "control"
    directory.mkdir(mode=0o700, exist_ok=True)
    return {"RELOADD_CONTROL_DIR": str(directory)}


def start_sync(
    run_reloadd: Callable[..., Reloadd], laptop: Path, pod: Path, *extra: str, env: Optional[dict[str, str]] = None
) -> Reloadd:
    """``reloadd sync LAPTOP --transport env --to POD``: the agent runs on this machine, as through kubectl."""
    sync = run_reloadd(
        ["sync", str(laptop), "--transport", "env", "--to", str(pod), *extra],
        laptop,
        env={**control_env(laptop.parent), **(env or {})},
    )
    wait_for(lambda: first_sync_done(sync) or sync.proc.poll() is not None, what=f"the first sync:\n{sync.log()}")
    return sync


def first_sync_done(sync: Reloadd) -> bool:
    log = sync.log()
    return SYNCED in log or IN_SYNC in log or SYNCED_JSON in log


def agents_of(sync: Reloadd) -> list[psutil.Process]:
    """The `reloadd agent` processes the sync started (directly, or under a transport command)."""
    try:
        children = psutil.Process(sync.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "agent" in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by content, directories as "/", symlinks as "-> target"."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            relative = str(path.relative_to(root))
            try:
                if path.is_symlink():
                    found[relative] = f"-> {os.readlink(path)}"
                elif path.is_dir():
                    found[relative] = "/"
                else:
                    found[relative] = path.read_text(errors="replace")
            except FileNotFoundError:
                continue  # renamed away by a commit between the listing and the look: not there now
    return found


def served(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


# The forwarded-ports app: "<version> <pid>" on /, BIG_MB megabytes of "x" on /big.
PORTS_SERVER_JS = """\
const http = require('http');
const version = require('./version.js');
const big = Buffer.alloc(1024 * 1024, 'x');
const server = http.createServer((req, res) => {
  if (req.url === '/big') {
    let left = Number(process.env.BIG_MB);
    const more = () => {
      while (left > 0) { left--; if (!res.write(big)) { res.once('drain', more); return; } }
      res.end();
    };
    more();
    return;
  }
  res.end(version + ' ' + process.pid);
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening ' + process.pid));
"""

FETCH_TIMEOUT = 10.0  # seconds for one request through a forwarded port (the agent retries 5 s)


def fetch(port: int, path: str = "/", timeout: float = FETCH_TIMEOUT) -> str:
    """GET ``path`` over a fresh connection; "" when the connection fails or closes early."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            return fetch_on(sock, path)
    except OSError:
        return ""


def fetch_on(sock: socket.socket, path: str = "/") -> str:
    """GET ``path`` on a connection already made; "" when it closes early."""
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = bytearray()
        while chunk := sock.recv(1024 * 1024):
            answer += chunk
    except OSError:
        return ""
    head, _, body = answer.decode(errors="replace").partition("\r\n\r\n")
    return body if head.startswith("HTTP/1.1 200") else ""
