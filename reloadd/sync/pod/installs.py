"""Dependency changes in the pod: a batch that changes package.json or a lockfile installs before the restart.

``node_modules`` is never synced (it was built for the pod), so a dependency added on the laptop
would crash the pod's app with "Cannot find module". When a committed batch changes a path of
an ``onChange`` rule (by default: the project's ``package.json`` and lockfiles), the agent runs
the rule's command in the synced directory, as the agent's user, with a timeout, and passes its
output on to the laptop as ``output`` messages (never mixed with the app's). Meanwhile the
supervisor keeps holding its restarts (host/control_wire.py ``hold``); then:
  - the command succeeded: the batch is committed to the supervisor as ``fresh`` (nothing the
    warm process preloaded may be kept: those modules are stale) and the app restarts once;
  - it failed or timed out: the supervisor is told to keep the running app (``keep``), the
    laptop gets the command's error lines (or its last ones) and exit status, and every later
    batch runs it again first, whatever it changes, until it succeeds: a failed ``npm ci`` may
    have emptied ``node_modules``, and no restart may land on what it left.
A command that has not succeeded since its paths changed is owed, and the debt outlives the
session: it is written down (in the private control directory, per synced directory) before
the command starts and struck off when it succeeds, and the next session runs it as soon as
its start's walk is over, even with nothing to send. A dead link in the middle of an ``npm ci``
is then repaired by the reconnection, not by the next dependency change.
Batches committed while a command runs join it: their files are in place at once, and they
are committed to the supervisor together when it is over (one restart), so an install is
never raced by a restart. A session that ends during a command (the laptop stopped, a dead
link) ends the command's whole process group and keeps the running app, as for a failure.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ...host.control_wire import private_dir
from ..shared.excludes import excluder
from ..shared.messages import Installed, Live, Notice
from .announce import Announcement

DEPENDENCY_FILES = ("package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml")
LOCKFILE_COMMANDS = (  # the first lockfile present decides, as each tool's docs recommend for CI
    ("package-lock.json", "npm ci"),
    ("npm-shrinkwrap.json", "npm ci"),
    ("yarn.lock", "yarn install --frozen-lockfile"),
    ("pnpm-lock.yaml", "pnpm install --frozen-lockfile"),
)
NO_LOCKFILE_COMMAND = "npm install"
DEFAULT_TIMEOUT = 600.0  # seconds; as settings.DEFAULT_ON_CHANGE_TIMEOUT (the agent imports no config)
HOLD_SLACK = 30.0  # seconds the supervisor holds beyond the commands' timeouts
TERM_GRACE = 5.0  # seconds a timed-out command's process group gets after SIGTERM, before SIGKILL
TAIL_LINES = 20  # the command's last lines kept
SHOWN_LINES = 10  # its first error lines (or else its last lines), for the laptop when it fails
# npm ("npm error ...", "npm ERR! ..."), yarn ("error ..."), pnpm ("ERR_PNPM_..."): the lines that say
# why, which a usage text printed after them would push out of the last lines.
ERROR_LINE = re.compile(r"\berror\b|\bERR!|\bERR_", re.IGNORECASE)
LINE_MAX = 1000  # characters of one output line passed on
READ_CHUNK = 65536
SHELL = "/bin/sh"
MS = 1000

Send = Callable[[Notice], None]


@dataclass(frozen=True)
class Rule:
    paths: tuple[str, ...]  # globs relative to the synced directory, as sync.exclude's
    run: Optional[str]  # None: chosen by the lockfile when it runs
    timeout: float = DEFAULT_TIMEOUT

    def command(self, root: str) -> str:
        if self.run is not None:
            return self.run
        for lockfile, command in LOCKFILE_COMMANDS:
            if os.path.isfile(os.path.join(root, lockfile)):
                return command
        return NO_LOCKFILE_COMMAND


DEFAULT_RULES = (Rule(tuple(f"./{name}" for name in DEPENDENCY_FILES), None),)  # the project's own, at the top


def rules_to_wire(rules: Iterable[Rule]) -> list[list[Any]]:
    return [[list(rule.paths), rule.run, rule.timeout] for rule in rules]


def rules_from_wire(items: Optional[list[Any]]) -> tuple[Rule, ...]:
    """The laptop's ``onChange`` rules ([paths, run, timeout] each); None: the default rule."""
    if items is None:
        return DEFAULT_RULES
    return tuple(Rule(tuple(paths), run, float(timeout)) for paths, run, timeout in items)


