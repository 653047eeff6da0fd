"""What a synced batch did to the app, for the laptop's "your change is live" line.

The agent that committed a batch waits on its control connection (sync/pod/announce.py, whose
other end is host/control.py) to hear the outcome, and passes it on to the laptop. This part
only decides what to say and when; the supervisor's loop sends it:
  - ``unchanged``: nothing the app watches was in the batch: no restart;
  - ``reloaded``: the batch was handed to the app as a soft reload (``hot``);
  - ``restarted`` (with ``ms``, commit to the new app's start): the new app has run for
    ``START_WINDOW`` without exiting;
  - ``crashed`` (with the exit ``status`` and the first ``lines`` it wrote on stderr): it ended
    within ``START_WINDOW`` of its start: a typo, a throw at start, a missing module;
  - ``stopped``: reloadd itself is stopping.
A batch that arrives while the previous one's app is still starting joins the next start; the
earlier batch is then told it restarted the app (it did; a newer change replaced that app).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..host.control import Committed

START_WINDOW = 0.5  # seconds a new app must run before a batch is told it restarted it
MS = 1000

Outcome = dict[str, object]


@dataclass
class _Starting:
    batches: list[Committed]
    committed_at: float
    started_at: float
    mark: int  # the stderr line count (app_output.py) when it started: its own lines follow


@dataclass
class Feedback:
    waiting: list[tuple[Committed, float]] = field(default_factory=list)  # committed, not yet started
    starting: Optional[_Starting] = None

    def committed(self, batch: Committed, now: float) -> None:
        if batch.sock is not None:
            self.waiting.append((batch, now))

    def started(self, now: float, mark: int) -> list[tuple[Committed, Outcome]]:
        """A new app started: the waiting batches hear about it once it has run ``START_WINDOW``.
        An app still in its window was stopped for a newer change, not crashed: it restarted."""
        told = self._restarted(self.starting) if self.starting else []
        self.starting = None
        if self.waiting:
            first = min(at for _, at in self.waiting)
            self.starting = _Starting([batch for batch, _ in self.waiting], first, now, mark)
            self.waiting = []
        return told

    def reloaded(self) -> list[tuple[Committed, Outcome]]:
        """The waiting batches went to the running app as a soft reload: no restart."""
        told: list[tuple[Committed, Outcome]] = [(batch, {"what": "reloaded"}) for batch, _ in self.waiting]
        self.waiting = []
        return told

    def deadline(self) -> Optional[float]:
        return self.starting.started_at + START_WINDOW if self.starting else None

    def due(self, now: float) -> list[tuple[Committed, Outcome]]:
        """The app has run long enough: its batches restarted it."""
        starting = self.starting
        if starting is None or now < starting.started_at + START_WINDOW:
            return []
        self.starting = None
        return self._restarted(starting)

    @staticmethod
    def _restarted(starting: _Starting) -> list[tuple[Committed, Outcome]]:
        ms = round(max(0.0, starting.started_at - starting.committed_at) * MS)
        return [(batch, {"what": "restarted", "ms": ms}) for batch in starting.batches]

    def ended(self, status: int, lines: list[str]) -> list[tuple[Committed, Outcome]]:
        """The app ended by itself; inside its window that is a crash at start."""
        starting, self.starting = self.starting, None
        if starting is None:
            return []
        return [(batch, {"what": "crashed", "status": status, "lines": lines}) for batch in starting.batches]

    @property
    def mark(self) -> Optional[int]:
        return self.starting.mark if self.starting else None
