"""The warm process: the next generation's node, started before it is needed.

While the app runs, reloadd keeps one more ``node`` started with the app's own command line,
environment, working directory and stdin arrangement; only its NODE_OPTIONS gains
``--require warm_boot.cjs``, which that script removes again before the app can see it. The
script requires the packages the previous generation's own code required (under
``node_modules`` only: the app's own files are never preloaded) and waits. On a restart, once the
old tree is gone, reloadd says "go": the script returns and node runs the entry point itself, so
stack traces, ``ps``, the inspector and ``require.main`` are those of a plain ``node server.js``.

The supervisor calls: ``take`` instead of spawning, ``prepare`` after a start (``tick`` spawns
it once the app has booted and no burst is open; ``deadline`` says when), ``reaped`` from its
single reaper, ``pids`` to keep the waiting process out of the app's tree, ``discard``/``close``
on config reload and exit, and ``handle_reports`` when a report pipe is readable (it may return
a reason to restart once with nothing preloaded). ``take`` returns None whenever a cold start
is the safe choice, and says why on a ``-V`` line; the loop does the rest.

This module is that interface: when to spawn, order, adopt or discard a warm process. Whether a
command can start warm is launch.py's, what may be preloaded preload.py's, and one
process with its phases and pipes process.py's.
"""

from __future__ import annotations

import selectors
import time
from dataclasses import dataclass
from typing import Callable, Optional, Union

from ...errors import ReloaddError, exit_status
from ...output import out, plural
from .launch import GATE, Launch, launch_difference
from .preload import fingerprint, package_name, preload_list, stale_reason
from .process import WAITING, Channel, Phase, WarmProcess, start

PREPARE_AFTER = 0.05  # seconds after a start before the next warm process is spawned: the app boots first
REPORT_WAIT = 2.0  # ...or until the new generation reported what it required, at most this long


@dataclass
class Taken:
    """A warm process that now runs the entry point."""

    pid: int
    stdin_write: Optional[int]  # write end of the app's stdin pipe, when reloadd feeds it
    preloaded: int


