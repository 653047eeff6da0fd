"""The pod side: ``reloadd agent [DIR]`` speaks the sync protocol on stdin/stdout, writes only under DIR.

A session: the agent says ``hello`` (or ``refused``, see guard.py), receives the exclude globs,
streams its manifest in chunks, answers hash requests, then applies batches. A batch is staged
out of sight and committed all at once or not at all (batch.py); the reply lists what was
skipped or failed, then ``done`` says which. Around a commit the agent tells the supervisor
that watches this directory (control.py) that a batch begins and what it committed: one
restart per batch, and none for a batch that failed.

Every path is checked by paths.check_path and resolved without following pod-side symlinks;
every message is checked by protocol.check_message. A malformed frame, a hostile path or an
oversized frame ends the session with one error line (exit 65); staged files are removed,
nothing partial becomes visible. stdin closing (the laptop stopped, Ctrl-C) ends the agent the
same way; so does a laptop that is silent for the heartbeat window (heartbeat.py) or stops
reading, so a frozen link never leaves a second agent behind; the app keeps running.

Between the sync's frames the agent serves forwarded ports (``reloadd sync -p``, channels.py):
it connects to 127.0.0.1:PORT in the pod for each channel the laptop opens, retrying while the
app restarts, and never waits on those sockets.
"""

from __future__ import annotations

import os
import selectors
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Optional

from .. import __version__
from ..errors import ConfigError, ReloaddError
from ..host.control import Announcement, LogFeed, control_dir, directory_key
from ..output import out
from ..setup.production import EXIT_REFUSED, refusal
from .batch import Batch, failures, skips
from .channels import Dialer
from .excludes import excluder
from .heartbeat import BEATS_PER_WINDOW, HEARTBEAT_WINDOW, MAX_WINDOW, MIN_WINDOW, PING, Heartbeat, Outlet, WriteStalled
from .installs import Installer, rules_from_wire
from .listing import digest_items, group
from .manifest import Entry, Exclude, file_hash, walk
from .paths import Blocked, Root, check_link_target, check_path, check_root, remove_tree, temp_name, temp_owner
from .protocol import (
    CHUNK_ITEMS,
    PROTOCOL_VERSION,
    ChannelData,
    Data,
    Frame,
    FrameReader,
    chunks,
    encode_message,
    is_channel_frame,
)
from .schema import INT64, ProtocolError

READ_CHUNK = 1024 * 1024
EXIT_LINK_DEAD = 75  # EX_TEMPFAIL: the laptop went silent or stopped reading; the agent ends itself
EXIT_WRITE_FAILED = 73  # EX_CANTCREAT: the pod's file system refused to hold a batch at all (read-only)
AGENT_HELP = """\
Usage: reloadd agent [DIR]

The pod side of `reloadd sync`: speaks the sync protocol on stdin/stdout and writes only under
DIR (default: the working directory). Started by `reloadd sync` through kubectl exec (or the
--transport command); not meant to be run by hand. Refuses to run when NODE_ENV=production
(unless RELOADD_WATCH=1 or RELOADD_SYNC=1) or when RELOADD_SYNC=0, with exit status 3.
Exit status 65 when the peer sends a malformed frame."""
NO_SUPERVISOR = "no-supervisor"  # a ``live`` outcome: nothing in the pod runs the app under reloadd here
OWED_BATCH = 0  # the batch id of an install an earlier session owed: the laptop numbers its batches from 1
NO_ANSWER = "no-answer"  # a ``live`` outcome: the supervisor did not say what the batch did in time
LIVE_OUTCOMES = ("restarted", "crashed", "unchanged", "reloaded", "stopped")  # feedback.py
LIVE_LINES = 12  # stderr lines of a crash at start passed on
ON_CHANGE_MAX = 100  # onChange rules in one start message
ON_CHANGE_TIMEOUT_MAX = 3600  # seconds, as config.MAX_DURATION_SECONDS
OP_KEYS = {  # exactly these keys per op: anything else is a peer that speaks another protocol
    "dir": {"t", "op", "path"},
    "link": {"t", "op", "path", "target"},
    "file": {"t", "op", "path", "size", "exec", "mtime"},
}


