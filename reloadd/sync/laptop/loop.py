"""The laptop side of ``reloadd sync``: watch LOCAL_DIR, send each burst as one batch to every agent.

At (re)connection the two sides exchange manifests and only the difference moves (reconcile.py).
After that, reloadd's own watcher reports changed files and its burst rule (a save, a checkout, a
build is one burst) decides what makes one batch (changes.py), sent to every pod (links.py).

A stream that drops (pod restarted), or goes silent for the heartbeat window (laptop asleep, a
lost VPN, a stopped agent: heartbeat.py), is reported in one line, its transport's process tree
killed, and reconnected at once, then with a growing pause (reconnect.py); the resync by manifest
sends whatever changed meanwhile, as one batch. kubectl's failures are said in one line each
(kubectl.py); a pod that refuses (production, see setup/production.py) is not retried. With ``-l`` the pods
are followed by one long-running watch (pods.py), not by polling.

Every read of LOCAL_DIR goes through local.LocalTree (localview.py), so nothing outside it is read.
LOCAL_DIR going away, or one change that would delete most of the tree, halts the sync instead of
being mirrored (halts.py).

Forwarded ports (``-p``, forward.py) listen from the start to the end of the sync; their
connections ride the first connected pod's stream (channels.py), served by the same loop.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

from ...host.watch.bursts import Burst
from ...host.watch.watcher import Watcher, WatchReport
from ...output import out, use_colour
from ...setup.forwards import check_loops, parse_forwards
from ...setup.settings import Settings
from ...setup.sources import project_settings
from ..shared.excludes import check_include, sync_globs
from .changes import changes
from .forward import Forwarder, Listener
from .gitignore import GITIGNORE
from .halts import MassDeleteHold, RootGuard, RootStep
from .kubectl import require_kubectl
from .links import Links
from .local import LocalTree
from .localview import LocalView, SyncRules
from .options import Destination, SyncOptions, destination_where, with_config
from .pods import PodWatch
from .progress import process_age
from .reconcile import start_message
from .reconnect import Link
from .session import Ready, Session, first_session
from .transport import Where, check_engine, same_host

ROOT_CHECK_INTERVAL = 1.0  # seconds between looks (one stat) at LOCAL_DIR itself: an unmount sends no event


class Syncer:
    """The loop: wait, look at LOCAL_DIR, send what changed, reconnect, show what the pods say."""

    def __init__(
        self,
        options: SyncOptions,
        settings: Settings,
        root: Path,
        base_globs: list[str],
        env: Mapping[str, str],
        first: Optional[Session] = None,
    ) -> None:
        assert options.where is not None  # _destination resolved it
        self.where: Where = options.where
        self.first = first  # the single target's session, started before the config was even read
        self.settings = settings
        self.root = root
        self.view = LocalView(root, base_globs, dict(env))
        self.root_guard = RootGuard(root)
        self.hold = MassDeleteHold(root, options.allow_mass_delete)
        forwards = options.forwards or parse_forwards(settings.sync.ports, "sync.ports")  # -p wins over the config
        check_loops(forwards, same_host(self.where), "sync: -p" if options.forwards else "sync.ports")
        self.forwarder = Forwarder(forwards)
        if first is not None:
            first.adopt = self.forwarder.adopt
        delete = options.delete if options.delete is not None else settings.sync.delete
        start = start_message(options, settings, base_globs)
        self.links = Links(self.where, options.heartbeat, self.forwarder.adopt, self.view, self.hold, start, delete)
        self.group = Burst()  # the supervisor's own burst rules: a save or a checkout is one batch
        self.incoming: list[WatchReport] = []
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.watcher: Optional[Watcher] = None
        self.began = time.monotonic() - process_age()  # the first "in sync" counts from the command's start

    def run(self) -> int:
        """Sync until Ctrl-C (0), or EXIT_REFUSED when the one pod refuses (production)."""
        if self.where.transport is None:
            require_kubectl()
        try:
            self._listen()  # first: a port in use is one line, before any other
            asked = self.links.ask_first(self.first)  # the pod's walk begins before the watcher's start
            self._start_watcher()
            status = self.links.first(self.first, self.began, asked)
            if status is not None:
                return status
            while True:
                self._wait()
                self._check_root()
                self._handle_changes()
                self.links.reconnect_due()
                self.links.show_live()
                self.forwarder.hand_over(self.links.forward_target(), time.monotonic())
        except KeyboardInterrupt:
            out.info("stopped")
            return 0
        finally:
            if self.watcher is not None:
                self.watcher.stop()
            self.links.close()
            self.forwarder.close()
            self.view.tree.close()

    def _listen(self) -> None:
        """Forwarded ports listen from the start to the end, whatever happens to the pods in between."""
        self.forwarder.listen()
        for forward in self.forwarder.forwards:
            out.info(f"forwarding 127.0.0.1:{forward.local} to port {forward.remote} in the pod")

    def _start_watcher(self) -> None:
        rules = SyncRules(self.root, self.view.excluded)  # not the skipped paths: one may become readable
        self.watcher = Watcher(
            rules, self.settings.legacy_watch, self.settings.polling_interval, self._report, report_dirs=True
        )
        self.watcher.start()

    def _report(self, report: WatchReport) -> None:
        """Called in the watcher thread: record and wake the loop."""
        self.incoming.append(report)
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass

    def _wait(self) -> None:
        """Sleep until something happens: a change, an agent speaking, the pod watch, a retry, a
        heartbeat deadline or the root check is due. Nothing else wakes the loop."""
        now = time.monotonic()
        deadlines = [now + ROOT_CHECK_INTERVAL, *self.links.deadlines(), self.forwarder.next_due()]
        wait = self.group.wait_time(now)
        if wait is not None:
            deadlines.append(now + wait)
        due = [d for d in deadlines if d is not None]
        timeout = max(0.0, min(due) - now) if due else None
        with selectors.DefaultSelector() as selector:
            selector.register(self.wake_r, selectors.EVENT_READ, None)
            if self.hold.held is not None and sys.stdin.isatty():
                selector.register(sys.stdin.fileno(), selectors.EVENT_READ, self.hold)
            self.links.register(selector)
            for listener in self.forwarder.listeners:
                selector.register(listener.sock, selectors.EVENT_READ, listener)
            for key, mask in selector.select(timeout):
                self._ready(key.data, mask)
        self.links.silent()

    def _ready(self, what: object, mask: int) -> None:
        """One thing ``_wait`` waited for happened (``what``: what it was registered with)."""
        if what is None:
            os.read(self.wake_r, 4096)
        elif isinstance(what, MassDeleteHold):
            what.typed()
        elif isinstance(what, PodWatch):
            self.links.pod_events()
        elif isinstance(what, Listener):
            self.forwarder.accept(what, self.links.forward_target())
        elif isinstance(what, Ready):
            what.session.serve(what, mask)
        elif isinstance(what, Link):
            self.links.unasked(what)

    def _check_root(self) -> None:
        """Halt while LOCAL_DIR is gone (stop watching); when a directory is back at its path, resync."""
        step, tree = self.root_guard.look(self.view.tree)
        if step == RootStep.HALT and self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        elif step == RootStep.RESUME:
            self._restart(tree)

    def _restart(self, tree: Optional[LocalTree] = None) -> None:
        """Rules read again (and LOCAL_DIR's new descriptor taken when it was replaced), watched again, resynced."""
        if self.watcher is not None:
            self.watcher.stop()
        if tree is not None:
            self.view.replace_tree(tree)
        self.view.load_rules()
        self.group = Burst()
        self.incoming.clear()
        self.hold.reset()
        self._start_watcher()
        self.links.resync_ready()

    def _due_burst(self) -> Optional[tuple[set[str], float]]:
        """The changed paths of the burst that is over, and when it began; a confirmed mass delete is due too."""
        now = time.monotonic()
        while self.incoming:
            report = self.incoming.pop(0)
            self.group.add(set(report.paths), now, report.busy, report.settle)
        if self.group.ready(now):
            changed, began = self.group.take()
            return set(changed), began
        if self.hold.held is not None and self.hold.confirmed:
            return set(), now
        return None

    def _handle_changes(self) -> None:
        """The burst that is due, as one batch to every connected pod, unless it halts (halts.py)."""
        due = self._due_burst()
        if due is None or not self.root_guard.intact(self.view.tree):
            return  # LOCAL_DIR went away: _check_root halts (or reopens) and resyncs, nothing is mirrored
        paths, began = due
        paths |= self.hold.held or set()
        gitignore = any(os.path.basename(path) == GITIGNORE for path in paths)
        if gitignore:
            self.view.load_rules()  # the burst is judged by the new rules: a file it now ignores is not sent
        sends, deletes = changes(self.view, self.links.known, self.root, paths)
        if self.hold.halts(self.links.known, paths, sends, deletes):
            return
        if sends or deletes:
            self.links.send(sends, deletes, began)
        if gitignore:  # the burst itself is in (its deletes too, which a resync without --delete keeps)
            self._restart()  # a .gitignore changed: new excludes for the watcher and both sides, then a resync


def sync_main(options: SyncOptions, env: Mapping[str, str], first: Optional[Session]) -> int:
    """``reloadd sync``: load LOCAL_DIR's config, then sync until Ctrl-C.

    ``first`` is the one target's session, already started (``start_first``) before this module
    was imported; it is closed here whatever happens.
    """
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
    loaded = project_settings(root, options.config_file, env)
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
