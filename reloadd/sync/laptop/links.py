"""The pods the laptop syncs to: each one connected and resynced, sent every batch, reconnected
when its link dies (reconnect.py says how and when), and, with ``-l``, found and dropped as
kubectl's pod watch reports them."""

from __future__ import annotations

import selectors
import socket
import time
from typing import TYPE_CHECKING, Callable, Optional

from ...errors import ReloaddError
from ...output import out
from ...setup.production import EXIT_REFUSED
from ..shared.manifest import DIR, Entry, Listings, Manifest, flat
from .changes import remember
from .halts import MassDeleteHold
from .live import Live
from .localview import LocalView
from .pods import PodEvent, PodWatch
from .progress import Phases, say_batch, say_start, show_log, where_shown
from .reconcile import Reconcile, ask_start
from .reconnect import EXIT_AGENT_FAILED, Link, NotStarted, WatchRetry
from .sender import Sender
from .session import Disconnected, Session
from .transport import Where, exec_argv

if TYPE_CHECKING:
    from ..shared.messages import Start

Adopt = Callable[[socket.socket, int], None]  # the forwarder's: takes a connection the pod opened


class Links:
    """Every link, the tree they all hold (``known``), and the pod watch that finds them with -l."""

    def __init__(
        self,
        where: Where,
        heartbeat: float,
        adopt: Adopt,
        view: LocalView,
        hold: MassDeleteHold,
        start: Start,
        delete: bool,
    ) -> None:
        self.where = where
        self.heartbeat = heartbeat  # seconds of silence that make a link dead (heartbeat.py)
        self.adopt = adopt  # the forwarder's: a connection the pod opens to a forwarded port
        self.view = view
        self.hold = hold
        self.start = start  # the agent's start message: the excludes, and what to run after a batch
        self.delete = delete  # --delete: pod-only files go at a resync
        self.links: dict[str, Link] = {}
        self.known: Manifest = {}  # the tree as last sent: what the pods hold
        self.live = Live()  # batches sent, until each pod says what they did to the app
        self.sender = Sender(view, self.live)
        self.pods: Optional[PodWatch] = None  # -l: the `kubectl get pods -w` process
        self.pods_retry: Optional[WatchRetry] = None

    def ask_first(self, session: Optional[Session]) -> Optional[bool]:
        """Send the excludes to the agent started before the config was read, as soon as they are
        known: it walks the pod while this side starts its watcher. None: there is no such agent."""
        return None if session is None else ask_start(session, self.start)

    def first(self, session: Optional[Session], began: float, asked: Optional[bool] = None) -> Optional[int]:
        """Connect to the one target (``session``: started before the config was read, and ``asked``
        by ``ask_first``), or start following the pods of -l; EXIT_REFUSED when the one target refuses."""
        where = self.where
        if where.selector is not None:
            self.pods = PodWatch(where)
            self.pods_retry = WatchRetry(self.pods, where)
            self.pods.start()
            return None
        name = where.target or where.remote_dir or str(where.transport)
        if session is not None:
            link = self.links[name] = Link(session)
        else:
            link = self._link(name, where.target)
        try:
            self._connect(link, began, spawned=session is not None, asked=asked)
        except NotStarted as exc:
            if not exc.failure.transient:
                raise ReloaddError(exc.failure.message, exc.failure.exit_code) from None
            link.retry(exc.failure.message)
        except Disconnected as exc:
            if not link.greeted:
                raise ReloaddError(f"{name}: could not start the sync: {exc}", EXIT_AGENT_FAILED) from None
            self._lost(link, str(exc))  # dropped during the first sync: what is committed stays
        return EXIT_REFUSED if link.refused else None

    def _link(self, name: str, target: Optional[str], followed: bool = False) -> Link:
        link = Link(Session(name, exec_argv(self.where, target), self.heartbeat), followed=followed)
        link.session.adopt = self.adopt
        self.links[name] = link
        return link

    def close(self) -> None:
        if self.pods is not None:
            self.pods.stop()
        for link in self.links.values():
            link.session.close()

    # -- waiting -------------------------------------------------------------------------------------
    def deadlines(self) -> list[Optional[float]]:
        """When a retry is due, or a link's heartbeat window ends."""
        deadlines = [self.pods_retry.retry_at if self.pods_retry is not None else None]
        deadlines += [link.retry_at for link in self.links.values()]
        return deadlines + [link.session.last_heard + link.session.window for link in self.links.values() if link.ready]

    def register(self, selector: selectors.BaseSelector) -> None:
        """What to wait for: each connected agent (and its forwarded ports' sockets) and the pod watch."""
        for link in self.links.values():
            if link.ready:
                selector.register(link.session.fd, selectors.EVENT_READ, link)
                link.session.watch(selector)
        if self.pods is not None and self.pods.fd is not None:
            selector.register(self.pods.fd, selectors.EVENT_READ, self.pods)

    def forward_target(self) -> Optional[Session]:
        """The session that carries new forwarded connections: the first pod connected."""
        return next((link.session for link in self.links.values() if link.ready), None)

    def silent(self) -> None:
        """Links whose agent said nothing for the heartbeat window are dead."""
        now = time.monotonic()
        for link in list(self.links.values()):
            if link.ready and link.session.silent_for(now) >= link.session.window:
                self._lost(link, f"no answer for {link.session.window:g} s")

    def unasked(self, link: Link) -> None:
        """The agent spoke while idle: forwarded ports' frames (the session hands them to its channels),
        or it stops (or its stream ends)."""
        try:
            link.session.read_ready(0)
            while link.session.queued:
                link.session.receive(0)
        except Disconnected as exc:
            self._lost(link, str(exc))

    def show_live(self) -> None:
        """One line per pod for each batch, once its pod says what the batch did to the app (live.py)."""
        for link in self.links.values():
            session = link.session
            where = where_shown(session, self.where)
            notices, session.notices = session.notices, []
            for message in notices:
                if message["t"] == "output":
                    out.info(f"{where} | {message['line']}", event="output")
                elif message["t"] == "log":
                    show_log(where, message["stream"], message["line"])
                else:
                    self.live.heard(session.name, where, message, session.root)

    # -- connecting ----------------------------------------------------------------------------------
    def _connect(
        self, link: Link, began: Optional[float] = None, spawned: bool = False, asked: Optional[bool] = None
    ) -> None:
        """Start the agent (unless ``spawned``) and resync; NotStarted when it never said hello, Disconnected
        after. ``began`` is when the user started waiting (the closing line counts from it); ``asked``
        says whether ``start`` went already (None: not yet)."""
        timer = Phases(began)
        timer.mark("start")  # this process's start (the first time), its config and its watcher
        if not spawned:
            link.session.start()
        # The agent gets the excludes before it has even said hello, so it walks the pod's tree
        # while this side walks its own: a start costs the longer walk, not the sum of both.
        if asked is None:
            asked = ask_start(link.session, self.start)
        if asked:
            link.session.beat()  # pings through this side's walk: the agent must not count the laptop as silent
        walked = self.view.walk()
        timer.mark("walk")
        if link.greet(self.where, asked):
            self._resync(link, walked, timer)
            link.in_sync()

    def resync_ready(self) -> None:
        """The rules or the tree changed: every connected pod compares again."""
        for link in list(self.links.values()):
            if link.ready:
                try:
                    self._resync(link)
                except Disconnected as exc:
                    self._lost(link, str(exc))

    def _resync(self, link: Link, walked: Optional[Listings] = None, timer: Optional[Phases] = None) -> None:
        """Compare with the pod's tree (reconcile.py), send the difference, say how long it all took."""
        session = link.session
        if walked is None or timer is None:  # a connected link (a .gitignore changed): ask, then walk alongside
            timer = Phases(None)
            ask_start(session, self.start)
            walked = self.view.walk()
            timer.mark("walk")
        local = flat(walked)
        sends, deletes = Reconcile(session, self.view, self.delete, self.hold).run(local, walked, timer)
        entries = [local[path] for path in sorted(sends)]
        sent = self.sender.send_first(session, entries, deletes, timer.began)
        timer.mark("send")
        self.known = local
        files = sum(1 for entry in local.values() if entry.kind != DIR)  # links count as files, as in "synced"
        say_start(where_shown(session, self.where), self.sender.written(entries), deletes, sent, files, timer)

    def _lost(self, link: Link, why: str) -> None:
        self.live.forget(link.session.name)
        link.lost(why)

    def reconnect_due(self) -> None:
        now = time.monotonic()
        for link in list(self.links.values()):
            if link.retry_at is None or now < link.retry_at or link.refused:
                continue
            link.retry_at = None
            self._try_connect(link)
        if self.pods_retry is not None:
            self.pods_retry.due(time.monotonic())

    def _try_connect(self, link: Link) -> None:
        try:
            self._connect(link)
        except NotStarted as exc:
            if link.not_started(exc.failure):
                self._gone(link.session.name)
        except Disconnected as exc:
            link.retry(f"{link.session.name}: {exc}")

    # -- sending -------------------------------------------------------------------------------------
    def send(self, sends: list[Entry], deletes: list[str], began: float) -> None:
        """One burst's batch to every connected pod (one that is not resyncs by manifest when it is back)."""
        for link in list(self.links.values()):
            if not link.ready:
                continue
            started = time.monotonic()
            try:
                size = self.sender.send(link.session, sends, deletes, None, began)
            except Disconnected as exc:
                self._lost(link, str(exc))
                continue
            say_batch(where_shown(link.session, self.where), self.sender.written(sends), deletes, size, started)
        self.known = remember(self.known, sends, deletes)

    # -- following the pods of a selector -----------------------------------------------------------
    def pod_events(self) -> None:
        assert self.pods is not None and self.pods_retry is not None
        events = self.pods.read()
        if events is None:
            self.pods_retry.ended()
            return
        self.pods_retry.heard()
        for event in events:
            self._pod_event(event)

    def _pod_event(self, event: PodEvent) -> None:
        link = self.links.get(event.name)
        if event.wanted and link is None:
            self._try_connect(self._link(event.name, event.name, followed=True))
        elif not event.wanted and link is not None:
            self._gone(event.name)

    def _gone(self, name: str) -> None:
        link = self.links.pop(name, None)
        if link is not None:
            out.info(f"{name} is gone: no longer syncing to it")
            link.session.close(dead=True)
