"""A link to one pod and its outages: the agent's hello (or why it never came), a dead link said
once and reconnected at once, then retried after a growing pause, and kubectl's pod watch (-l)
restarted the same way. These decide and say; the loop connects and sends."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from ... import __version__
from ...errors import ReloaddError
from ...output import out
from ..shared.protocol import PROTOCOL_VERSION
from .kubectl import EXIT_FAILED, EXIT_FORBIDDEN, EXIT_NO_CLUSTER, EXIT_NOT_FOUND, EXIT_VERSION, Failure, explain
from .pods import PodWatch
from .session import Disconnected, Session
from .transport import Where

HELLO_TIMEOUT = 60.0  # seconds for the transport to start the agent (kubectl may pull credentials first)
RECONNECT_STEP = 0.5  # the first reconnection is at once; then this many seconds, doubled after each failure...
RECONNECT_MAX = 4.0  # ...up to this: a laptop waking from sleep is back within seconds
EXIT_AGENT_FAILED = EXIT_FAILED  # the agent could not be started (kubectl.py names the common reasons)
GIVE_UP = (EXIT_FORBIDDEN, EXIT_NO_CLUSTER, EXIT_VERSION)  # with -l: the same for every pod, so the sync ends


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

    def greet(self, where: Where, asked: bool) -> bool:
        """Wait for the agent's hello: True when it speaks our protocol, False when it refused (production:
        said, never retried). NotStarted when it never started, Disconnected when it stopped at once."""
        session = self.session
        try:
            hello = session.receive(HELLO_TIMEOUT)
        except Disconnected as exc:
            raise NotStarted(self._why_not_started(where, str(exc))) from None
        if hello["t"] == "refused":
            out.error(f"{session.name}: {hello['message']}")
            self.refused = True
            session.close()
            return False
        if hello["t"] != "hello" or hello["version"] != PROTOCOL_VERSION:
            session.close(dead=True)
            raise NotStarted(version_mismatch(session.name, hello))
        if not asked:
            raise Disconnected("the agent stopped reading before the sync began")
        self.greeted = True
        session.root = hello.get("root", "")
        return True

    def _why_not_started(self, where: Where, why: str) -> Failure:
        """kubectl's failure in one line of ours; its own last lines only with -V, once per outage."""
        session = self.session
        status = session.exit_status(wait=1.0)
        tail = session.stderr_tail()
        session.close(dead=True)
        if where.transport is None:
            failure = explain(session.name, status, tail, where, why)
        else:
            said = f"; it said: {tail[-1]}" if tail else ""
            failure = Failure(f"{session.name}: could not start the sync: {why}{said}", EXIT_AGENT_FAILED)
        if failure.message != self.said:
            for line in tail:
                out.detail(f"  {session.argv[0]}: {line}")
        return failure

    def in_sync(self) -> None:
        """The (re)connection's resync is done: the outage, if any, is over."""
        self.ready, self.retry_at, self.failures = True, None, 0
        if self.said is not None:
            out.info(f"reconnected to {self.session.name}")
            self.said = None

    def lost(self, why: str) -> None:
        """A link that was in sync died: kill its transport tree, say so once, reconnect at once."""
        self.ready = False
        self.session.close(dead=True)
        for line in self.session.stderr_tail():
            out.detail(f"  {self.session.argv[0]}: {line}")
        message = f"{self.session.name}: {why}"
        if self.followed and "no answer" not in why:
            out.detail(f"{message} — reconnecting")  # a pod going away: its watch event says so
        else:
            out.warn(f"{message} — reconnecting")
        self.said = message
        self.failures = 0
        self.retry_at = time.monotonic()

    def retry(self, message: str) -> None:
        """A (re)connection failed: try again after a growing pause; say it only if the reason changed."""
        self.session.close(dead=True)
        if message != self.said:
            out.warn(f"{message} — retrying")
            self.said = message
        self.retry_at = time.monotonic() + backoff(self.failures)
        self.failures += 1

    def not_started(self, failure: Failure) -> bool:
        """The agent never started: retried, or (a pod of -l that cannot take it) said once and left.
        True when the pod is gone (the loop stops syncing to it quietly); ReloaddError when every pod would fail."""
        if not self.followed or failure.transient:
            self.retry(failure.message)
        elif failure.exit_code in GIVE_UP:
            raise ReloaddError(failure.message, failure.exit_code)
        elif failure.exit_code == EXIT_NOT_FOUND and "pod " in failure.message.split(":")[0]:
            return True
        else:
            out.error(f"{failure.message}; not syncing to it")
            self.refused = True
        return False


def version_mismatch(name: str, hello: Mapping[str, object]) -> Failure:
    """The agent speaks another protocol: both versions, and which side to upgrade (``hello``: what it said
    first, which may be no hello at all)."""
    theirs, release = hello.get("version"), hello.get("reloadd", "an unknown version")
    older_pod = isinstance(theirs, int) and theirs < PROTOCOL_VERSION
    upgrade = "the pod's image (its reloadd is older)" if older_pod else "reloadd on this laptop (it is older)"
    return Failure(
        f"{name}: the agent runs reloadd {release} (sync protocol {theirs}), this laptop reloadd {__version__} "
        f"(protocol {PROTOCOL_VERSION}): upgrade {upgrade}",
        EXIT_VERSION,
    )


class WatchRetry:
    """kubectl's pod watch (-l), started again when it ends: the API server closed it, or kubectl failed
    (said once per reason, after a growing pause)."""

    def __init__(self, pods: PodWatch, where: Where) -> None:
        self.pods = pods
        self.where = where
        self.retry_at: Optional[float] = None
        self.failures = 0
        self.said: Optional[str] = None

    def heard(self) -> None:
        """The watch spoke: any outage is over."""
        self.failures, self.said = 0, None

    def ended(self) -> None:
        status, tail = self.pods.status(), self.pods.stderr_tail()
        self.pods.stop()
        for line in tail:
            out.detail(f"  kubectl: {line}")
        failure = explain(f"pods -l {self.where.selector}", status, tail, self.where)
        if status != 0 and not failure.transient:
            raise ReloaddError(failure.message, failure.exit_code)
        if status != 0 and failure.message != self.said:
            out.warn(f"{failure.message} — retrying")
            self.said = failure.message
        self.retry_at = time.monotonic() + backoff(self.failures)
        self.failures += 1

    def due(self, now: float) -> None:
        """Start the watch again when its pause is over."""
        if self.retry_at is None or now < self.retry_at:
            return
        self.retry_at = None
        self.pods.start()
