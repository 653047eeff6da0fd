"""One sync session in the pod: the laptop's requests, each handled in order, against the tree
under DIR.

A session: the agent receives the exclude globs, sends its directory digests, the listings the
laptop asks for and the hashes it asks for, then applies batches (applier.py). A start waits for
the pod's walk, so this module imports only what the walk and the comparison need; the batch
side's modules are imported once the digests are on their way (``_applier``).

Every path is checked by paths.check_path and resolved without following pod-side symlinks;
every message was checked by schema.check_message before it gets here, so each handler takes its
own type (messages.py). The process around this (stdio, heartbeat, forwarded ports) is agent.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..shared.excludes import excluder
from ..shared.listing import digest_items
from ..shared.manifest import Exclude, Listings, listings
from ..shared.paths import check_path
from ..shared.protocol import CHUNK_ITEMS, ChannelData, Data, Frame, chunks
from ..shared.schema import ProtocolError
from .root import Root
from .tree import file_hashes, remove_stale_temp

if TYPE_CHECKING:
    from ..shared.messages import FromAgent, Hash, ListDirs, Start
    from .applier import Applier

ON_CHANGE_MAX = 100  # onChange rules in one start message
ON_CHANGE_TIMEOUT_MAX = 3600  # seconds, as setup/values.py MAX_DURATION_SECONDS
BATCH_MESSAGES = ("stamp", "batch", "delete", "op", "commit")  # the applier's (applier.py)


class Agent:
    """One session's state; ``handle`` takes each frame from the laptop side in order."""

    def __init__(self, root: Root, env: Mapping[str, str], send: Callable[[Any], None]) -> None:
        self.root = root
        self.env = env
        self.send: Callable[[FromAgent], None] = send  # the link: agent.Stdio.send
        self.exclude: Exclude = lambda path, is_dir: False
        self.listings: Listings = {}  # the last start's walk, by directory, until compared
        self.applier: Optional[Applier] = None  # the batch side, once a start's digests went out (or a batch came)

    # -- dispatch ----------------------------------------------------------------------------------
    def handle(self, frame: Frame) -> None:
        if isinstance(frame, Data):
            self._applier().data(frame.chunk)
            return
        if isinstance(frame, ChannelData):
            raise ProtocolError("channel bytes are for the channel table, not the sync")
        message = frame  # checked against schema.MESSAGES by the FrameReader that decoded it
        kind = message["t"]
        comparing: dict[str, Callable[[Any], None]] = {  # each takes its own type: schema.py checked the message
            "start": self._start,
            "list": self._list,
            "compared": self._drop_walk,
            "hash": self._hash,
        }
        handler = comparing.get(kind)
        if handler is None and kind not in BATCH_MESSAGES:
            raise ProtocolError(f"{kind!r} is not a message the agent takes")
        if kind in ("delete", "op", "commit") and (self.applier is None or self.applier.batch is None):
            raise ProtocolError(f"{kind!r} outside a batch")
        if self.applier is not None:
            self.applier.check(kind)
        if kind in ("hash", "stamp", "batch"):
            self._drop_walk(message)  # the comparison is over, even if the laptop did not say so
        if handler is None:
            self._applier().handle(kind, message)
        else:
            handler(message)

    def _applier(self) -> Applier:
        if self.applier is None:
            # Imported here, not at the top: its modules (batches, installs, the supervisor's socket)
            # are most of the agent's imports, and every start waits for the walk that comes first.
            from .applier import Applier

            self.applier = Applier(self.root, self.env, self.send)
        return self.applier

    def close(self) -> None:
        """The session ended: nothing a batch staged stays, and the installs and the log feed stop."""
        if self.applier is not None:
            self.applier.close()

    # -- manifest and hashes -----------------------------------------------------------------------
    def _start(self, message: Start) -> None:
        """Walk the whole tree (the laptop walks its own meanwhile), send each directory's digest, then
        take the rest of ``start`` (install rules, --logs) on the batch side."""
        self.exclude = excluder(self.root.path, message["exclude"])
        on_change = _on_change(message.get("onChange"))
        self.listings = listings(self.root.fd, self.exclude, remove_stale_temp, self._warn)
        for chunk in chunks(digest_items(self.listings)):
            self.send({"t": "dirs", "items": chunk})
        self.send({"t": "dirs-end", "count": len(self.listings)})
        self._applier().started(self.exclude, on_change, message.get("logs") is True)

    def _drop_walk(self, message: object) -> None:
        """The laptop has compared (``compared``, not answered): the walk's entries are not needed any more."""
        self.listings = {}

    def _list(self, message: ListDirs) -> None:
        """The entries of the directories whose digests differed, from the walk of ``start``."""
        directories = message["dirs"]
        if len(directories) > CHUNK_ITEMS:
            raise ProtocolError(f"list: more than {CHUNK_ITEMS} directories in one request")
        count = 0
        for chunk in chunks(entry.to_wire() for directory in directories for entry in self.listings.get(directory, [])):
            self.send({"t": "manifest", "entries": chunk})
            count += len(chunk)
        self.send({"t": "manifest-end", "count": count})

    def _warn(self, message: str) -> None:
        self.send({"t": "warn", "message": message})

    def _hash(self, message: Hash) -> None:
        paths = message["paths"]
        if len(paths) > CHUNK_ITEMS:
            raise ProtocolError(f"hash: more than {CHUNK_ITEMS} paths in one request")
        self.send({"t": "hashes", "hashes": file_hashes(self.root, [(path, check_path(path)) for path in paths])})


def _on_change(value: Any) -> Optional[list[Any]]:
    """``start``'s onChange rules, checked: None, or [[paths...], run or null, timeout] each."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > ON_CHANGE_MAX:
        raise ProtocolError("start: onChange must be a list of rules")
    for rule in value:
        if not (
            isinstance(rule, list)
            and len(rule) == 3
            and isinstance(rule[0], list)
            and rule[0]
            and all(isinstance(path, str) for path in rule[0])
            and (rule[1] is None or (isinstance(rule[1], str) and rule[1].strip()))
            and type(rule[2]) in (int, float)
            and 0 < rule[2] <= ON_CHANGE_TIMEOUT_MAX
        ):
            raise ProtocolError(f"start: malformed onChange rule {str(rule)[:80]}")
    return value
