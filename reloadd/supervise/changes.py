"""File changes and what they lead to: bursts, synced batches, soft reloads and config reloads.

The watcher thread reports changes (``_report``); the loop groups them into bursts and, once
a burst closes, decides: reload the config, hand the files to the app (hot), wait for
``--delay``, or restart. A synced batch (host/control.py) restarts once for all of it.
"""

from __future__ import annotations

import signal
from typing import Optional

from ..errors import ReloaddError
from ..host.watch.watcher import WatchReport
from ..output import out, plural
from ..setup.plan import Plan
from ..setup.shapes import dump
from .machine import State
from .terminal import TerminalSide


class Changes(TerminalSide):
    # -- changes and synced batches ---------------------------------------------------------
    def handle_changes(self) -> None:
        now = self.system.now()
        self._take_reports(now)
        if self.control is not None and self.control.holding:
            return  # a synced batch is being renamed into place: its commit restarts once for all of it
        if self.state is State.RUNNING and self._may_stop_early(self.burst.paths):
            self.restart("files changed", sorted(self.burst.paths))
        if not self.burst.ready(now):
            return
        paths, first = self.burst.take()
        self._mark_group(now, first)
        self.on_burst(paths)

    def _take_reports(self, now: float) -> None:
        while self.incoming:
            report = self.incoming.popleft()
            self.burst.add(self.echoes.new_changes(set(report.paths)), now, report.busy, report.settle)

    def _mark_group(self, now: float, first: Optional[float]) -> None:
        """The restart's first marks: when its first change came (``first``, on the loop's clock) and now."""
        wall = self.system.wall_time()
        self.timing.first_change = wall - (now - first) if first is not None else wall
        self.timing.group_closed = wall

    def handle_control(self) -> None:
        """A synced batch is complete: restart once now, for it and whatever the watcher already held."""
        if self.control is None:
            return
        batches = self.control.take_batches()
        stamped = self.control.take_stamped()
        if stamped:  # only mtimes changed: remember them as echoes, and drop what the watcher already held
            self.echoes.remember(stamped)
            self._take_reports(self.system.now())
            self.burst.drop(set(stamped))
            out.detail(f"sync gave {plural(len(stamped), 'file')} the laptop's mtime: no restart")
        kept = self.control.take_kept()
        if kept:  # written, but their dependency install failed: the app keeps running the old code
            self.echoes.remember(kept)
            self._take_reports(self.system.now())
            self.burst.drop(set(kept))
            out.warn(f"a synced dependency install failed: keeping the running app ({plural(len(kept), 'file')} held)")
        for batch in batches:
            self.echoes.remember(batch.paths)
            paths = {p for p in batch.paths if p in self.config.watched or self.rules.matches(p)}
            out.detail(f"sync batch committed: {plural(len(batch.paths), 'path')}, {len(paths)} watched")
            if batch.fresh:
                self.next.fresh = True  # dependencies were installed: the preloaded ones are stale
                self.warm.discard("dependencies were installed")
            if not paths and not batch.fresh:
                self.tell([(batch, {"what": "unchanged"})])
            else:
                now = self.system.now()
                self.feedback.committed(batch, now)
                self._take_reports(now)
                held, first = self.burst.take()
                self._mark_group(now, first if held else None)
                self.on_burst(sorted(paths.union(held)), "dependencies installed" if batch.fresh else "files changed")

    def _may_stop_early(self, paths: set[str]) -> bool:
        """Stopping the old tree may begin with a burst's first change, overlapping the quiet
        window (the next generation still waits for the burst to close), unless the whole
        burst is needed to decide: a config file in it, a soft-reload path, or a delay."""
        return bool(paths) and not self.delay.seconds and not self.soft.enabled and not self.config.watched & paths

    def on_burst(self, paths: list[str], reason: str = "files changed") -> None:
        for path in paths:
            out.detail(f"changed: {self.plan.relative(path)}")
        if self.config.files.intersection(paths):
            self.reload_config()
        elif self._reloaded_new_config(paths):
            pass  # a config file that was not read before is now: reloaded, not restarted
        elif self.state is State.RUNNING and self.soft.applies(paths):
            self.soft_reload(paths)
        elif self.delay.seconds > 0:
            out.detail(f"delaying restart for {self.plan.settings.delay:g}ms")
            self.delay.add(paths, self.system.now())
        else:
            self.restart(reason, paths)

    def soft_reload(self, paths: list[str]) -> None:
        assert self.tree is not None
        self.soft.hand_over(paths)
        self.tell(self.feedback.reloaded())
        name = signal.Signals(self.soft.signal).name
        out.status(f"hot reload: {plural(len(paths), 'file')} changed, sending {name} to pid {self.tree.pid}")
        self.system.send(self.tree.pid, self.soft.signal)

    # -- the watcher and config reloads -----------------------------------------------------
    def _start_watcher(self) -> None:
        settings = self.plan.settings
        config = self.plan.files + self.plan.candidates  # watched whatever the rules say
        self.watcher = self.system.watch(
            self.rules, settings.legacy_watch, settings.polling_interval, self._report, config
        )

    def _report(self, report: WatchReport) -> None:
        """Called in the watcher thread: record and wake the loop."""
        self.incoming.append(report)
        self.system.wake()

    def _replan(self) -> Optional[Plan]:
        """The plan the config files give now; None (said why) when they cannot give one."""
        if self.replan is None:
            return None
        try:
            return self.replan()
        except ReloaddError as exc:
            out.error(f"config not reloaded: {exc.message}; keeping the running config")
            return None

    def _reloaded_new_config(self, paths: list[str]) -> bool:
        """A config file not in use changed (a nodemon.json synced into a pod after reloadd started,
        a package.json that gained nodemonConfig): reload if it is read now. True when the burst
        is handled so (reloaded, or said why not), False for an ordinary change."""
        if self.replan is None or not self.config.candidates.intersection(paths):
            return False
        plan = self._replan()
        if plan is None:
            return True  # said why; the running config and app stay
        if {str(path) for path in plan.files} == self.config.files:
            return False  # still not read (a package.json without nodemonConfig)
        self.reload_config(plan)
        return True

    def reload_config(self, plan: Optional[Plan] = None) -> None:
        """Build the whole new plan first: a reload that would fail leaves the running app alone."""
        if plan is None:
            plan = self._replan()
        if plan is None:
            return
        old = dump(self.plan.settings)
        changed = sorted(k for k, v in dump(plan.settings).items() if old.get(k) != v)
        out.status(f"config reloaded: {', '.join(changed) or 'no setting changed'}")
        if self.watcher:
            self.watcher.stop()
            self.watcher = None
            self.burst.busy = False  # the old watcher's last word; the new one reports afresh
        was_reading = self.stdin.reads
        self.warm.discard("config reloaded")
        self._apply(plan)
        if self.watching:
            self._start_watcher()
        if self.stdin.reads != was_reading:
            self._switch_stdin()
        self.hooks.fire("config:update", changed=[str(p) for p in plan.files])
        self.restart("config changed", [])