class Agent:
    """One session's state; ``handle`` takes each frame from the laptop side in order."""

    def __init__(self, root: Root, env: Mapping[str, str], send: Callable[[dict[str, Any]], None]) -> None:
        self.root = root
        self.env = env
        self.send = send
        self.exclude: Exclude = lambda path, is_dir: False
        self.batch: Optional[Batch] = None
        self.counter = 0
        self.listings: dict[str, list[Entry]] = {}  # the last start's walk, by directory, until compared
        owed = control_dir(env) / f"install-owed-{directory_key(root.path)}.json"
        self.installer = Installer(root.path, send, self._commit_to_supervisor, owed)
        self.logs: Optional[LogFeed] = None  # --logs: the app's output, from the supervisors

    # -- dispatch ----------------------------------------------------------------------------------
    def handle(self, frame: Frame) -> None:
        if isinstance(frame, Data):
            self._data(frame.chunk)
            return
        if isinstance(frame, ChannelData):
            raise ProtocolError("channel bytes are for the channel table, not the sync")
        message = frame  # checked against protocol.MESSAGES by the FrameReader that decoded it
        kind = message["t"]
        handler = {
            "start": self._start,
            "list": self._list,
            "compared": self._drop_walk,
            "hash": self._hash,
            "stamp": self._stamp,
            "batch": self._begin,
            "delete": self._delete,
            "op": self._op,
            "commit": self._commit,
        }.get(kind)
        if handler is None:
            raise ProtocolError(f"{kind!r} is not a message the agent takes")
        if kind in ("delete", "op", "commit") and self.batch is None:
            raise ProtocolError(f"{kind!r} outside a batch")
        if self.batch is not None and self.batch.upload is not None:
            raise ProtocolError(f"{kind!r} before the file {self.batch.upload.path!r} was complete")
        if kind in ("hash", "stamp", "batch"):
            self._drop_walk(message)  # the comparison is over, even if the laptop did not say so
        handler(message)

    def abort(self) -> None:
        """The session ended mid-batch: remove what was staged, so nothing partial stays."""
        batch, self.batch = self.batch, None
        if batch is not None:
            batch.abort()

    def _temps(self) -> Iterator[str]:
        while True:
            self.counter += 1
            yield temp_name(os.getpid(), self.counter)

    # -- manifest and hashes -----------------------------------------------------------------------
    def _start(self, message: dict[str, Any]) -> None:
        """Walk the whole tree (the laptop walks its own meanwhile), then send each directory's digest."""
        self.exclude = excluder(self.root.path, message["exclude"])
        self.installer.rules = rules_from_wire(_on_change(message.get("onChange")))
        if message.get("logs") is True and self.logs is None:
            self.logs = LogFeed(self.root.path, self.env, self._log)
            self.logs.start()
        self.listings = group(walk(self.root.fd, self.exclude, self._stale_temp, self._warn))
        for chunk in chunks(digest_items(self.listings)):
            self.send({"t": "dirs", "items": chunk})
        self.send({"t": "dirs-end", "count": len(self.listings)})
        if self.installer.resume():  # after the walk: the install writes node_modules meanwhile
            self.installer.take(OWED_BATCH, Announcement(self.root.path, self.env), [], [])

    def _drop_walk(self, message: dict[str, Any]) -> None:
        """The laptop has compared (``compared``, not answered): the walk's entries are not needed any more."""
        self.listings = {}

    def _list(self, message: dict[str, Any]) -> None:
        """The entries of the directories whose digests differed, from the walk of ``start``."""
        directories = message["dirs"]
        if len(directories) > CHUNK_ITEMS:
            raise ProtocolError(f"list: more than {CHUNK_ITEMS} directories in one request")
        count = 0
        for chunk in chunks(entry.to_wire() for directory in directories for entry in self.listings.get(directory, [])):
            self.send({"t": "manifest", "entries": chunk})
            count += len(chunk)
        self.send({"t": "manifest-end", "count": count})

    def _warn(self, message: str) -> None:
        self.send({"t": "warn", "message": message})

    def _stale_temp(self, fd: int, name: str) -> None:
        """A temporary file, directory or backup of an agent that was killed: nobody will rename it now."""
        owner = temp_owner(name)
        if owner is None or owner == os.getpid() or _process_exists(owner):
            return
        try:
            remove_tree(fd, name)
        except OSError:
            pass

    def _hash(self, message: dict[str, Any]) -> None:
        paths = message["paths"]
        if len(paths) > CHUNK_ITEMS:
            raise ProtocolError(f"hash: more than {CHUNK_ITEMS} paths in one request")
        hashes: dict[str, Optional[str]] = {}
        for path in paths:
            parts = check_path(path)
            try:
                parent = self.root.open_dir(parts[:-1], create=False)
            except (OSError, Blocked):
                hashes[path] = None
                continue
            try:
                hashes[path] = file_hash(parent, parts[-1])
            finally:
                os.close(parent)
        self.send({"t": "hashes", "hashes": hashes})

    def _stamp(self, message: dict[str, Any]) -> None:
        """Give files whose content matched the laptop's mtime, so the next start's size-and-mtime check
        settles them without hashing. Best effort: a file that cannot be stamped is hashed next time.
        The supervisor is told, so that an mtime alone is not taken for an edit and restarts nothing."""
        items = message["items"]
        if len(items) > CHUNK_ITEMS:
            raise ProtocolError(f"stamp: more than {CHUNK_ITEMS} items in one request")
        for item in items:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and _is_time(item[1])):
                raise ProtocolError(f"stamp: malformed item {str(item)[:80]}")
        wanted = [(check_path(path), mtime_ns) for path, mtime_ns in items]
        announcement = Announcement(self.root.path, self.env)
        stamped = [parts for parts, mtime_ns in wanted if self._stamp_one(parts, mtime_ns)]
        announcement.stamped([f"{self.root.path}/{'/'.join(parts)}" for parts in stamped])

    def _stamp_one(self, parts: tuple[str, ...], mtime_ns: int) -> bool:
        try:
            parent = self.root.open_dir(parts[:-1], create=False)
        except (OSError, Blocked):
            return False
        try:
            os.utime(parts[-1], ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)
            return True
        except OSError:
            return False
        finally:
            os.close(parent)

    # -- a batch -----------------------------------------------------------------------------------
    def _begin(self, message: dict[str, Any]) -> None:
        if self.batch is not None:
            raise ProtocolError("a batch began inside another")
        self.batch = Batch(message["id"], self.root, self._temps(), keep=self.exclude)

    def _delete(self, message: dict[str, Any]) -> None:
        assert self.batch is not None
        for path in message["paths"]:
            check_path(path)
        self.batch.delete(message["paths"])

    def _op(self, message: dict[str, Any]) -> None:
        assert self.batch is not None
        op, path = message["op"], message["path"]
        keys = OP_KEYS.get(op)
        if keys is None:
            raise ProtocolError(f"unknown op {op[:40]!r}")
        if set(message) != keys:
            raise ProtocolError(f"{op} {path[:80]!r}: needs exactly {', '.join(sorted(keys - {'t', 'op'}))}")
        parts = check_path(path)
        if op == "dir":
            self.batch.make_dir(path, parts)
        elif op == "link":
            self.batch.stage_link(path, parts, check_link_target(path, message["target"]))
        else:
            self.batch.stage_file(path, parts, message["size"], message["exec"], message["mtime"])

    def _data(self, chunk: bytes) -> None:
        upload = self.batch.upload if self.batch else None
        if upload is None or len(chunk) > upload.remaining:
            raise ProtocolError("file data that no file op announced")
        assert self.batch is not None
        self.batch.write(chunk)

    # -- commit ------------------------------------------------------------------------------------
    def _commit(self, message: dict[str, Any]) -> None:
        batch = self.batch
        assert batch is not None
        if message["id"] != batch.ident:
            raise ProtocolError("commit for another batch")
        self.batch = None
        try:
            # The supervisor holds its own restarts from before the first rename; a batch that
            # fails closes the channel without a commit, which releases the hold: no restart.
            announcement = Announcement(self.root.path, self.env) if not batch.failed else None
            try:
                outcome = batch.commit()
            except BaseException:
                if announcement is not None:
                    announcement.close()
                raise
            if announcement is not None and not outcome.committed:
                announcement.close()
            for lines in chunks(skips(batch)):
                self.send({"t": "skipped", "id": batch.ident, "items": lines})
            wire = ([f.path, f.error, f.reason] for f in failures(batch))
            for items in chunks(wire):
                self.send({"t": "failed", "id": batch.ident, "items": items})
        finally:
            batch.close()
        self.send({"t": "done", "id": batch.ident, "ok": outcome.committed})
        if announcement is not None and outcome.committed:
            changed = [f"{self.root.path}/{path}" for path in outcome.changed]
            if not self.installer.take(batch.ident, announcement, changed, list(outcome.changed)):
                self._commit_to_supervisor(batch.ident, announcement, changed, {})

    def _commit_to_supervisor(
        self, ident: int, announcement: Announcement, changed: list[str], installed: dict[str, Any]
    ) -> None:
        """Tell the supervisors the batch is in (``installed``: after a dependency install, installs.py),
        and pass on to the laptop what it did to the app (``live``: restarted, crashed at start,
        unchanged...) once they know; from a thread, so the next batch need not wait for the app."""
        if not announcement.socks:
            announcement.close()
            self._say({"t": "live", "id": ident, "what": NO_SUPERVISOR, **installed})
            return
        announcement.commit(changed, fresh=bool(installed), outcome=True)
        args = (ident, announcement, installed)
        threading.Thread(target=self._pass_on, args=args, name="live", daemon=True).start()

    def _pass_on(self, ident: int, announcement: Announcement, installed: dict[str, Any]) -> None:
        said = announcement.outcome()
        self._say({"t": "live", "id": ident, **live_fields(said), **installed})

    def _log(self, stream: str, line: str) -> None:
        self._say({"t": "log", "line": line, "stream": stream})

    def _say(self, message: dict[str, Any]) -> None:
        """A message from another thread than the main loop's: a dead link is the main loop's to find."""
        try:
            self.send(message)
        except OSError:
            pass


