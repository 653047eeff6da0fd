"""The laptop side of ``reloadd sync``: watch LOCAL_DIR, send each burst as one batch to every agent.

At (re)connection the two sides exchange manifests and only the difference moves (files of the
same size with another mtime are compared by hash first). After that, reloadd's own watcher
reports changed files and its burst rule (a save, a checkout, a build is one burst) decides
what makes one batch. For each burst the directories it touched are compared with what was
last sent, which also finds deleted and renamed directories and new directories' contents.

A stream that drops (pod restarted), or goes silent for the heartbeat window (laptop asleep, a
lost VPN, a stopped agent: heartbeat.py), is reported in one line, its transport's process tree
killed, and reconnected at once, then with a growing pause; the resync by manifest sends
whatever changed meanwhile, as one batch. kubectl's failures are said in one line each
(kubectl.py); a pod that refuses (production, see guard.py) is not retried. With ``-l`` the pods
are followed by one long-running watch (pods.py), not by polling.

Every read of LOCAL_DIR goes through local.LocalTree (descriptors, never a path the kernel
resolves again), so nothing outside it is read. Two things halt the sync instead of being
mirrored (mutagen's safety halt): LOCAL_DIR itself going away (deleted, moved, unmounted:
nothing is deleted, and the sync resumes with a resync when a directory is back at its path),
and one change that would delete every file of the tree, or more than half of a tree of
MASS_DELETE_MIN_FILES or more (nothing is sent until the files are back or the user confirms).

Forwarded ports (``-p``, forward.py) listen from the start to the end of the sync; their
connections ride the first connected pod's stream (channels.py), served by the same loop.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import stat
import sys
import termios
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .. import __version__
from ..errors import ReloaddError
from ..host.bursts import Burst
from ..host.watcher import Watcher, WatchReport
from ..output import out, use_colour
from ..setup.cli import CliArgs
from ..setup.forwards import check_loops, parse_forwards
from ..setup.matching import Rules, is_temp_file
from ..setup.production import EXIT_REFUSED
from ..setup.settings import Settings
from ..setup.sources import load_settings
from . import listing
from .excludes import check_include, excluder, sync_globs
from .forward import Forwarder, Listener
from .gitignore import GITIGNORE, IGNORE_FILE_MAX, GitIgnore
from .gitignore import load as load_gitignore
from .heartbeat import window_from
from .kubectl import (
    EXIT_FAILED,
    EXIT_FORBIDDEN,
    EXIT_NO_CLUSTER,
    EXIT_NOT_FOUND,
    EXIT_VERSION,
    Failure,
    explain,
    require_kubectl,
)
from .live import Live, Sent
from .local import LocalTree, NotSynced
from .manifest import DIR, LINK, Entry, Exclude, Manifest, diff, escaped, is_utf8, topmost
from .options import Destination, SyncOptions, destination_where, with_config
from .pods import PodEvent, PodWatch
from .protocol import DATA_CHUNK, PROTOCOL_VERSION, chunks
from .session import Disconnected, Ready, Session
from .transport import Where, check_engine, exec_argv, same_host

_NOT_PLAIN = re.compile(r"(?:^|/)\.{0,2}(?:/|$)")  # an empty, "." or ".." component: relpath normalises it
HELLO_TIMEOUT = 60.0  # seconds for the transport to start the agent (kubectl may pull credentials first)
REPLY_TIMEOUT = 120.0  # seconds for an answer to a manifest, hash or commit request (pings keep a slow one alive)
RECONNECT_STEP = 0.5  # the first reconnection is at once; then this many seconds, doubled after each failure...
RECONNECT_MAX = 4.0  # ...up to this: a laptop waking from sleep is back within seconds
PROGRESS_INTERVAL = 0.2  # seconds between progress-line updates on a terminal
ROOT_CHECK_INTERVAL = 1.0  # seconds between looks (one stat) at LOCAL_DIR itself: an unmount sends no event
EXIT_AGENT_FAILED = EXIT_FAILED  # the agent could not be started (kubectl.py names the common reasons)
GIVE_UP = (EXIT_FORBIDDEN, EXIT_NO_CLUSTER, EXIT_VERSION)  # with -l: the same for every pod, so the sync ends
FIRST_BATCH_FILES = 2000  # the first sync commits every this many files (or bytes, below), so a drop
FIRST_BATCH_BYTES = 64 * 1024 * 1024  # keeps what is in and the reconnect sends only the rest
LINES_SHOWN = 20  # failed paths or pod warnings printed one per line; the rest are counted
HINTS = {  # what usually causes each error in a pod, after the system's own words
    "EBUSY": " (a mounted file?)",
    "EXDEV": " (a mount point?)",
    "EROFS": " (a read-only mount)",
    "ENOSPC": " (the pod's disk is full)",
    "EDQUOT": " (the pod's disk quota is used up)",
    "EACCES": " (the agent's user may not write there)",
    "EPERM": " (the agent's user may not write there)",
}
MS = 1000.0
# A change halts when it would leave the tree without files, or with less than half of them
# when it had at least this many (a small project losing half its files is a normal edit).
MASS_DELETE_MIN_FILES = 10
CONFIRM = {b"y", b"yes"}  # typed (then Enter) on the terminal: go ahead with a halted mass delete
ROOT_OK, ROOT_GONE, ROOT_REPLACED = "ok", "gone", "replaced"


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def human_duration(ms: int) -> str:
    """``41 ms`` for a quick batch; seconds from one second up, where a count of ms reads badly (8.1 s)."""
    return f"{ms} ms" if ms < MS else f"{ms / MS:.1f} s"


class NotStarted(Exception):
    """The agent did not say hello: kubectl (or the transport) failed; ``failure`` says how."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def backoff(failures: int) -> float:
    """Seconds before reconnection attempt number ``failures + 1``: at once, then 0.5, 1, 2, 4, 4..."""
    return 0.0 if failures == 0 else min(RECONNECT_MAX, RECONNECT_STEP * 2 ** (failures - 1))


@dataclass
class Link:
    """A pod the laptop syncs to and its connection state."""

    session: Session
    ready: bool = False
    refused: bool = False
    retry_at: Optional[float] = None
    failures: int = 0
    said: Optional[str] = None  # the line said for the current outage: a retry failing the same way says nothing
    followed: bool = False  # found by -l: its pod going away ends it quietly
    greeted: bool = False  # the agent started once: from then on a drop reconnects, never exits


