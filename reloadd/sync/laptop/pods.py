"""Following the pods of a selector (``-l``): one ``kubectl get pods -w`` for the whole sync, no polling.

``kubectl get pods -l SELECTOR -w --output-watch-events -o json`` prints every matching pod as
an ADDED event, then one event per change, each a JSON object (indented over several lines).
A pod is wanted while it is Running and not being deleted; the laptop connects to pods that
become wanted and ends the streams of pods that stop being wanted. When the watch process ends
(the API server closes watches now and then, or the link dropped), the laptop starts another;
its first events list the pods again.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from typing import IO, NamedTuple, Optional

from .transport import KUBECTL, Where, kubectl_scope, stderr_tail

READ_CHUNK = 256 * 1024


class PodEvent(NamedTuple):
    name: str  # pod/NAME, as links are named
    wanted: bool  # Running and not being deleted


def watch_argv(where: Where) -> list[str]:
    assert where.selector is not None
    return [KUBECTL, "get", "pods", "-l", where.selector, "-w", "--output-watch-events", "-o", "json",
            *kubectl_scope(where)]  # fmt: skip


def event_of(item: object) -> Optional[PodEvent]:
    """A watch event as the laptop needs it (None for what is not a pod event)."""
    if not isinstance(item, dict) or not isinstance(item.get("object"), dict):
        return None
    pod = item["object"]
    metadata = pod.get("metadata") or {}
    name = metadata.get("name")
    if not isinstance(name, str):
        return None
    running = (pod.get("status") or {}).get("phase") == "Running"
    wanted = item.get("type") in ("ADDED", "MODIFIED") and running and not metadata.get("deletionTimestamp")
    return PodEvent(f"pod/{name}", wanted)


class PodWatch:
    """The ``kubectl get pods -w`` process and the events decoded from its stdout."""

    def __init__(self, where: Where) -> None:
        self.where = where
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.stderr: Optional[IO[bytes]] = None
        self.buffer = ""
        self.decoder = json.JSONDecoder()

    def start(self) -> None:
        self.buffer = ""
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(watch_argv(self.where), stdout=subprocess.PIPE, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    @property
    def fd(self) -> Optional[int]:
        if self.proc is None or self.proc.stdout is None:
            return None
        return self.proc.stdout.fileno()

    def read(self) -> Optional[list[PodEvent]]:
        """The events that arrived; None when the watch ended (see ``status`` and ``stderr_tail``)."""
        assert self.proc is not None and self.proc.stdout is not None
        chunk = os.read(self.proc.stdout.fileno(), READ_CHUNK)
        if not chunk:
            return None
        self.buffer += chunk.decode(errors="replace")
        events = []
        while True:
            text = self.buffer.lstrip()
            if not text:
                self.buffer = ""
                break
            try:
                item, end = self.decoder.raw_decode(text)
            except ValueError:
                self.buffer = text  # the rest of this object is still on its way
                break
            self.buffer = text[end:]
            event = event_of(item)
            if event is not None:
                events.append(event)
        return events

    def status(self) -> Optional[int]:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return None

    def stderr_tail(self) -> list[str]:
        """The last lines it wrote on its stderr."""
        return stderr_tail(self.stderr)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
