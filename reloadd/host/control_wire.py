"""The wire of the local control channel between ``reloadd agent`` and the supervisor: where the
sockets are, what they are called, and how a message is framed. The server (control.py) and the
client (the agent's, sync/pod/announce.py) both speak it.

The agent knows exactly when a synced batch is complete, so the supervisor need not guess it
from a quiet window or wait for a poller on a FUSE or network volume. The channel is a Unix
socket in a directory only this user can open (``/tmp/reloadd-UID``, or ``RELOADD_CONTROL_DIR``):
no network port, and no other user can connect (0700 directory, 0600 sockets).

The rendezvous is derived from the synced directory, so a batch restarts only the supervisors
watching it: each supervisor listens on one socket per directory it cares about (its working
directory and each watched directory), named ``KEY.PID.sock`` where KEY is a short hash of that
directory's real path; the agent syncing into ROOT connects to the sockets whose KEY is ROOT's
or one of its parents' (a supervisor watching ``/app`` hears a batch written to ``/app/src``).
A supervisor of another app, in another directory, never hears it.

One connection per batch, newline-separated JSON:
  agent -> supervisor  ``{"begin": ROOT}``     before the first rename; the supervisor holds its
  supervisor -> agent  ``ok``                  own change bursts until the batch is committed
  agent -> supervisor  ``{"hold": SECONDS}``   (optional) hold longer: a dependency install runs
  agent -> supervisor  ``{"commit": [PATH...], "fresh": BOOL}`` after the last rename (fresh: the
                       next app may keep nothing preloaded: dependencies were installed)
  supervisor -> agent  ``{"outcome": ...}``    what the batch did to the app (feedback.py), once
                       known; then the supervisor closes
or, instead of the commit, when the agent only gave files the laptop's mtime (same content):
  agent -> supervisor  ``{"stamped": [PATH...]}`` no restart; the watcher's report of it is an echo
or, when the batch's dependency install failed (sync/pod/installs.py):
  agent -> supervisor  ``{"keep": [PATH...]}``  no restart: the app keeps running the old code
A connection that closes (or stays silent for ``HOLD_MAX``, or the hold it asked for) without a
commit releases the hold: that is how a batch that failed and was rolled back ends, with no restart.
With no supervisor listening the agent just writes, and the watcher does its usual job.

An agent asked for the app's logs (``reloadd sync --logs``) opens one more connection:
  agent -> supervisor  ``{"logs": true}``
  supervisor -> agent  ``{"log": LINE, "stream": "stdout"|"stderr"}`` for every line the apps
                       write (app_output.py), until either side closes; lines the agent is too
                       slow to take are dropped, never waited for
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

CONTROL_DIR_ENV = "RELOADD_CONTROL_DIR"
SOCKET_SUFFIX = ".sock"
KEY_LENGTH = 10  # hex digits of the directory's hash: short, since a socket's path must fit in 108 bytes
ACK = b"ok\n"
MAX_MESSAGE = 16 * 1024 * 1024  # bytes one connection may send: a commit of ~100,000 paths
READ_CHUNK = 65536
PRIVATE_MODE = 0o700


def control_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get(CONTROL_DIR_ENV) or f"/tmp/reloadd-{os.geteuid()}")


def directory_key(directory: str) -> str:
    """The rendezvous name of a directory: a short hash of its real path."""
    real = os.path.realpath(directory)
    return hashlib.sha256(os.fsencode(real)).hexdigest()[:KEY_LENGTH]


def private_dir(path: Path, create: bool) -> Optional[str]:
    """None if ``path`` is a directory only this user can open (made so if ``create``); else why not."""
    if create:
        try:
            os.mkdir(path, PRIVATE_MODE)
        except FileExistsError:
            pass
        except OSError as exc:
            return f"cannot create {path}: {exc.strerror}"
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return f"{path} is not private to this user (owner {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})"
    return None


def parse_message(line: bytes) -> dict[str, object]:
    """One line as a JSON object; anything else is an empty message."""
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.send(data)
    except OSError:
        pass  # the other end went away; its close is seen on the next read