class SyncRules(Rules):
    """What the watcher reports: every file under the root that the sync does not exclude (dotfiles too)."""

    skipped = "not synced:"

    def __init__(self, root: Path, exclude: Exclude) -> None:
        super().__init__(Settings(watch=[str(root)], ignore_root=[]), root, None, ["*"])
        self._root = str(root)
        self._prefix = self._root.rstrip("/") + "/"
        self._exclude_rule = exclude

    def _relative(self, path: str) -> Optional[str]:
        # The watcher's paths are the root joined with plain names: cut the prefix (relpath costs
        # ~7 us a call, and the watcher's start asks once per directory of the tree).
        if path.startswith(self._prefix):
            relative = path[len(self._prefix) :]
            if not _NOT_PLAIN.search(relative):
                return relative
        relative = os.path.relpath(path, self._root)
        return None if relative == "." or relative.startswith("../") else relative

    def matches(self, path: str) -> bool:
        return self.skip_reason(path) is None

    def prune(self, dir_path: str) -> bool:
        relative = self._relative(dir_path)
        return relative is not None and self._exclude_rule(relative, True)

    def skip_reason(self, path: str) -> Optional[str]:
        """Why a changed path is left out (-V says it); None when it is synced."""
        relative = self._relative(path)
        if relative is None:
            return "outside the synced directory"
        if is_temp_file(os.path.basename(path)):
            return "an editor or sync temp file"
        if self._exclude_rule(relative, os.path.isdir(path) and not os.path.islink(path)):
            return "excluded (a protected name, ignoreRoot, sync.exclude, --exclude or git's ignore rules)"
        return None