def _on_change(value: Any) -> Optional[list[Any]]:
    """``start``'s onChange rules, checked: None, or [[paths...], run or null, timeout] each."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > ON_CHANGE_MAX:
        raise ProtocolError("start: onChange must be a list of rules")
    for rule in value:
        if not (
            isinstance(rule, list)
            and len(rule) == 3
            and isinstance(rule[0], list)
            and rule[0]
            and all(isinstance(path, str) for path in rule[0])
            and (rule[1] is None or (isinstance(rule[1], str) and rule[1].strip()))
            and type(rule[2]) in (int, float)
            and 0 < rule[2] <= ON_CHANGE_TIMEOUT_MAX
        ):
            raise ProtocolError(f"start: malformed onChange rule {str(rule)[:80]}")
    return value


def live_fields(said: Optional[dict[str, object]]) -> dict[str, object]:
    """A supervisor's outcome (control.py, feedback.py) as the fields of a ``live`` message: only the
    known ones, of the right types, so a confused supervisor cannot break the laptop's session."""
    if said is None or said.get("what") not in LIVE_OUTCOMES:
        return {"what": NO_ANSWER}
    fields: dict[str, object] = {"what": said["what"]}
    if _is_time(said.get("ms")) and said["ms"] >= 0:  # type: ignore[operator]
        fields["ms"] = said["ms"]
    if _is_time(said.get("status")):
        fields["status"] = said["status"]
    lines = said.get("lines")
    if isinstance(lines, list):
        fields["lines"] = [line for line in lines if isinstance(line, str)][:LIVE_LINES]
    return fields


