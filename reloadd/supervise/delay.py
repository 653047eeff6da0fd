"""nodemon's ``delay``: a pure rule on the supervisor's monotonic clock, acted on by the loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Delay:
    """nodemon's ``delay``: a batch waits this long after its last burst; each new burst joins
    the batch and starts the wait again (nodemon restarts its timer on every change)."""

    seconds: float
    paths: set[str] = field(default_factory=set)
    until: Optional[float] = None

    def add(self, paths: list[str], now: float) -> None:
        self.paths.update(paths)
        self.until = now + self.seconds

    def take(self, now: float) -> Optional[list[str]]:
        """The delayed batch once its wait is over, else None."""
        if self.until is None or now < self.until:
            return None
        paths, self.paths, self.until = sorted(self.paths), set(), None
        return paths