class Progress:
    """The initial sync's progress line, redrawn in place on a terminal (nothing elsewhere)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self.files = 0
        self.bytes = 0
        self.started = time.monotonic()
        self.shown = 0.0

    def add(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        now = time.monotonic()
        if self.enabled and now - self.shown >= PROGRESS_INTERVAL:
            self.shown = now
            rate = self.bytes / max(now - self.started, 1e-3)
            line = f"syncing {self.files}/{self.total} files, {human_size(self.bytes)} ({human_size(int(rate))}/s)"
            sys.stderr.write(f"\r[reloadd] {line}\033[K")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class Syncer:
    def __init__(
        self,
        options: SyncOptions,
        settings: Settings,
        root: Path,
        base_globs: list[str],
        env: Mapping[str, str],
        first: Optional[Session] = None,
    ) -> None:
        self.options = options
        assert options.where is not None  # _destination resolved it
        self.where: Where = options.where
        self.first = first  # the single target's session, started before the config was even read
        self.settings = settings
        self.root = root
        self.env = dict(env)
        self.tree = LocalTree(str(root))
        self.globs = base_globs  # protected names, ignoreRoot, sync.exclude, --exclude: what the agent leaves out
        self.unknown: set[str] = set()  # paths skipped (unreadable, odd...): neither sent nor deleted
        self.rules_exclude: Exclude = excluder(str(root), self.globs)
        self.gitignore: Optional[GitIgnore] = None
        self.without_gitignore: set[str] = set()  # directories the running walk listed without one
        self._load_rules()
        self.delete = options.delete if options.delete is not None else settings.sync.delete
        self.root_halted: Optional[str] = None  # why LOCAL_DIR is gone, while the sync waits for it
        self.held: Optional[set[str]] = None  # the changed paths of a halted mass delete
        self.confirmed = False  # the user typed y: send the held mass delete
        self.links: dict[str, Link] = {}
        self.known: Manifest = {}  # the tree as last sent: what the pods hold
        self.batch_id = 0
        self.group = Burst()  # the supervisor's own burst rules: a save or a checkout is one batch
        self.incoming: list[WatchReport] = []
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.watcher: Optional[Watcher] = None
        self.pods: Optional[PodWatch] = None  # -l: the `kubectl get pods -w` process
        self.pods_retry_at: Optional[float] = None
        self.pods_failures = 0
        self.pods_said: Optional[str] = None
        self.warned: set[str] = set()  # warnings already given (each is said once)
        self.not_written: set[str] = set()  # paths the pod could not write in the last batch
        self.pod_warnings = 0  # the agent's warnings in this (re)connection: the first ones are shown
        self.began = time.monotonic() - process_age()  # the first "in sync" counts from the command's start
        self.live = Live()  # batches sent, until each pod says what they did to the app
        forwards = options.forwards or parse_forwards(settings.sync.ports, "sync.ports")  # -p wins over the config
        check_loops(forwards, same_host(self.where), "sync: -p" if options.forwards else "sync.ports")
        self.forwarder = Forwarder(forwards)
        if first is not None:
            first.adopt = self.forwarder.adopt

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        if self.where.transport is None:
            require_kubectl()
        try:
            self._listen()  # first: a port in use is one line, before any other
            self._start_watcher()
            status = self._first_connections()
            if status is not None:
                return status
            while True:
                self._wait()
                self._check_root()
                self._handle_changes()
                self._reconnect_due()
                self._watch_pods_due()
                self._show_live()
                self.forwarder.hand_over(self._forward_target(), time.monotonic())
        except KeyboardInterrupt:
            out.info("stopped")
            return 0
        finally:
            if self.watcher is not None:
                self.watcher.stop()
            if self.pods is not None:
                self.pods.stop()
            for link in self.links.values():
                link.session.close()
            self.forwarder.close()
            self.tree.close()

    def _listen(self) -> None:
        """Forwarded ports listen from the start to the end, whatever happens to the pods in between."""
        self.forwarder.listen()
        for forward in self.forwarder.forwards:
            out.info(f"forwarding 127.0.0.1:{forward.local} to port {forward.remote} in the pod")

    def _forward_target(self) -> Optional[Session]:
        """The session that carries new forwarded connections: the first pod connected."""
        return next((link.session for link in self.links.values() if link.ready), None)

    def _start_watcher(self) -> None:
        rules = SyncRules(self.root, self._excluded)  # not the skipped paths: an unreadable one may become readable
        self.watcher = Watcher(
            rules, self.settings.legacy_watch, self.settings.polling_interval, self._report, report_dirs=True
        )
        self.watcher.start()

    def _load_rules(self) -> None:
        """git's rules read afresh (the .gitignore files are read through the tree's descriptors)."""
        self.gitignore = load_gitignore(self.root, self._read_gitignore, self.env)

    def _read_gitignore(self, directory: str) -> Optional[bytes]:
        if directory in self.without_gitignore:  # just listed: no need to open its path to find none
            return None
        return self.tree.read_small(f"{directory}/{GITIGNORE}" if directory else GITIGNORE, IGNORE_FILE_MAX)

    def _scan(self, directory: str) -> Manifest:
        """The tree below ``directory``; git's rules are read from the directories the walk lists."""
        try:
            return self.tree.scan(directory, self._excluded, self._skipped, self._listed)
        finally:
            self.without_gitignore = set()  # a later read (a .gitignore just made) looks at the tree

    def _listed(self, directory: str, names: set[str]) -> None:
        if GITIGNORE not in names:
            self.without_gitignore.add(directory)

    def exclude(self, path: str, is_dir: bool) -> bool:
        """Left out of the sync (never sent, never deleted): the globs, git's rules, or skipped as unreadable."""
        return self._excluded(path, is_dir) or self._unknown(path)

    def _excluded(self, path: str, is_dir: bool) -> bool:
        if self.rules_exclude(path, is_dir):
            return True
        return self.gitignore is not None and self.gitignore.ignored(path, is_dir)

    def _unknown(self, path: str) -> bool:
        if not self.unknown:
            return False
        parts = path.split("/")
        return any("/".join(parts[:count]) in self.unknown for count in range(1, len(parts) + 1))

    def _skipped(self, problem: NotSynced) -> None:
        """A path the walk cannot sync: said once, then left as it is in the pod."""
        self.unknown.add(problem.path)
        if problem.message not in self.warned:
            self.warned.add(problem.message)
            out.warn(problem.message)

    def _gitignore_changed(self) -> None:
        """A .gitignore changed: new excludes for the watcher and both sides, then a resync by manifest."""
        self._restart()

    def _restart(self, tree: Optional[LocalTree] = None) -> None:
        """Rules read again (and LOCAL_DIR's new descriptor taken when it was replaced), watched again, resynced."""
        if self.watcher is not None:
            self.watcher.stop()
        if tree is not None:
            self.tree.close()
            self.tree = tree
        self._load_rules()
        self.group = Burst()
        self.incoming.clear()
        self.held, self.confirmed = None, False
        self._start_watcher()
        for link in list(self.links.values()):
            if link.ready:
                try:
                    self._resync(link)
                except Disconnected as exc:
                    self._lost(link, str(exc))

    def _first_connections(self) -> Optional[int]:
        where = self.where
        if where.selector is not None:
            self.pods = PodWatch(where)
            self.pods.start()
            return None
        name = where.target or where.remote_dir or str(where.transport)
        if self.first is not None:  # started before the config was read
            link = self.links[name] = Link(self.first)
        else:
            link = self._link(name, where.target)
        try:
            self._connect(link, self.began, spawned=self.first is not None)
        except NotStarted as exc:
            if not exc.failure.transient:
                raise ReloaddError(exc.failure.message, exc.failure.exit_code) from None
            self._retry(link, exc.failure.message)
        except Disconnected as exc:
            if not link.greeted:
                raise ReloaddError(f"{name}: could not start the sync: {exc}", EXIT_AGENT_FAILED) from None
            self._lost(link, str(exc))  # dropped during the first sync: what is committed stays
        return EXIT_REFUSED if link.refused else None

    def _link(self, name: str, target: Optional[str], followed: bool = False) -> Link:
        link = Link(Session(name, exec_argv(self.where, target), self.options.heartbeat), followed=followed)
        link.session.adopt = self.forwarder.adopt
        self.links[name] = link
        return link

    def _wait(self) -> None:
        """Sleep until something happens: a change, an agent speaking, the pod watch, a retry, a
        heartbeat deadline or the root check is due. Nothing else wakes the loop."""
        now = time.monotonic()
        deadlines = [now + ROOT_CHECK_INTERVAL, self.pods_retry_at] + [link.retry_at for link in self.links.values()]
        deadlines += [link.session.last_heard + link.session.window for link in self.links.values() if link.ready]
        deadlines.append(self.forwarder.next_due())
        wait = self.group.wait_time(now)
        if wait is not None:
            deadlines.append(now + wait)
        due = [d for d in deadlines if d is not None]
        timeout = max(0.0, min(due) - now) if due else None
        with selectors.DefaultSelector() as selector:
            selector.register(self.wake_r, selectors.EVENT_READ, None)
            if self.held is not None and sys.stdin.isatty():
                selector.register(sys.stdin.fileno(), selectors.EVENT_READ, self._typed)
            for link in self.links.values():
                if link.ready:
                    selector.register(link.session.fd, selectors.EVENT_READ, link)
                    link.session.watch(selector)
            for listener in self.forwarder.listeners:
                selector.register(listener.sock, selectors.EVENT_READ, listener)
            if self.pods is not None and self.pods.fd is not None:
                selector.register(self.pods.fd, selectors.EVENT_READ, self.pods)
            for key, mask in selector.select(timeout):
                self._ready(key.data, mask)
        self._silent_links()

    def _show_live(self) -> None:
        """One line per pod for each batch, once its pod says what the batch did to the app (live.py)."""
        for link in self.links.values():
            session = link.session
            notices, session.notices = session.notices, []
            for message in notices:
                if message["t"] == "output":
                    out.info(f"{self._where(session)} | {message['line']}", event="output")
                elif message["t"] == "log":
                    show_log(self._where(session), message["stream"], message["line"])
                else:
                    self.live.heard(session.name, self._where(session), message, session.root)

    def _ready(self, what: object, mask: int) -> None:
        """One thing ``_wait`` waited for happened (``what``: what it was registered with)."""
        if what is None:
            os.read(self.wake_r, 4096)
        elif what == self._typed:
            self._typed()
        elif isinstance(what, PodWatch):
            self._pod_events()
        elif isinstance(what, Listener):
            self.forwarder.accept(what, self._forward_target())
        elif isinstance(what, Ready):
            what.session.serve(what, mask)
        elif isinstance(what, Link):
            self._unasked(what)

    def _silent_links(self) -> None:
        now = time.monotonic()
        for link in list(self.links.values()):
            if link.ready and link.session.silent_for(now) >= link.session.window:
                self._lost(link, f"no answer for {link.session.window:g} s")

    def _unasked(self, link: Link) -> None:
        """The agent spoke while idle: forwarded ports' frames (the session hands them to its channels),
        or it stops (or its stream ends)."""
        try:
            link.session.read_ready(0)
            while link.session.queued:
                link.session.receive(0)
        except Disconnected as exc:
            self._lost(link, str(exc))

    def _report(self, report: WatchReport) -> None:
        """Called in the watcher thread: record and wake the loop."""
        self.incoming.append(report)
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass

    # -- connecting ----------------------------------------------------------------------------------
    def _connect(self, link: Link, began: Optional[float] = None, spawned: bool = False) -> None:
        """Start the agent (unless ``spawned``) and resync; NotStarted when it never said hello, Disconnected
        after. ``began`` is when the user started waiting (the closing line counts from it)."""
        timer = Phases(began)
        timer.mark("start")  # this process's start (the first time), its config and its watcher
        session = link.session
        if not spawned:
            session.start()
        # The agent gets the excludes before it has even said hello, so it walks the pod's tree
        # while this side walks its own: a start costs the longer walk, not the sum of both.
        asked = self._ask_start(session)
        if asked:
            session.beat()  # pings through this side's walk: the agent must not count the laptop as silent
        local = self._local_manifest()
        timer.mark("walk")
        try:
            hello = session.receive(HELLO_TIMEOUT)
        except Disconnected as exc:
            raise NotStarted(self._why_not_started(link, str(exc))) from None
        if hello["t"] == "refused":
            out.error(f"{session.name}: {hello.get('message')}")
            link.refused = True
            session.close()
            return
        if hello["t"] != "hello" or hello.get("version") != PROTOCOL_VERSION:
            session.close(dead=True)
            raise NotStarted(version_mismatch(session.name, hello))
        if not asked:
            raise Disconnected("the agent stopped reading before the sync began")
        link.greeted = True
        session.root = str(hello.get("root", ""))
        self._resync(link, local, timer)
        link.ready, link.retry_at, link.failures = True, None, 0
        if link.said is not None:
            out.info(f"reconnected to {session.name}")
            link.said = None

    def _why_not_started(self, link: Link, why: str) -> Failure:
        """kubectl's failure in one line of ours; its own last lines only with -V, once per outage."""
        session = link.session
        status = session.exit_status(wait=1.0)
        tail = session.stderr_tail()
        session.close(dead=True)
        if self.where.transport is None:
            failure = explain(session.name, status, tail, self.where, why)
        else:
            said = f"; it said: {tail[-1]}" if tail else ""
            failure = Failure(f"{session.name}: could not start the sync: {why}{said}", EXIT_AGENT_FAILED)
        if failure.message != link.said:
            for line in tail:
                out.detail(f"  {session.argv[0]}: {line}")
        return failure

    def _start_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"t": "start", "exclude": self.globs}
        if self.options.logs or (self.options.logs is None and self.settings.sync.logs):
            message["logs"] = True
        rules = self.settings.sync.on_change
        if rules is not None:  # else the pod's default: the project's package.json and lockfiles
            message["onChange"] = [[rule.paths, rule.run, rule.timeout] for rule in rules]
        return message

    def _ask_start(self, session: Session) -> bool:
        """Send ``start`` (the excludes); False if the agent already stopped (its first frame says why)."""
        try:
            session.send(self._start_message())
            session.flush()
        except Disconnected:
            return False
        return True

    def _resync(self, link: Link, local: Optional[Manifest] = None, timer: Optional[Phases] = None) -> None:
        """Compare by directory digests (listing.py), fetch the listings that differ, send the difference."""
        session = link.session
        self.pod_warnings = 0
        if local is None or timer is None:  # a connected link (a .gitignore changed): ask, then walk alongside
            timer = Phases(None)
            self._ask_start(session)
            local = self._local_manifest()
            timer.mark("walk")
        groups = listing.group(local.values())
        mine = listing.digests(groups)
        theirs = self._remote_digests(session)
        timer.mark("pod's walk")
        asked = listing.to_ask(mine, theirs)
        remote = self._listings(session, asked)
        compared = {entry.path: entry for d in listing.differing(mine, theirs) for entry in groups[d]}
        result = diff(compared, remote, self.delete)
        if result.delete and not self.options.allow_mass_delete:
            # Whether the deletes remove too much is judged on the pod's whole tree: only now, with
            # something to delete, are the listings that the digests made unnecessary fetched too.
            remote.update(self._listings(session, sorted(set(theirs) - set(asked))))
        result.delete = self._resync_deletes(local, remote, result.delete)
        session.send({"t": "compared"})  # the agent may drop its walk now (it is not answered)
        timer.mark("compare")
        differing = self._differing(session, result.compare)
        self._stamp(session, local, sorted(set(result.compare) - set(differing)))
        sends = result.send + differing
        timer.mark("hash")
        entries = [local[path] for path in sorted(sends)]
        progress = Progress(sys.stderr.isatty() and not out.json_lines, sum(e.kind != DIR for e in entries))
        sent, deletes = 0, result.delete
        for group in _groups(entries):  # committed one by one: a drop keeps what is in
            sent += self._send_batch(session, group, deletes, progress, timer.began)
            deletes = []
        if not entries:
            sent += self._send_batch(session, [], deletes, progress, timer.began)
        progress.done()
        timer.mark("send")
        self.known = local
        files = sum(1 for entry in local.values() if entry.kind != DIR)  # links count as files, as in "synced"
        self._say_start(session, entries, result.delete, sent, files, timer)

    def _listings(self, session: Session, directories: list[str]) -> Manifest:
        """The pod's entries in ``directories``, asked for in chunks."""
        remote: Manifest = {}
        for chunk in chunks(directories):
            session.send({"t": "list", "dirs": chunk})
            remote.update(self._remote_manifest(session))
        return remote

    def _remote_digests(self, session: Session) -> dict[str, str]:
        """The pod's directory digests, chunk by chunk (the agent's warnings come first, from its walk)."""
        theirs: dict[str, str] = {}
        for message in self._replies(session, "dirs", "start"):
            try:
                theirs.update(listing.parse_digests(message["items"]))
            except ValueError as exc:
                raise Disconnected(f"bad data from the agent: {exc}") from None
        return theirs

    def _replies(self, session: Session, kind: str, asked: str) -> Iterator[dict[str, Any]]:
        """The chunks of one streamed answer, up to its ``KIND-end`` message; anything else is a broken link."""
        while True:
            message = self._receive_shown(session)
            if message["t"] == f"{kind}-end":
                return
            if message["t"] != kind:
                raise Disconnected(f"unexpected answer to {asked}: {message['t']}")
            yield message

    def _receive_shown(self, session: Session) -> dict[str, Any]:
        """The next message that is not a warning; the first warnings are shown, the rest counted."""
        while True:
            message = session.receive(REPLY_TIMEOUT)
            if message["t"] != "warn":
                return message
            self.pod_warnings += 1
            if self.pod_warnings <= LINES_SHOWN:
                out.warn(f"{session.name}: {message['message']}")
            elif self.pod_warnings == LINES_SHOWN + 1:
                out.warn(f"{session.name}: more warnings like these are not shown")

    def _remote_manifest(self, session: Session) -> Manifest:
        """The entries of the directories asked for, chunk by chunk."""
        remote: Manifest = {}
        for message in self._replies(session, "manifest", "a list request"):
            for item in message["entries"]:
                entry = Entry.from_wire(item)
                if entry is None:
                    raise Disconnected(f"bad data from the agent: malformed manifest entry {str(item)[:80]}")
                if not self.exclude(entry.path, entry.kind == DIR):
                    remote[entry.path] = entry
        return remote

    def _differing(self, session: Session, paths: list[str]) -> list[str]:
        """Of the files whose size agrees but mtime does not, those whose content differs (or cannot be read
        on one side: never counted as in sync). Asked in chunks, so no request or reply grows with the tree."""
        differing = []
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for chunk in chunks(paths):
                session.send({"t": "hash", "paths": chunk})
                reply = session.receive(REPLY_TIMEOUT)
                if reply["t"] != "hashes":
                    raise Disconnected(f"unexpected answer to a hash request: {reply['t']}")
                theirs = reply["hashes"]
                for path in chunk:
                    mine = _local_hash(fd, path)  # "": cannot be read here
                    if not mine or theirs.get(path) is None or mine != theirs[path]:
                        differing.append(path)
        finally:
            os.close(fd)
        return differing

    def _stamp(self, session: Session, local: Manifest, same: list[str]) -> None:
        """Files with the same content but another mtime take the laptop's (the agent does not answer)."""
        for items in chunks([path, local[path].mtime_ns] for path in same):
            session.send({"t": "stamp", "items": items})
        if same:
            session.flush()  # no answer to wait for, which is what flushes otherwise
            out.detail(f"  {len(same)} file(s) with the same content: the pod takes their mtimes")

    def _local_manifest(self) -> Manifest:
        """The whole tree, walked through descriptors; what cannot be synced is named and left unknown."""
        self.unknown = set()
        found = self._scan("")
        return {path: entry for path, entry in found.items() if self._portable(entry)}

    def _portable(self, entry: Entry) -> bool:
        """Symlinks go across only when they resolve inside the tree (by the real tree); others are skipped."""
        if entry.kind != LINK:
            return True
        try:
            self.tree.check_link(entry.path, entry.target)
            return True
        except NotSynced as exc:
            self._skipped(exc)
            return False

    def _lost(self, link: Link, why: str) -> None:
        """A link that was in sync died: kill its transport tree, say so once, reconnect at once."""
        link.ready = False
        self.live.forget(link.session.name)
        link.session.close(dead=True)
        for line in link.session.stderr_tail():
            out.detail(f"  {link.session.argv[0]}: {line}")
        message = f"{link.session.name}: {why}"
        if link.followed and "no answer" not in why:
            out.detail(f"{message} — reconnecting")  # a pod going away: its watch event says so
        else:
            out.warn(f"{message} — reconnecting")
        link.said = message
        link.failures = 0
        link.retry_at = time.monotonic()

    def _retry(self, link: Link, message: str) -> None:
        """A (re)connection failed: try again after a growing pause; say it only if the reason changed."""
        link.session.close(dead=True)
        if message != link.said:
            out.warn(f"{message} — retrying")
            link.said = message
        link.retry_at = time.monotonic() + backoff(link.failures)
        link.failures += 1

    def _reconnect_due(self) -> None:
        now = time.monotonic()
        for link in list(self.links.values()):
            if link.retry_at is None or now < link.retry_at or link.refused:
                continue
            link.retry_at = None
            try:
                self._connect(link)
            except NotStarted as exc:
                self._not_started(link, exc.failure)
            except Disconnected as exc:
                self._retry(link, f"{link.session.name}: {exc}")

    def _not_started(self, link: Link, failure: Failure) -> None:
        """A pod of -l that cannot take the agent: gone pods end quietly, broken ones are said once and left."""
        if not link.followed or failure.transient:
            self._retry(link, failure.message)
        elif failure.exit_code in GIVE_UP:
            raise ReloaddError(failure.message, failure.exit_code)
        elif failure.exit_code == EXIT_NOT_FOUND and "pod " in failure.message.split(":")[0]:
            self._gone(link.session.name)
        else:
            out.error(f"{failure.message}; not syncing to it")
            link.refused = True

    # -- following the pods of a selector -----------------------------------------------------------
    def _pod_events(self) -> None:
        assert self.pods is not None
        events = self.pods.read()
        if events is None:
            self._pod_watch_ended()
            return
        self.pods_failures, self.pods_said = 0, None
        for event in events:
            self._pod_event(event)

    def _pod_event(self, event: PodEvent) -> None:
        link = self.links.get(event.name)
        if event.wanted and link is None:
            link = self._link(event.name, event.name, followed=True)
            try:
                self._connect(link)
            except NotStarted as exc:
                self._not_started(link, exc.failure)
            except Disconnected as exc:
                self._retry(link, f"{event.name}: {exc}")
        elif not event.wanted and link is not None:
            self._gone(event.name)

    def _gone(self, name: str) -> None:
        link = self.links.pop(name, None)
        if link is not None:
            out.info(f"{name} is gone: no longer syncing to it")
            link.session.close(dead=True)

    def _pod_watch_ended(self) -> None:
        """kubectl's watch ended: the API server closed it (start another) or kubectl failed."""
        assert self.pods is not None
        status, tail = self.pods.status(), self.pods.stderr_tail()
        self.pods.stop()
        for line in tail:
            out.detail(f"  kubectl: {line}")
        selector = self.where.selector
        failure = explain(f"pods -l {selector}", status, tail, self.where)
        if status != 0 and not failure.transient:
            raise ReloaddError(failure.message, failure.exit_code)
        if status != 0 and failure.message != self.pods_said:
            out.warn(f"{failure.message} — retrying")
            self.pods_said = failure.message
        self.pods_retry_at = time.monotonic() + backoff(self.pods_failures)
        self.pods_failures += 1

    def _watch_pods_due(self) -> None:
        if self.pods is None or self.pods_retry_at is None or time.monotonic() < self.pods_retry_at:
            return
        self.pods_retry_at = None
        self.pods.start()

    # -- halts -----------------------------------------------------------------------------------------
    def _root_state(self) -> tuple[str, str]:
        """Is LOCAL_DIR still the directory the sync opened? (state, what happened, in words)"""
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            return ROOT_GONE, "is gone (deleted or moved away)"
        except OSError as exc:
            return ROOT_GONE, f"cannot be read ({exc.strerror})"
        if not stat.S_ISDIR(st.st_mode):
            return ROOT_GONE, "is no longer a directory"
        if (st.st_dev, st.st_ino) != self.tree.identity:
            return ROOT_REPLACED, "was replaced by another directory (moved away and made again, or a mount changed)"
        return ROOT_OK, ""

    def _check_root(self) -> None:
        """Halt while LOCAL_DIR is gone; when a directory is back at its path, open it and resync."""
        state, words = self._root_state()
        tree = None
        if state == ROOT_REPLACED:
            try:
                tree = LocalTree(str(self.root))
            except OSError as exc:
                state, words = ROOT_GONE, f"cannot be opened ({exc.strerror})"
        if state == ROOT_GONE:
            if self.root_halted is None:
                self.root_halted = words
                out.error(
                    f"halted: {self.root} {words}; nothing is deleted in the pod. "
                    "Waiting for the directory to come back (or stop with Ctrl-C)"
                )
                if self.watcher is not None:
                    self.watcher.stop()
                    self.watcher = None
            return
        if state == ROOT_OK and self.root_halted is None:
            return
        if self.root_halted is not None:
            out.info(f"{self.root} is back: resyncing")
        else:
            out.warn(f"{self.root} {words}: watching the new one and resyncing")
        self.root_halted = None
        self._restart(tree)

    def _mass_delete(self, before: Manifest, sends: list[Entry], deletes: list[str]) -> Optional[tuple[int, int]]:
        return None if self.options.allow_mass_delete else mass_delete(before, sends, deletes)

    def _halts(self, paths: set[str], sends: list[Entry], deletes: list[str]) -> bool:
        """Hold a change that deletes too much until the files are back or the user confirms."""
        mass = None if self.confirmed else self._mass_delete(self.known, sends, deletes)
        if mass is None:
            if self.held is not None:
                out.info("resuming: " + ("going ahead as confirmed" if self.confirmed else "the files are back"))
            self.held, self.confirmed = None, False
            return False
        if self.held is None:
            removed, total = mass
            key = "type y and Enter to delete them in the pod, or " if sys.stdin.isatty() else ""
            _drop_typed_ahead()  # only an answer typed after the question may confirm it
            out.error(
                f"halted: this change would delete {removed} of the {total} files the pod has from {self.root} "
                f"(all of them, or more than half of {MASS_DELETE_MIN_FILES} or more); nothing was sent. "
                f"Put the files back to resume; {key}start the sync with --allow-mass-delete"
            )
        self.held = paths
        return True

    def _resync_deletes(self, local: Manifest, remote: Manifest, deletes: list[str]) -> list[str]:
        """A resync's deletes of pod-only files (--delete), unless they remove too much of the pod's tree."""
        mass = self._mass_delete(remote, list(local.values()), deletes)
        if mass is None:
            return deletes
        out.error(
            f"not deleting {mass[0]} of the pod's {mass[1]} files that {self.root} does not have: all of them, "
            f"or more than half of {MASS_DELETE_MIN_FILES} or more (--allow-mass-delete deletes them)"
        )
        return [path for path in deletes if path in local]

    def _typed(self) -> None:
        """A line from the terminal while a mass delete is held: y (or yes) sends it."""
        try:
            line = os.read(sys.stdin.fileno(), 4096)
        except OSError:
            return
        if line.strip().lower() in CONFIRM:
            self.confirmed = True
        else:
            out.info("still halted: nothing is deleted in the pod until the files are back, or y and Enter")

    # -- live changes --------------------------------------------------------------------------------
    def _handle_changes(self) -> None:
        now = time.monotonic()
        while self.incoming:
            report = self.incoming.pop(0)
            self.group.add(set(report.paths), now, report.busy, report.settle)
        if self.group.ready(now):
            changed, began = self.group.take()
            paths = set(changed)
        elif self.held is not None and self.confirmed:
            paths, began = set(), now
        else:
            return
        if self.root_halted is not None or self._root_state()[0] != ROOT_OK:
            return  # LOCAL_DIR went away: _check_root halts (or reopens) and resyncs, nothing is mirrored
        paths |= self.held or set()
        gitignore = any(os.path.basename(path) == GITIGNORE for path in paths)
        if gitignore:
            self._load_rules()  # the burst is judged by the new rules: a file it now ignores is not sent
        sends, deletes = self._changes(paths)
        if self._halts(paths, sends, deletes):
            return
        if sends or deletes:
            self._send_to_ready(sends, deletes, began)
        if gitignore:  # the burst itself is in (its deletes too, which a resync without --delete keeps)
            self._gitignore_changed()

    def _send_to_ready(self, sends: list[Entry], deletes: list[str], began: float) -> None:
        """One burst's batch to every connected pod (one that is not resyncs by manifest when it is back)."""
        for link in list(self.links.values()):
            if not link.ready:
                continue
            started = time.monotonic()
            try:
                size = self._send_batch(link.session, sends, deletes, None, began)
            except Disconnected as exc:
                self._lost(link, str(exc))
                continue
            self._say(link.session, sends, deletes, size, started, "synced")
        self._remember(sends, deletes)

    def _changes(self, paths: set[str]) -> tuple[list[Entry], list[str]]:
        """What to send and delete for one burst, against what was last sent."""
        current: dict[str, Optional[Entry]] = {}
        relatives = {os.path.relpath(path, self.root) for path in paths}
        relatives = {r for r in relatives if r != "." and not r.startswith("../") and self._utf8(r)}
        children = defaultdict(set)
        for path in self.known:
            parent, _, name = path.rpartition("/")
            children[parent].add(name)
        for relative in relatives:
            entry = current[relative] = self._local_entry(relative)
            if entry is not None and entry.kind == DIR and relative not in self.known:
                current.update(self._subtree(relative))  # a new directory: what it already holds
        for directory in self._touched_dirs(relatives):
            self._compare_dir(directory, children, current)
        sends: list[Entry] = []
        deletes = []
        for path, entry in sorted(current.items()):
            old = self.known.get(path)
            if entry is None and self._unknown(path):
                continue  # skipped (unreadable, a link now...): left as it is in the pod
            if entry is None:
                if old is not None:
                    deletes.append(path)
            elif old is None or old != entry:
                if old is not None and old.kind != entry.kind:
                    deletes.append(path)
                sends.append(entry)
        return sends, topmost(deletes)

    def _touched_dirs(self, relatives: set[str]) -> set[str]:
        """The parents of changed paths; a parent the pods do not have yet (a directory renamed or
        created) makes its own parent touched too, so the old name is deleted and the new one made."""
        touched = set()
        for relative in relatives:
            directory = relative.rpartition("/")[0]
            touched.add(directory)
            while directory and directory not in self.known:
                directory = directory.rpartition("/")[0]
                touched.add(directory)
        return touched

    def _compare_dir(
        self, directory: str, children: Mapping[str, set[str]], current: dict[str, Optional[Entry]]
    ) -> None:
        """List one touched directory: new entries (new directories with their contents), gone entries."""
        while True:
            try:
                names = self.tree.names(directory)
                break
            except NotSynced as exc:  # a component is a symlink now, or cannot be read: nothing below is touched
                self._skipped(exc)
                return
            except OSError:
                if not directory:
                    return  # LOCAL_DIR itself: _check_root halts
                current[directory] = None  # removed (or replaced): the highest missing directory goes
                directory = directory.rpartition("/")[0]
        prefix = f"{directory}/" if directory else ""
        names = {name for name in names if self._utf8(prefix + name)}
        for name in names - children.get(directory, set()):
            entry = self._local_entry(prefix + name)
            if entry is not None and prefix + name not in current:
                current[prefix + name] = entry
                if entry.kind == DIR:
                    current.update(self._subtree(prefix + name))
        for name in children.get(directory, set()) - names:
            current[prefix + name] = None

    def _subtree(self, directory: str) -> dict[str, Optional[Entry]]:
        found = self._scan(directory)
        return {path: entry for path, entry in found.items() if self._portable(entry)}

    def _local_entry(self, relative: str) -> Optional[Entry]:
        """The entry at ``relative`` now; None when it is gone, excluded, or skipped (then recorded as unknown)."""
        try:
            entry = self.tree.entry(relative)
        except NotSynced as exc:
            self._skipped(exc)
            return None
        except OSError:
            return None
        if entry is None or self._excluded(relative, entry.kind == DIR) or not self._portable(entry):
            return None
        self.unknown.discard(relative)
        return entry

    def _utf8(self, relative: str) -> bool:
        """Names that are not UTF-8 cannot travel in the protocol: skipped, named once with escapes."""
        if not is_utf8(relative):
            self._skipped(NotSynced(relative, f"skipping {escaped(relative)}: its name is not UTF-8"))
            return False
        return True

    def _remember(self, sends: list[Entry], deletes: list[str]) -> None:
        for gone in deletes:
            self.known = {p: e for p, e in self.known.items() if p != gone and not p.startswith(f"{gone}/")}
        for entry in sends:
            self.known[entry.path] = entry

    # -- sending -------------------------------------------------------------------------------------
    def _send_batch(
        self, session: Session, entries: list[Entry], deletes: list[str], progress: Optional[Progress], began: float
    ) -> int:
        """Send one batch and wait until the agent committed it; returns the bytes sent.

        The pod applies a batch completely or not at all. When some paths cannot be written there
        (a mounted file, a read-only directory), each is reported in one line, left out, and the
        rest is sent again at once, so one bad path never holds up the others. A left-out path is
        tried again when it changes (or at the next connection)."""
        total = 0
        while entries or deletes:
            sent, failed = self._try_batch(session, entries, deletes, progress)
            total += sent
            if not failed:
                files = sum(1 for entry in entries if entry.kind != DIR)
                self.live.sent(session.name, self.batch_id, Sent(began, time.monotonic(), files, len(deletes)))
                return total
            self._report_failed(session, failed)
            self.not_written.update(path for path, _, _ in failed)
            kept = [entry for entry in entries if not _under_any(entry.path, self.not_written)]
            kept_deletes = [path for path in deletes if not _under_any(path, self.not_written)]
            if len(kept) == len(entries) and len(kept_deletes) == len(deletes):
                raise Disconnected("the agent rolled a batch back without naming a path it holds")
            entries, deletes, progress = kept, kept_deletes, None
        return total

    def _try_batch(
        self, session: Session, entries: list[Entry], deletes: list[str], progress: Optional[Progress]
    ) -> tuple[int, list[tuple[str, str, str]]]:
        """One attempt: (bytes sent, [(path, errno name, reason)] of a batch that was rolled back)."""
        self.batch_id += 1
        session.send({"t": "batch", "id": self.batch_id})
        for chunk in chunks(deletes):
            session.send({"t": "delete", "paths": chunk})
        total = 0
        for entry in entries:
            size = self._send_entry(session, entry)
            total += size
            if progress is not None and entry.kind != DIR:  # counted as "synced N files" counts them
                progress.add(size)
        session.send({"t": "commit", "id": self.batch_id})
        failed: list[tuple[str, str, str]] = []
        while True:
            reply = session.receive(REPLY_TIMEOUT)
            if reply["t"] not in ("skipped", "failed", "done") or reply["id"] != self.batch_id:
                raise Disconnected(f"unexpected answer to a batch: {reply['t']}")
            if reply["t"] == "skipped":
                for line in reply["items"]:
                    out.warn(f"{session.name}: not written: {line}")
            elif reply["t"] == "failed":
                failed += [_failure(item) for item in reply["items"]]
            elif reply["ok"] or failed:
                return total, failed
            else:
                raise Disconnected("the agent rolled a batch back without saying why")

    def _report_failed(self, session: Session, failed: list[tuple[str, str, str]]) -> None:
        for path, error, reason in failed[:LINES_SHOWN]:
            out.warn(f"{session.name}: cannot write {path}: {reason}{HINTS.get(error, '')}")
        if len(failed) > LINES_SHOWN:
            out.warn(f"{session.name}: {len(failed) - LINES_SHOWN} more paths not written")
        out.warn(f"{session.name}: sending the rest; a path not written is tried again when it changes")

    def _send_entry(self, session: Session, entry: Entry) -> int:
        if entry.kind == DIR:
            session.send({"t": "op", "op": "dir", "path": entry.path})
            return 0
        if entry.kind == LINK:
            session.send({"t": "op", "op": "link", "path": entry.path, "target": entry.target})
            return 0
        try:
            fd, st = self.tree.open_file(entry.path)
        except NotSynced as exc:
            self._skipped(exc)  # a link or a FIFO now, or unreadable: not sent, never opened
            return 0
        except OSError:
            return 0  # gone since the burst: the next burst (its delete event) removes it in the pod
        try:
            op = {"op": "file", "path": entry.path, "size": st.st_size, "exec": bool(st.st_mode & 0o100)}
            session.send({"t": "op", **op, "mtime": st.st_mtime_ns})
            remaining = st.st_size
            while remaining:
                chunk = os.read(fd, min(DATA_CHUNK, remaining)) or b"\0" * min(DATA_CHUNK, remaining)
                session.send_data(chunk)  # a file cut short while read is padded; its change event resends it
                remaining -= len(chunk)
            return st.st_size
        finally:
            os.close(fd)

    def _say(
        self, session: Session, entries: list[Entry], deletes: list[str], size: int, started: float, verb: str
    ) -> None:
        elapsed = round((time.monotonic() - started) * MS)
        entries, count, what = self._what(entries, deletes, size)
        where = self._where(session)
        if not entries:
            message = f"deleted {len(deletes)} in {where} in {human_duration(elapsed)}"
        else:
            message = f"{verb} {what} to {where} in {human_duration(elapsed)}"
        out.status(message, event="synced", target=where, files=count, bytes=size, deleted=len(deletes), ms=elapsed)
        self._list_sent(entries, deletes)

    def _say_start(
        self, session: Session, entries: list[Entry], deletes: list[str], size: int, files: int, timer: Phases
    ) -> None:
        """The line that ends a (re)connection: how long the user waited since it began, and for what."""
        seconds = timer.total()
        entries, count, what = self._what(entries, deletes, size)
        where = self._where(session)
        compared = f"{files:,} file{'' if files == 1 else 's'} compared"
        if not entries and not deletes:
            message = f"in sync with {where} ({compared}, nothing to send) in {seconds:.2f} s"
        elif not entries:
            message = f"in sync with {where} ({compared}, deleted {len(deletes)}) in {seconds:.2f} s"
        else:
            message = f"synced {what} to {where} ({compared}) in {seconds:.2f} s"
        fields = {"files": count, "bytes": size, "deleted": len(deletes), "compared": files}
        out.status(message, event="synced", target=where, ms=round(seconds * MS), **fields)
        out.detail(f"  took {timer.describe()}")
        self._list_sent(entries, deletes)

    def _what(self, entries: list[Entry], deletes: list[str], size: int) -> tuple[list[Entry], int, str]:
        """The entries written (not those the pod refused), how many, and "N files (SIZE)[ and deleted M]"."""
        entries = [entry for entry in entries if not _under_any(entry.path, self.not_written)]
        self.not_written = set()
        count = sum(1 for entry in entries if entry.kind != DIR)
        files = f"{count} file" + ("" if count == 1 else "s")
        if not count:  # only directories made
            count = len(entries)
            files = f"{count} director" + ("y" if count == 1 else "ies")
        gone = f" and deleted {len(deletes)}" if deletes else ""
        return entries, count, f"{files} ({human_size(size)}){gone}"

    def _where(self, session: Session) -> str:
        return session.name if not session.root or self.where.transport is None else session.root

    def _list_sent(self, entries: list[Entry], deletes: list[str]) -> None:
        for entry in entries:
            out.detail(f"  {entry.path}{'/' if entry.kind == DIR else ''}")
        for path in deletes:
            out.detail(f"  deleted {path}")


