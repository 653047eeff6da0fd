"""What the agent says on its own, not as an answer: what a committed batch did to the app, its log lines.

A committed batch is handed to the supervisors that watch the synced directory (announce.py);
what they say it did (restarted, crashed at start, unchanged...) reaches the laptop as a
``live`` message once they know, from a thread, so the next batch need not wait for the app.
The app's lines (``--logs``) arrive from another thread too. Both write to the link the main
loop owns: a dead link is the main loop's to find, so a failed write here is dropped.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

from ..shared.messages import FromAgent, Installed, Live, Notice, Outcome
from ..shared.schema import INT64
from .announce import Announcement

if TYPE_CHECKING:
    from typing_extensions import TypeGuard  # typing's from 3.10

NO_SUPERVISOR = "no-supervisor"  # a ``live`` outcome: nothing in the pod runs the app under reloadd here
NO_ANSWER = "no-answer"  # a ``live`` outcome: the supervisor did not say what the batch did in time
LIVE_OUTCOMES = ("restarted", "crashed", "unchanged", "reloaded", "stopped")  # feedback.py
LIVE_LINES = 12  # stderr lines of a crash at start passed on


class Notices:
    """Says notices through ``send`` (the agent's link) from any thread."""

    def __init__(self, send: Callable[[FromAgent], None]) -> None:
        self.send = send

    def committed(
        self, ident: int, announcement: Announcement, changed: list[str], installed: Optional[Installed]
    ) -> None:
        """Tell the supervisors the batch is in (``installed``: after a dependency install, installs.py),
        and pass on to the laptop what it did to the app once they know."""
        if not announcement.socks:
            announcement.close()
            self.say(live(ident, {"what": NO_SUPERVISOR}, installed))
            return
        announcement.commit(changed, fresh=installed is not None, outcome=True)
        args = (ident, announcement, installed)
        threading.Thread(target=self._pass_on, args=args, name="live", daemon=True).start()

    def _pass_on(self, ident: int, announcement: Announcement, installed: Optional[Installed]) -> None:
        self.say(live(ident, live_fields(announcement.outcome()), installed))

    def log(self, stream: str, line: str) -> None:
        self.say({"t": "log", "line": line, "stream": stream})

    def say(self, message: Notice) -> None:
        """A message from another thread than the main loop's: a dead link is the main loop's to find."""
        try:
            self.send(message)
        except OSError:
            pass


def live(ident: int, outcome: Outcome, installed: Optional[Installed]) -> Live:
    """The ``live`` message: what the batch did, and the install it waited for, if any."""
    return cast(Live, {"t": "live", "id": ident, **outcome, **(installed or {})})


def live_fields(said: Optional[dict[str, object]]) -> Outcome:
    """A supervisor's outcome (host/control.py, supervise/feedback.py) as the fields of a ``live`` message: only the
    known ones, of the right types, so a confused supervisor cannot break the laptop's session."""
    if said is None or not isinstance(said.get("what"), str) or said["what"] not in LIVE_OUTCOMES:
        return {"what": NO_ANSWER}
    fields: Outcome = {"what": str(said["what"])}
    ms, status = said.get("ms"), said.get("status")
    if is_time(ms) and ms >= 0:
        fields["ms"] = ms
    if is_time(status):
        fields["status"] = status
    lines = said.get("lines")
    if isinstance(lines, list):
        fields["lines"] = [line for line in lines if isinstance(line, str)][:LIVE_LINES]
    return fields


def is_time(value: Any) -> TypeGuard[int]:
    """An int of a JSON time (nanoseconds, milliseconds): never a bool, never beyond 64 bits."""
    return type(value) is int and -INT64 <= value <= INT64
