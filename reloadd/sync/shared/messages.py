"""Every message of the sync protocol as a type: one TypedDict per kind, told apart by its ``t``.

Messages stay plain dicts at run time (a JSON object in a J frame, protocol.py); these types are
for the type checker at the sites that send and take them. Each message's keys and values are
checked at run time by schema.py (not its direction: each side acts only on the kinds it
expects), whose ``MESSAGES`` table has one row per type here (a unit
test keeps the two alike). ``NotRequired`` keys may be left out; lists whose items the schema
does not check are ``list[Any]``: their taker checks them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional, TypedDict, Union

if TYPE_CHECKING:
    from typing_extensions import NotRequired  # typing's from 3.11; annotations are never evaluated


# -- agent -> laptop --------------------------------------------------------------------------------
class Hello(TypedDict):
    t: Literal["hello"]
    version: int
    reloadd: NotRequired[str]
    root: NotRequired[str]


class Refused(TypedDict):  # the pod forbids syncing (production): no retry
    t: Literal["refused"]
    message: str


class AgentError(TypedDict):  # the agent stops; one line
    t: Literal["error"]
    message: str


class Warn(TypedDict):  # something in the pod is not synced (an unreadable dir...)
    t: Literal["warn"]
    message: str


class Dirs(TypedDict):  # a chunk of [directory, digest] (listing.py), the answer to start
    t: Literal["dirs"]
    items: list[Any]


class DirsEnd(TypedDict):
    t: Literal["dirs-end"]
    count: int


class Manifest(TypedDict):  # a chunk of [path, kind, size, mtime_ns, exec, target]
    t: Literal["manifest"]
    entries: list[Any]


class ManifestEnd(TypedDict):  # the end of the answer to one list request
    t: Literal["manifest-end"]
    count: int


class Hashes(TypedDict):  # one reply per hash request; None: not a readable file
    t: Literal["hashes"]
    hashes: dict[str, Optional[str]]


class Skipped(TypedDict):  # paths not written: a file or symlink in the pod where a directory goes
    t: Literal["skipped"]
    id: int
    items: list[str]


class Failed(TypedDict):  # [path, errno name, strerror]: the batch rolled back
    t: Literal["failed"]
    id: int
    items: list[Any]


class Done(TypedDict):  # the last reply of a batch: committed, or not at all
    t: Literal["done"]
    id: int
    ok: bool


class Outcome(TypedDict):
    """What a committed batch did to the app, as a supervisor said it (notices.live_fields)."""

    what: str
    ms: NotRequired[int]
    status: NotRequired[int]
    lines: NotRequired[list[str]]


class Installed(TypedDict):
    """The dependency install a batch waited for (installs.py)."""

    installed: str  # its commands
    install_ms: int


class Live(TypedDict):  # an Outcome, and the Installed it waited for: sent on its own, after "done"
    t: Literal["live"]
    id: int
    what: str
    ms: NotRequired[int]
    status: NotRequired[int]
    lines: NotRequired[list[str]]
    command: NotRequired[str]  # the install that failed
    installed: NotRequired[str]
    install_ms: NotRequired[int]


class Output(TypedDict):  # a line of a dependency install's output (installs.py)
    t: Literal["output"]
    line: str


class Log(TypedDict):  # a line the app wrote (--logs)
    t: Literal["log"]
    line: str
    stream: str


# -- laptop -> agent --------------------------------------------------------------------------------
class Start(TypedDict):
    t: Literal["start"]
    exclude: list[str]
    onChange: NotRequired[list[Any]]  # checked by the agent (handlers._on_change)
    logs: NotRequired[bool]


class ListDirs(TypedDict):  # the entries of these directories, please (their digests differ)
    t: Literal["list"]
    dirs: list[str]


class Compared(TypedDict):  # the comparison is over: the agent drops its walk (no reply)
    t: Literal["compared"]


class Hash(TypedDict):
    t: Literal["hash"]
    paths: list[str]


class Stamp(TypedDict):  # [path, mtime_ns]: same content, the laptop's mtime (no reply)
    t: Literal["stamp"]
    items: list[Any]


class BeginBatch(TypedDict):
    t: Literal["batch"]
    id: int


class Delete(TypedDict):  # a chunk of the open batch's deletes
    t: Literal["delete"]
    paths: list[str]


class Op(TypedDict):  # the keys an op needs are the agent's to check (handlers.OP_KEYS)
    t: Literal["op"]
    op: str  # "dir", "link" or "file"
    path: str
    size: NotRequired[int]
    exec: NotRequired[bool]
    mtime: NotRequired[int]
    target: NotRequired[str]


class Commit(TypedDict):
    t: Literal["commit"]
    id: int


# -- forwarded ports (channels.py) ------------------------------------------------------------------
class Open(TypedDict):  # laptop -> agent: connect channel ch to 127.0.0.1:port
    t: Literal["open"]
    ch: int
    port: int


class Opened(TypedDict):  # agent -> laptop: the answer to open
    t: Literal["opened"]
    ch: int


class OpenFailed(TypedDict):
    t: Literal["open-failed"]
    ch: int
    message: str


class Close(TypedDict):  # either way: no more bytes from this side (abort: its socket failed, drop the channel)
    t: Literal["close"]
    ch: int
    abort: NotRequired[bool]


class Credit(TypedDict):  # either way: bytes written out, take this many more
    t: Literal["credit"]
    ch: int
    bytes: int


# -- either way -------------------------------------------------------------------------------------
class Ping(TypedDict):  # when idle (heartbeat.py); the laptop's first one says its window in seconds
    t: Literal["ping"]
    window: NotRequired[float]


ChannelMessage = Union[Open, Opened, OpenFailed, Close, Credit]
Reply = Union[Hello, Refused, AgentError, Warn, Dirs, DirsEnd, Manifest, ManifestEnd, Hashes, Skipped, Failed, Done]
Notice = Union[Live, Output, Log]  # what the agent says on its own, at any time, not as an answer
FromAgent = Union[Reply, Notice]
FromLaptop = Union[Start, ListDirs, Compared, Hash, Stamp, BeginBatch, Delete, Op, Commit]
