"""The laptop's "your change is live" line: one per pod for every batch, from what the pod says.

The agent passes on what the supervisor in the pod said the batch did (host/control.py, supervise/feedback.py)
as a ``live`` message; this part turns it into the line the developer reads, with the time from
the first change of the batch on the laptop to the new app running:

    pod/web-7d9: 3 files → restarted in 84 ms
    pod/web-7d9: 1 file → crashed at start (exit status 1):
      lib/boom.js:3
      Error: boom
    pod/web-7d9: 1 file → no restart (nothing the app watches changed)

A crash's lines are the app's own first stderr lines, with the pod's directory taken off the
paths so that they name the files as the developer has them.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Optional

from ...output import out
from ..shared import messages

LIVE_EVENT = "live"
INSTALL_LINES_SHOWN = 10  # of a failed install's last lines
CRASH_LINES_SHOWN = 6  # of the app's first stderr lines: the location, the source line, the error
NODE_FOOTER = re.compile(r"^Node\.js v\d")  # the last line of node's report of an uncaught error
INSPECTOR_LINE = re.compile(r"^(Debugger listening on ws://|For help, see: https://nodejs\.org/|Debugger attached\.)")
PENDING_MAX = 1000  # batches remembered until their outcome comes (a pod that never answers)
MS = 1000.0


class Sent(NamedTuple):
    began: float  # monotonic: the batch's first change on the laptop (or the start of a resync)
    done: float  # monotonic: the pod said the batch was committed
    files: int
    deleted: int


def human_ms(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < MS else f"{ms / MS:.1f} s"


def what(sent: Sent) -> str:
    files = f"{sent.files} file{'' if sent.files == 1 else 's'}"
    if not sent.deleted:
        return files
    deleted = f"{sent.deleted} deleted"
    return deleted if not sent.files else f"{files}, {deleted}"


def local_lines(lines: list[str], pod_root: str) -> list[str]:
    """The app's lines with the pod's directory taken off paths: ``/app/lib/x.js:3`` -> ``lib/x.js:3``."""
    prefix = pod_root.rstrip("/") + "/" if pod_root else ""
    return [line.replace(prefix, "") if prefix and prefix != "/" else line for line in lines]


def describe(where: str, sent: Optional[Sent], message: messages.Live, pod_root: str) -> tuple[str, str, list[str]]:
    """(level, line, lines under it) for one ``live`` message; level is "status", "warn" or "error"."""
    head = f"{where}: {what(sent)} → " if sent is not None else f"{where}: "
    outcome = message["what"]
    installed = ""
    if "installed" in message:
        installed = f"installed ({message['installed']}, {human_ms(message.get('install_ms', 0))}), "
    if outcome == "restarted":
        took = message.get("ms", 0) + (sent.done - sent.began) * MS if sent is not None else message.get("ms", 0)
        return "status", f"{head}{installed}restarted in {human_ms(took)}", []
    if outcome == "install-failed":
        ended = f"exit status {message['status']}" if "status" in message else "timed out"
        command = message.get("command", "the install")
        line = f"{head}{command} failed ({ended}); the app keeps running the previous code"
        return "error", line, [text for text in message.get("lines", []) if text.strip()][-INSTALL_LINES_SHOWN:]
    if outcome == "crashed":
        status = message.get("status")
        shown = [line for line in local_lines(message.get("lines", []), pod_root) if _worth_showing(line)]
        return "error", f"{head}{installed}crashed at start (exit status {status})", shown[:CRASH_LINES_SHOWN]
    if outcome == "unchanged":
        return "status", f"{head}no restart (nothing the app watches changed)", []
    if outcome == "reloaded":
        return "status", f"{head}handed to the running app (soft reload), no restart", []
    if outcome == "no-supervisor":
        watched = pod_root or "it"
        return "warn", f"{head}{installed}written, but no reloadd in the pod watches {watched}: nothing restarted", []
    if outcome == "stopped":
        return "warn", f"{head}reloadd in the pod is stopping", []
    return "warn", f"{head}written; the pod's reloadd did not say whether the app restarted", []


def _worth_showing(line: str) -> bool:
    """The app's own lines: not blank, not node's internal frames, its version footer or its
    inspector's greeting (with --inspect they come first and would push the error out)."""
    if not line.strip() or "(node:internal/" in line or NODE_FOOTER.match(line):
        return False
    return not INSPECTOR_LINE.match(line)


class Live:
    """Batches sent to each pod, until the pod says what each did."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, int], Sent] = {}

    def sent(self, pod: str, ident: int, sent: Sent) -> None:
        if len(self.pending) >= PENDING_MAX:
            self.pending.pop(next(iter(self.pending)))
        self.pending[(pod, ident)] = sent

    def forget(self, pod: str) -> None:
        """The pod's link dropped: its agent will not answer for what it had."""
        self.pending = {key: sent for key, sent in self.pending.items() if key[0] != pod}

    def heard(self, pod: str, where: str, message: messages.Live, pod_root: str) -> None:
        sent = self.pending.pop((pod, message["id"]), None)
        level, line, lines = describe(where, sent, message, pod_root)
        fields: dict[str, Any] = {"event": LIVE_EVENT, "target": where, "outcome": message["what"]}
        if "ms" in message and sent is not None:
            fields["ms"] = round(message["ms"] + (sent.done - sent.began) * MS)
        if lines:
            fields["lines"] = lines
        say = {"status": out.status, "warn": out.warn, "error": out.error}[level]
        say(line + (":" if lines else ""), **fields)
        if not out.json_lines:  # a JSON line carries them in "lines"
            for text in lines:
                say(f"  {text}")
