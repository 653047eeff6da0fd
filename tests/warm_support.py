"""A probe app for warm restarts: it records what a Node.js app can observe about how it was started.

Each start writes ``../probe-out/probe-<version>.json`` (outside the watched tree; the version comes
from version.js / version.mjs) with what the entry point and a dependency under node_modules saw;
the tests start it cold and warm and compare.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from support import wait_for

# A dependency that looks at its surroundings when required, and again when called.
PROBE_DEP = """\
const seen = {
  mainAtRequire: require.main ? require.main.filename : null,
  mainIsUndefinedAtRequire: require.main === undefined,
  argvAtRequire: process.argv.slice(1),
  execArgvAtRequire: process.execArgv.slice(),
};
module.exports = {
  seen,
  later: () => ({ main: require.main ? require.main.filename : null }),
};
"""

PROBE_COMMON = """\
function fdKinds() {
  const kinds = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync('/proc/self/fd/' + fd);
      kinds.push(target.startsWith('/') && !target.startsWith('/dev/') ? 'a file' : target.replace(/\\d+/g, 'N'));
    } catch {}
  }
  return kinds.sort();
}
function record(extra) {
  const probe = {
    version,
    argv: process.argv,
    argv0: process.argv0,
    execArgv: process.execArgv,
    title: process.title,
    pid: process.pid,
    ppid: process.ppid,
    cwd: process.cwd(),
    env: { PROBE_ENV: process.env.PROBE_ENV, CONFIG_ENV: process.env.CONFIG_ENV, NODE_OPTIONS: process.env.NODE_OPTIONS,
           keys: Object.keys(process.env).filter((k) => !['_', 'OLDPWD'].includes(k)).sort() },
    stdin: { isTTY: Boolean(process.stdin.isTTY) },
    dep: dep.seen,
    depLater: dep.later(),
    cacheKeys: Object.keys(cache).map((k) => path.relative(__root, k)).sort(),
    debugPort: process.debugPort,
    inspectorUrl: require('inspector').url() || null,
    // Clocks that count from the start (compared by the test: small when the app's first line runs).
    uptime: process.uptime(),
    performanceNow: performance.now(),
    timeOriginIsStart: Math.abs(performance.timeOrigin + performance.now() - Date.now()) < 50,
    hrtimeNs: String(process.hrtime.bigint()), // the system's monotonic clock, compared by the test
    ...extra,
  };
  setImmediate(() => {
    probe.fdKinds = fdKinds();
    const out = path.join(__root, '..', 'probe-out', 'probe-' + version + '.json');
    fs.writeFileSync(out, JSON.stringify(probe, null, 1));
    console.log('probe written ' + version + ' ' + process.pid);
  });
}
process.on('SIGUSR1', () => fs.appendFileSync(path.join(__root, 'signals.log'), 'SIGUSR1 ' + process.pid + '\\n'));
process.stdin.on('data', (d) => fs.appendFileSync(path.join(__root, 'stdin.log'), d));
const http = require('http');
http.createServer((q, r) => r.end(version + ' ' + process.pid)).listen(0, '127.0.0.1');
"""

PROBE_CJS = (
    """\
const fs = require('fs');
const path = require('path');
const __root = __dirname;
const version = require('./version.js');
const dep = require('probe-dep');
const cache = require.cache;
"""
    + PROBE_COMMON
    + """\
record({
  kind: 'cjs',
  mainIsModule: require.main === module,
  moduleId: module.id,
  mainFilename: require.main.filename,
  parentIsNull: module.parent === null,
  mainModuleIsModule: process.mainModule === module,
  childrenAtEnd: null,
});
if (process.env.PROBE_THROW) throw new Error('probe failed at start');
if (process.env.PROBE_EXIT) process.exit(Number(process.env.PROBE_EXIT));
"""
)

PROBE_ESM = (
    """\
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';
import { fileURLToPath } from 'url';
import version from './version.mjs';
import dep from 'probe-dep';
const require = createRequire(import.meta.url);
const __filename = fileURLToPath(import.meta.url);
const __dirname = path.dirname(__filename);
const __root = __dirname;
const cache = require.cache;
"""
    + PROBE_COMMON
    + """\
