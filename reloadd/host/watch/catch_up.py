"""What the watcher does when notifications may have been lost: find the changes they held.

Events are lost three ways: the kernel's queue overflowed (or watchfiles failed a batch), the
watcher thread hit an unexpected error, or a notifier was replaced by a rebuild after its last
read. The first two rebuild the notifiers and look, in the directories inotify watched, for
entries changed since the last batch was delivered; the third keeps what the old instance still
held. Pollers carry their own view over a rebuild; deletions cannot be seen by looking.
"""

from __future__ import annotations

import os
import time

from .inotify import QueueOverflow
from .notifiers import InotifyNotifier
from .raw_changes import CHANGE_ADDED, RawChanges

# A file system stamps a change with its coarse clock (a jiffy behind time.time()): a catch-up
# scan counts files changed this long before the last event it heard as changed, to be sure.
CATCH_UP_MARGIN = 0.1


class CatchUp:
    """When notifications were last complete, and what a replaced notifier still held."""

    def __init__(self) -> None:
        self.heard = time.time()  # wall clock (file ctimes are): every change before it has been delivered
        self._drained: RawChanges = set()  # events a replaced inotify instance still held: handled next

    def delivered_up_to(self, started: float) -> None:
        """A wait that began at ``started`` (wall clock) returned: everything before it was delivered."""
        self.heard = started

    def scan(self, directories: set[str]) -> RawChanges:
        """Entries of ``directories`` changed since notifications were last complete: what a lost batch held."""
        since_ns = int((self.heard - CATCH_UP_MARGIN) * 1e9)
        self.heard = time.time()
        changes: RawChanges = set()
        for directory in directories:
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        st = entry.stat(follow_symlinks=False)
                        if max(st.st_ctime_ns, st.st_mtime_ns) >= since_ns:
                            changes.add((CHANGE_ADDED, entry.path))
            except OSError:
                continue
        return changes

    def drain(self, old: InotifyNotifier) -> None:
        """Keep what ``old`` heard after its last read and before the new watches existed: a file
        made there (during a rebuild under churn) would otherwise be lost with the old instance."""
        try:
            self._drained |= old.inotify.drain()
        except QueueOverflow:
            self._drained |= self.scan(old.dirs)  # lost events: look at its directories instead

    def take_drained(self) -> RawChanges:
        """What replaced notifiers still held, once: the next wait returns it before waiting."""
        drained, self._drained = self._drained, set()
        return drained