def _is_time(value: Any) -> bool:
    return type(value) is int and -INT64 <= value <= INT64


def _process_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (EPERM: it does, as another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# -- the process ------------------------------------------------------------------------------------
class Stdio:
    """The protocol on fds 0 and 1, with the heartbeat (heartbeat.py): pings out when idle, and an
    end when the laptop is silent for the whole window, so a frozen link leaves no agent behind.
    Between the sync's frames it serves forwarded ports' connections (channels.py)."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.window = HEARTBEAT_WINDOW  # until the laptop's first ping says which it uses
        self.outlet = Outlet(1, self.window)
        self.heartbeat = Heartbeat(self.outlet, self.window)
        self.channels = Dialer(self.outlet.offer)
        self.last_heard = time.monotonic()

    def send(self, message: dict[str, Any]) -> None:
        self.outlet.write(encode_message(message))

    def frames(self) -> list[Frame]:
        """The next frames for the sync (blocking); an empty list means the laptop closed the stream.
        Meanwhile the channels' sockets are served and their frames taken."""
        while True:
            if not self._wait():
                if time.monotonic() - self.last_heard >= self.window:
                    raise LaptopSilent(f"agent: heard nothing from the laptop for {self.window:g} s")
                continue
            chunk = os.read(0, READ_CHUNK)
            if not chunk:
                self.reader.finish()
                return []
            self.last_heard = time.monotonic()
            frames = []
            for frame in self.reader.feed(chunk):
                if is_channel_frame(frame):
                    self.channels.take(frame)
                elif not self._ping(frame):
                    frames.append(frame)
            if frames:
                return frames

    def _wait(self) -> bool:
        """Serve sockets until stdin is readable (True), the heartbeat window or a connect retry is due."""
        now = time.monotonic()
        self.channels.tick(now)
        due = [self.last_heard + self.window, self.channels.next_due()]
        timeout = max(0.0, min(d for d in due if d is not None) - now)
        with selectors.DefaultSelector() as selector:
            selector.register(0, selectors.EVENT_READ, None)
            if self.outlet.backlog:
                selector.register(1, selectors.EVENT_WRITE, self.outlet)
            for channel in self.channels:
                if channel.events():
                    selector.register(channel.sock, channel.events(), channel)
            ready = selector.select(timeout)
        stdin = False
        for key, mask in ready:
            if key.data is None:
                stdin = True
            elif isinstance(key.data, Outlet):
                key.data.drain()
            else:
                self.channels.ready(key.data, mask)
        return stdin

    def _ping(self, frame: Frame) -> bool:
        if not isinstance(frame, dict) or frame["t"] != PING:
            return False
        window = frame.get("window")
        if isinstance(window, (int, float)) and MIN_WINDOW <= window <= MAX_WINDOW:
            self.window = self.outlet.window = float(window)
            self.heartbeat.interval = self.window / BEATS_PER_WINDOW
        return True


class LaptopSilent(Exception):
    """Nothing arrived for a whole window: the link is dead, and nobody is listening for an error frame."""


def agent_main(argv: list[str], env: Mapping[str, str]) -> int:
    """``reloadd agent [DIR]``: returns the exit status."""
    if argv[:1] in (["-h"], ["--help"]):
        print(AGENT_HELP)
        return 0
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        raise ConfigError(f"agent: expected at most one directory, got {' '.join(argv)!r}: reloadd agent [DIR]")
    stdio = Stdio()
    try:
        reason = refusal(env)
        if reason is not None:
            stdio.send({"t": "refused", "message": f"refusing to sync: {reason}"})
            _tell_a_person(f"refusing to sync: {reason}")
            return EXIT_REFUSED
        root = Root(check_root(argv[0] if argv else os.getcwd()))
        stdio.send({"t": "hello", "version": PROTOCOL_VERSION, "reloadd": __version__, "root": root.path})
        stdio.heartbeat.start()
        return _serve(Agent(root, env, stdio.send), stdio)
    except BrokenPipeError:
        return 0  # the laptop side went away while we were answering: as good as stdin closing
    except (LaptopSilent, WriteStalled):
        return EXIT_LINK_DEAD  # a dead link: nobody would read an error frame, so none is sent
    except ReloaddError as exc:
        _report(stdio, exc.message)
        return exc.exit_code
    except OSError as exc:  # the pod's file system said no (EACCES, ENOSPC, EROFS): one line, and stop
        where = f" {exc.filename}" if exc.filename else ""
        _report(stdio, f"agent: cannot write in {os.getcwd() if not argv else argv[0]}:{where} {exc.strerror}")
        return EXIT_WRITE_FAILED


def _serve(agent: Agent, stdio: Stdio) -> int:
    try:
        while True:
            frames = stdio.frames()
            if not frames:
                return 0
            for frame in frames:
                agent.handle(frame)
    finally:
        agent.abort()
        agent.installer.stop()
        if agent.logs is not None:
            agent.logs.stop()
        stdio.channels.close_all()


def _report(stdio: Stdio, message: str) -> None:
    try:
        stdio.send({"t": "error", "message": message})
    except OSError:
        pass
    _tell_a_person(message)


def _tell_a_person(message: str) -> None:
    """stderr too when someone runs the agent by hand; the laptop side prints the frame's line itself."""
    if sys.stdout.isatty():
        out.error(message)