record({
  kind: 'esm',
  metaUrl: path.relative(__root, fileURLToPath(import.meta.url)),
  hasMainModule: 'mainModule' in process,
  requireMain: require.main === undefined ? 'undefined' : typeof require.main,
});
if (process.env.PROBE_THROW) throw new Error('probe failed at start');
if (process.env.PROBE_EXIT) process.exit(Number(process.env.PROBE_EXIT));
"""
)


def make_probe_app(root: Path, esm: bool = False, esm_in_js: bool = False) -> Path:
    """Write the probe app (CommonJS ``server.js`` or ESM ``server.mjs``) and its dependency into ``root``.

    ``esm_in_js``: the ESM probe as ``server.js`` in a package without "type": node detects the syntax.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root.parent / "probe-out").mkdir(exist_ok=True)
    dep = root / "node_modules" / "probe-dep"
    dep.mkdir(parents=True)
    (dep / "package.json").write_text('{"name": "probe-dep", "version": "1.0.0", "main": "index.js"}\n')
    (dep / "index.js").write_text(PROBE_DEP)
    (root / "package.json").write_text('{"name": "probe-app", "version": "1.0.0"}\n')
    if esm_in_js:
        (root / "server.js").write_text(PROBE_ESM)
        set_version(root, "v1", esm=True)
    elif esm:
        (root / "server.mjs").write_text(PROBE_ESM)
        set_version(root, "v1", esm=True)
    else:
        (root / "server.js").write_text(PROBE_CJS)
        set_version(root, "v1")
    return root


def set_version(root: Path, version: str, esm: bool = False) -> None:
    if esm:
        (root / "version.mjs").write_text(f"export default {version!r};\n")
    else:
        (root / "version.js").write_text(f"module.exports = {version!r};\n")


def read_probe(root: Path, version: str, what: str = "") -> dict[str, Any]:
    path = root.parent / "probe-out" / f"probe-{version}.json"
    wait_for(lambda: path.exists() and path.read_text().endswith("}"), what=what or f"{path.name}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def inspector_evaluate(port: int, expression: str) -> Any:
    """Attach to node's inspector on 127.0.0.1:``port`` as a debugger would and evaluate ``expression``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
        targets = json.loads(response.read())
    path = urllib.parse.urlparse(targets[0]["webSocketDebuggerUrl"]).path
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        reader = sock.makefile("rb")
        status = reader.readline()
        assert b" 101 " in status, status
        while reader.readline() not in (b"\r\n", b""):
            pass
        request = {"id": 1, "method": "Runtime.evaluate", "params": {"expression": expression, "returnByValue": True}}
        sock.sendall(_client_frame(json.dumps(request).encode()))
        while True:
            message = json.loads(_server_frame(reader))
            if message.get("id") == 1:
                return message["result"]["result"]["value"]


def _client_frame(payload: bytes) -> bytes:
    """One masked text frame (clients must mask, RFC 6455 5.3)."""
    mask = os.urandom(4)
    size = len(payload)
    header = bytes([0x81, 0x80 | size]) if size < 126 else bytes([0x81, 0x80 | 126]) + struct.pack(">H", size)
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def _server_frame(reader: Any) -> bytes:
    first, second = reader.read(2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack(">H", reader.read(2))[0]
    elif size == 127:
        size = struct.unpack(">Q", reader.read(8))[0]
    data: bytes = reader.read(size)
    return data


def listeners(port: int) -> set[int]:
    """Pids listening on TCP ``port``."""
    return {
        conn.pid
        for conn in psutil.net_connections(kind="tcp")
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid
    }