class Warm:
    """At most one waiting warm process, and the report channel of the generation it follows."""

    def __init__(self, selector: selectors.BaseSelector, clock: Callable[[], float] = time.monotonic) -> None:
        self.selector = selector
        # Durations and deadlines: monotonic, the clock of the loop's ``now`` (System.now) that tick() gets.
        self.clock = clock
        self.enabled = True
        self.waiting: Optional[WarmProcess] = None  # WAITING, or DIED until take() or discard() forgets it
        self.active: Optional[Channel] = None  # the running generation's report pipe, until it reports
        self.loaded: list[str] = []  # packages the last generation's own code required
        self.never: dict[str, str] = {}  # file or package -> why it is never preloaded again
        self.fresh_reason: Optional[str] = None  # a decision for the loop: restart with nothing preloaded
        self.discarded: set[int] = set()  # killed, not yet reaped
        self.next_launch: Optional[Launch] = None  # what prepare() asked for, spawned by tick()
        self.prepare_at = 0.0
        self.output_fds: tuple[Optional[int], Optional[int]] = (None, None)  # app_output.py: None is reloadd's
        # The last warm process ran an ES module entry on a node that takes --import in NODE_OPTIONS:
        # the next one gets the gate.
        self.gate = False

    # -- the interface the supervisor calls ------------------------------------------------------
    def configure(self, enabled: bool) -> None:
        """``warm``/``--no-warm``: off discards the waiting process."""
        self.enabled = enabled
        if not enabled:
            self.discard("warm restarts are off")

    def pids(self) -> set[int]:
        """The waiting process: not part of the app's tree (the stop ladder must leave it alone)."""
        return {self.waiting.pid} if self.waiting and self.waiting.phase in WAITING else set()

    def prepare(self, launch: Union[Launch, str]) -> None:
        """Ask for the next warm process; tick() starts it once the new generation has booted."""
        if not self.enabled or isinstance(launch, str) or self.waiting is not None:
            self.next_launch = None
            return
        self.next_launch = launch
        self.prepare_at = self.clock() + PREPARE_AFTER

    def deadline(self) -> Optional[float]:
        """When tick() has something to do (monotonic seconds), for the loop's wait."""
        if self.next_launch is None:
            return None
        return self.prepare_at + (REPORT_WAIT if self.active is not None else 0.0)

    def tick(self, now: float, busy: bool) -> None:
        """Spawn the asked-for warm process: not while changes are still arriving (``busy``): a
        booting node would compete with the tool writing them and split its burst."""
        due = self.deadline()
        if due is None or busy or now < due:
            return
        launch, self.next_launch = self.next_launch, None
        assert launch is not None
        try:
            self.waiting = self._spawn(launch)
        except (OSError, ReloaddError) as exc:
            out.detail(f"warm process not started: {exc}")
            return
        self._order()

    def take(self, launch: Union[Launch, str], changed: list[str], fresh: bool) -> Optional[Taken]:
        """Activate a compatible warm process; None means: start cold (a -V line says why).

        Args:
            launch: what would be started now (or why it must start cold).
            changed: the files whose change causes this start.
            fresh: nothing may be preloaded (a manual restart, a config change).
        """
        if not self.enabled:
            out.detail("cold start: warm restarts are off")
            return None
        if isinstance(launch, str):
            self.discard(launch)
            out.detail(f"cold start: {launch}")
            return None
        self.next_launch = None
        waiting = self.waiting
        if waiting is not None and waiting.phase is Phase.DIED:
            self._forget()
            out.detail(f"cold start: the warm process died (status {waiting.status})")
            return None
        reason = self._refusal(waiting, launch, changed, fresh) if waiting is not None else None
        if reason:
            self.discard(reason)
            out.detail(f"starting with nothing preloaded: {reason}")
        if self.waiting is None:
            try:
                self.waiting = self._spawn(launch)  # activated at once: nothing to preload yet
            except (OSError, ReloaddError) as exc:
                out.detail(f"cold start: warm process not started: {exc}")
                return None
            self._order(preload=[])
        return self._go()

    def reaped(self, pid: int, status: int) -> bool:
        """The reaper's status for a warm process (True if ``pid`` was one)."""
        if self.waiting and self.waiting.pid == pid:
            self.waiting.status = exit_status(status)
            self.waiting.transition(Phase.DIED)
            self.waiting.channel.close()
            return True
        if pid in self.discarded:
            self.discarded.discard(pid)
            return True
        return False

    def discard(self, reason: str) -> None:
        """Kill the waiting process (config change, exit, incompatible change); the reaper collects it."""
        self.next_launch = None
        # Whatever made it stale (a package.json with another "type", another script) may have
        # changed the entry's kind: the next warm process goes without the gate and tells.
        self.gate = False
        waiting = self.waiting
        if waiting is None:
            return
        if waiting.phase in WAITING:
            out.detail(f"discarding warm process {waiting.pid}: {reason}")
            waiting.kill()
            waiting.transition(Phase.DISCARDED)
            self.discarded.add(waiting.pid)
        self._forget()

    def close(self) -> None:
        """reloadd is exiting: kill the waiting process and stop listening to reports."""
        self.discard("reloadd is exiting")
        if self.active is not None:
            self.active.close()
            self.active = None

    def handle_reports(self) -> Optional[str]:
        """Read what warm processes reported; return a reason to restart with nothing preloaded, or None."""
        if self.active is not None:
            for message in self.active.messages():
                self._on_loaded(message)
            if self.active.closed:
                self.active = None
        if self.waiting is not None and self.waiting.phase in WAITING:
            for message in self.waiting.channel.messages():
                self._on_ready(message)
        reason, self.fresh_reason = self.fresh_reason, None
        return reason

    # -- inside ----------------------------------------------------------------------------------------
    def _refusal(self, waiting: WarmProcess, launch: Launch, changed: list[str], fresh: bool) -> Optional[str]:
        if fresh:
            return "a manual restart or config change"
        stale = stale_reason(changed)
        if stale:
            return stale
        difference = launch_difference(waiting.launch, launch)
        if difference:
            return difference
        ordered = waiting.phase is not Phase.SPAWNED  # take() forgot it if it died
        if ordered and fingerprint(launch.cwd, waiting.preload) != waiting.fingerprint:
            return "packages were installed or changed while the warm process waited"
        return None

    def _spawn(self, launch: Launch) -> WarmProcess:
        gate = self.gate and GATE.is_file()
        return start(launch, gate, self.output_fds, self.selector, self.clock)

    def _order(self, preload: Optional[list[str]] = None) -> None:
        """Write the waiting process's orders: argv, inspector, and what to preload."""
        waiting = self.waiting
        if waiting is None or waiting.phase is not Phase.SPAWNED:
            return
        launch = waiting.launch
        waiting.preload = preload_list(self.loaded, self.never) if preload is None else preload
        waiting.fingerprint = fingerprint(launch.cwd, waiting.preload)
        inspect = {"host": launch.inspect[0], "port": launch.inspect[1]} if launch.inspect else None
        orders: dict[str, object] = {
            "nodeOptions": dict(launch.env).get("NODE_OPTIONS"),  # put back as the app set it (None: unset)
            "inspect": inspect if launch.inspect_flag else None,
            "inspectFlag": launch.inspect_flag,
            "inspectIndex": launch.inspect_index,
            "preload": waiting.preload,
            "root": launch.cwd,
            "gate": waiting.gate,
        }
        if waiting.write(orders):
            waiting.transition(Phase.PRELOADING)

    def _go(self) -> Optional[Taken]:
        waiting = self.waiting
        assert waiting is not None
        # Orders not written yet: the running generation never reported; preload what the one before loaded.
        self._order()
        if waiting.phase is Phase.SPAWNED or not waiting.write({"go": True}):
            waiting.transition(Phase.LOST)
            self._forget()
            out.detail("cold start: the warm process stopped reading its orders")
            return None
        ready = waiting.phase is Phase.READY
        waiting.transition(Phase.ADOPTED)
        self.waiting = None
        waiting.close_control()
        if self.active is not None:
            self.active.close()
        self.active = waiting.channel  # its next report: what the new generation's code required
        count = waiting.preloaded if ready else len(waiting.preload)
        taken = Taken(waiting.pid, waiting.stdin_write, count)
        late = "" if ready or not waiting.preload else " (still preloading: the entry runs when it is done)"
        out.detail(f"warm start: pid {taken.pid}, {plural(count, 'package')} preloaded{late}")
        return taken

    def _on_loaded(self, message: dict[str, object]) -> None:
        loaded = message.get("loaded")
        if isinstance(loaded, list):
            self.loaded = [str(item) for item in loaded]
        if message.get("patched"):
            self.loaded = []
            out.detail("the app changes how modules are loaded: warm processes preload nothing")
        unused = message.get("unused")
        if isinstance(unused, list) and unused:
            names = ", ".join(sorted({package_name(str(item)) for item in unused}))
            self.fresh_reason = f"the new code no longer requires {names}, which was preloaded"
        if self._record_unsafe(message.get("unsafe")):
            self.fresh_reason = "a preloaded package was unsafe to load early"

    def _on_ready(self, message: dict[str, object]) -> None:
        waiting = self.waiting
        if waiting is None or not message.get("ready"):
            return
        if self._record_unsafe(message.get("unsafe")):
            launch = waiting.launch
            self.discard("a preloaded package is unsafe to load early")
            self.prepare(launch)
            return
        waiting.transition(Phase.READY)
        self.gate = message.get("kind") == "esm" and message.get("gateable") is True
        preloaded = message.get("preloaded", 0)
        waiting.preloaded = preloaded if isinstance(preloaded, int) else 0
        took = self.clock() - waiting.started
        packages = plural(waiting.preloaded, "package")
        modules = "an ES module" if waiting.preloaded == 1 else "ES modules"
        wrapped = f" and wrapped as {modules}" if waiting.gate else ""
        out.detail(f"warm process {waiting.pid} ready in {took:.2f}s: {packages} preloaded{wrapped}")

    def _record_unsafe(self, unsafe: object) -> bool:
        """Remember packages that must never be preloaded again; True if there were any."""
        if not isinstance(unsafe, list) or not unsafe:
            return False
        for item in unsafe:
            if isinstance(item, dict):
                name, why = package_name(str(item.get("file"))), str(item.get("reason"))
                self.never[name] = why
                out.detail(f"never preloading {name}: {why}")
        return True

    def _forget(self) -> None:
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.release()