def matching(rules: Iterable[Rule], root: str, changed: Iterable[str]) -> list[Rule]:
    """The rules with a path among ``changed`` (relative to ``root``), in their order."""
    changed = list(changed)
    found = []
    for rule in rules:
        matches = excluder(root, list(rule.paths))
        if any(matches(path, False) for path in changed):
            found.append(rule)
    return found


@dataclass
class _Batch:
    ident: int
    announcement: Announcement
    changed: list[str]  # absolute paths, as the supervisor takes them
    relative: list[str]


@dataclass
class Ran:
    command: str
    status: Optional[int]  # None: killed at its timeout
    tail: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Installer:
    """At most one install at a time, in a thread; batches committed meanwhile wait for it."""

    def __init__(
        self,
        root: str,
        send: Callable[[Any], None],
        pass_on: Callable[[int, Announcement, list[str], Optional[Installed]], None],
        owed: Optional[Path] = None,
    ) -> None:
        self.root = root
        self.owed = owed  # where the commands not yet succeeded are written down (None: not kept)
        self.resumed = False  # the record was read (once per session)
        self.send: Send = send  # Notices.say: a dead link is the main loop's to find, the install still ends
        self.pass_on = pass_on  # commits a batch to the supervisor and forwards the outcome (notices.py)
        self.rules: tuple[Rule, ...] = DEFAULT_RULES
        self.lock = threading.Lock()
        self.waiting: list[_Batch] = []
        self.again: set[Rule] = set()  # rules whose paths changed again while a command ran
        self.failed: list[Rule] = []  # the rules of the last run, if it failed: every batch runs them again
        self.thread: Optional[threading.Thread] = None
        self.proc: Optional[subprocess.Popen[bytes]] = None  # the command running now
        self.stopping = False

    def take(self, ident: int, announcement: Announcement, changed: list[str], relative: list[str]) -> bool:
        """A committed batch: True if it waits for an install (one starts if its paths need it)."""
        batch = _Batch(ident, announcement, changed, relative)
        with self.lock:
            if self.thread is not None:
                self.waiting.append(batch)
                self.again.update(matching(self.rules, self.root, relative))
                announcement.hold(self._hold(self.rules))
                return True
            wanted = set(matching(self.rules, self.root, relative)) | set(self.failed)
            rules = [rule for rule in self.rules if rule in wanted]
            if not rules:
                return False
            self.waiting.append(batch)
            announcement.hold(self._hold(rules))
            self.thread = threading.Thread(target=self._work, args=(rules,), name="install", daemon=True)
            self.thread.start()
            return True

    def resume(self) -> bool:
        """The session begins with the current rules: True when an earlier session owed a command
        (then the next ``take`` runs it, with or without changed paths). Only the session's first
        start asks: a later one (a .gitignore changed) may find this session's own command running."""
        if self.resumed:
            return False
        self.resumed = True
        wanted = [rule for rule in self._read_owed() if rule in self.rules]
        with self.lock:
            self.failed = wanted
        if wanted:
            commands = ", ".join(rule.command(self.root) for rule in wanted)
            self.send({"t": "output", "line": f"{commands} did not finish in an earlier session: running it again"})
        return bool(wanted)

    def _read_owed(self) -> tuple[Rule, ...]:
        if self.owed is None:
            return ()
        try:
            items = json.loads(self.owed.read_text())
            return rules_from_wire(items) if isinstance(items, list) else ()
        except (OSError, ValueError, TypeError):
            return ()  # none written (or unreadable): nothing is owed

    def _write_owed(self, rules: list[Rule]) -> None:
        """Before a command runs (``rules``), and once it succeeded (``[]``)."""
        if self.owed is None:
            return
        try:
            if not rules:
                self.owed.unlink(missing_ok=True)
            elif private_dir(self.owed.parent, create=True) is None:
                self.owed.write_text(json.dumps(rules_to_wire(rules)))
        except OSError:
            pass  # not kept: a later dependency change still runs it

    def stop(self) -> None:
        """The session ends: end a running command's whole group (no process is left behind) and wait
        until the supervisor has been told to keep the running app."""
        with self.lock:
            self.stopping = True
            proc, thread = self.proc, self.thread
        if proc is not None:
            _end_group(proc)
        if thread is not None:
            thread.join(TERM_GRACE * 2)

    def _hold(self, rules: Iterable[Rule]) -> float:
        return sum(rule.timeout for rule in rules) + HOLD_SLACK

    def _work(self, rules: list[Rule]) -> None:
        ran: list[Ran] = []
        while True:
            self._write_owed(rules)
            for rule in rules:
                ran.append(self._run(rule))
                if ran[-1].status != 0:
                    self._failed(ran[-1], rules)
                    return
            with self.lock:
                # A batch that came meanwhile changed a rule's paths again: run it again, in order.
                rules = [rule for rule in self.rules if rule in self.again]
                self.again = set()
                if not rules:
                    self._write_owed([])  # under the lock: a command that starts next writes its own
                    batches, self.waiting, self.thread, self.failed = self.waiting, [], None, []
                    break
        installed: Installed = {
            "installed": ", ".join(r.command for r in ran),
            "install_ms": round(sum(r.seconds for r in ran) * MS),
        }
        for batch in batches:
            self.pass_on(batch.ident, batch.announcement, batch.changed, installed)

    def _failed(self, ran: Ran, rules: list[Rule]) -> None:
        with self.lock:
            batches, self.waiting, self.thread, self.failed = self.waiting, [], None, rules
        for batch in batches:
            batch.announcement.keep(batch.changed)
            message: Live = {"t": "live", "id": batch.ident, "what": "install-failed", "command": ran.command}
            message["lines"] = ran.tail
            if ran.status is not None:
                message["status"] = ran.status
            self.send(message)

    def _run(self, rule: Rule) -> Ran:
        command = rule.command(self.root)
        self.send({"t": "output", "line": f"running {command}"})
        started = time.monotonic()
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        errors: list[str] = []
        try:
            proc = subprocess.Popen(
                [SHELL, "-c", command],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a timeout ends the whole npm tree
            )
        except OSError as exc:
            return Ran(command, 127, [f"{SHELL}: {exc.strerror}"])
        with self.lock:
            self.proc = proc
            stopping = self.stopping
        if stopping:
            _end_group(proc)
        assert proc.stdout is not None
        status = self._stream(proc, proc.stdout.fileno(), started + rule.timeout, tail, errors)
        proc.stdout.close()
        with self.lock:
            self.proc = None
        if status is None:
            tail.append(f"killed after {rule.timeout:g} s (sync.onChange timeout)")
        return Ran(command, status, errors[:SHOWN_LINES] or list(tail)[-SHOWN_LINES:], time.monotonic() - started)

    def _stream(
        self, proc: subprocess.Popen[bytes], fd: int, deadline: float, tail: deque[str], errors: list[str]
    ) -> Optional[int]:
        """Pass the command's lines on until it ends (its status) or its time is up (None)."""
        partial = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _end_group(proc)
                return None
            if not select.select([fd], [], [], left)[0]:
                continue
            data = os.read(fd, READ_CHUNK)
            if not data:
                break
            *lines, partial = (partial + data).split(b"\n")
            for raw in lines:
                self._line(raw, tail, errors)
        if partial:
            self._line(partial, tail, errors)
        try:
            return proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _end_group(proc)
            return None

    def _line(self, raw: bytes, tail: deque[str], errors: list[str]) -> None:
        line = raw.decode(errors="replace").rstrip()[:LINE_MAX]
        if line:
            tail.append(line)
            if ERROR_LINE.search(line) and len(errors) < SHOWN_LINES:
                errors.append(line)
            self.send({"t": "output", "line": line})


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