class Phases:
    """Where a (re)connection's time went, phase by phase, for the closing line and -V."""

    def __init__(self, began: Optional[float]) -> None:
        self.began = time.monotonic() if began is None else began
        self.last = self.began
        self.parts: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.parts.append((name, now - self.last))
        self.last = now

    def total(self) -> float:
        return time.monotonic() - self.began

    def describe(self) -> str:
        return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.parts)


def show_log(where: str, stream: str, line: str) -> None:
    """A line the app wrote in the pod (--logs): on stdout, prefixed by the pod (a JSON line with
    --log-format json, on stderr with reloadd's own)."""
    if out.json_lines:
        out.info(line, event="log", target=where, stream=stream)
        return
    try:
        sys.stdout.write(f"{where} | {line}\n")
        sys.stdout.flush()
    except OSError:
        pass  # nobody reads the laptop's stdout any more: the sync goes on


def process_age() -> float:
    """Seconds since this process started (its interpreter and imports are part of the user's wait),
    or 0 where /proc cannot tell (macOS): then the wait is counted from the sync's own start."""
    try:
        with open("/proc/self/stat", "rb") as stat_file:
            fields = stat_file.read().rpartition(b")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # starttime, field 22: clock ticks after boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def _groups(entries: list[Entry]) -> list[list[Entry]]:
    """The first sync's entries in bounded batches (directories count as files, sizes as the manifest said)."""
    groups: list[list[Entry]] = []
    group: list[Entry] = []
    size = 0
    for entry in entries:
        if group and (len(group) >= FIRST_BATCH_FILES or size + entry.size > FIRST_BATCH_BYTES):
            groups.append(group)
            group, size = [], 0
        group.append(entry)
        size += entry.size
    return groups + [group] if group else groups


def _failure(item: object) -> tuple[str, str, str]:
    if isinstance(item, list) and len(item) == 3 and all(isinstance(part, str) for part in item):
        return item[0], item[1], item[2]
    raise Disconnected(f"bad data from the agent: malformed failure {str(item)[:80]}")


def _under_any(path: str, paths: set[str]) -> bool:
    """``path`` is one of ``paths`` or lies under one of them."""
    parts = path.split("/")
    return any("/".join(parts[:count]) in paths for count in range(1, len(parts) + 1))


def version_mismatch(name: str, hello: dict[str, object]) -> Failure:
    """The agent speaks another protocol: both versions, and which side to upgrade."""
    theirs, release = hello.get("version"), hello.get("reloadd", "an unknown version")
    older_pod = isinstance(theirs, int) and theirs < PROTOCOL_VERSION
    upgrade = "the pod's image (its reloadd is older)" if older_pod else "reloadd on this laptop (it is older)"
    return Failure(
        f"{name}: the agent runs reloadd {release} (sync protocol {theirs}), this laptop reloadd {__version__} "
        f"(protocol {PROTOCOL_VERSION}): upgrade {upgrade}",
        EXIT_VERSION,
    )


def _local_hash(root_fd: int, path: str) -> str:
    """sha256 of a regular file under ``root_fd``, reached without following a symlink ("" when it cannot be)."""
    return LocalTree.over(root_fd).hash(path)


def mass_delete(before: Manifest, sends: list[Entry], deletes: list[str]) -> Optional[tuple[int, int]]:
    """(files lost, files before) when a batch leaves the tree ``before`` without files, or with less
    than half of them when it had MASS_DELETE_MIN_FILES or more; None for an ordinary change.

    Counted on the result, so renaming a big directory (delete + send) or a checkout that swaps
    many files for others is not a mass delete.
    """
    if not deletes:
        return None
    files = {path for path, entry in before.items() if entry.kind != DIR}
    gone = set(deletes)
    removed = {path for path in files if path in gone or any(parent in gone for parent in _parents(path))}
    after = (files - removed) | {entry.path for entry in sends if entry.kind != DIR}
    if not removed:
        return None
    if not after or (len(files) >= MASS_DELETE_MIN_FILES and 2 * len(after) < len(files)):
        return len(removed - after), len(files)
    return None


def _drop_typed_ahead() -> None:
    """Forget what was typed on the terminal before now (a "y" typed ahead must not answer a later halt)."""
    try:
        if sys.stdin.isatty():
            termios.tcflush(sys.stdin.fileno(), termios.TCIFLUSH)
    except (OSError, ValueError, termios.error):
        pass  # no terminal to flush: nothing typed ahead is read either


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:count]) for count in range(1, len(parts))]


