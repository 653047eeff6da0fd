"""A helper thread that loops until told to stop (the log feed, the heartbeat): that shape, said once."""

from __future__ import annotations

import threading


class Background:
    """A daemon thread running ``_run`` until ``stop()`` sets ``stopped``, which ``_run`` checks.

    Daemon: a thread still blocked when reloadd exits must not hold the exit up.
    """

    def __init__(self, name: str) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        raise NotImplementedError