def first_session(where: Where, window: float) -> Session:
    """The session to the one target of a sync without ``--selector``."""
    name = where.target or where.remote_dir or str(where.transport)
    return Session(name, exec_argv(where, where.target), window)


def sync_main(options: SyncOptions, env: Mapping[str, str]) -> int:
    """``reloadd sync``: load LOCAL_DIR's config, then sync until Ctrl-C."""
    options.heartbeat = window_from(options.heartbeat_flag, env)
    first = None
    if options.where is not None and options.where.selector is None:
        # The agent starts first: its interpreter, imports and walk of the pod overlap this side's
        # config, watcher and walk. (With --selector the pods are not known yet.)
        first = first_session(options.where, options.heartbeat)
        first.start()
    try:
        return _sync(options, env, first)
    finally:
        if first is not None:
            first.close()  # after a config error; otherwise the loop has closed it already


def _destination(options: SyncOptions, settings: Settings, first: Optional[Session]) -> Optional[Session]:
    """Where to, now that the config file is read: its ``sync`` keys fill what the command line left
    out. The session started before it was read is kept if the destination is the same."""
    config = settings.sync
    from_config = Destination(config.to, config.namespace, config.container, None, config.selector)
    merged, source = with_config(options.destination, from_config)
    where = destination_where(merged, source)
    if where == options.where:
        return first
    if options.where is None:
        check_engine(where)
    if first is not None:
        first.close()
    options.where = where
    if where.selector is not None:
        return None
    first = first_session(where, options.heartbeat)
    first.start()
    return first


def _sync(options: SyncOptions, env: Mapping[str, str], first: Optional[Session]) -> int:
    root = Path(options.local_dir).resolve()
    loaded = load_settings(CliArgs(cwd=str(root), config_file=options.config_file), env)
    settings = loaded.settings
    first = _destination(options, settings, first)
    log_format = options.log_format or settings.log_format
    out.configure(
        colour=use_colour(sys.stderr, env, options.colours and settings.colours),
        verbose=options.verbose,
        quiet=options.quiet,
        json_lines=log_format == "json",
    )
    include = check_include(list(settings.sync.include) + options.includes, "sync.include")
    globs = sync_globs(list(settings.ignore_root), list(settings.sync.exclude) + list(options.excludes), include)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` ends the sync as Ctrl-C does
    return Syncer(options, settings, root, globs, env, first).run()
