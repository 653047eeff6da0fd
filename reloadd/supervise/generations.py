"""Starting, stopping and reaping the app's generations, and what follows when one ends.

A restart asked for (changes, `rs`, SIGHUP, a config reload) acts by state: it starts the next
generation at once, or stops the running tree first; the next generation starts only once the
old tree is gone (``on_stopped``). When the app exits by itself, the crash policy (policy.py)
decides what follows.
"""

from __future__ import annotations

import signal
from typing import Optional

from ..errors import ReloaddError, exit_status
from ..host.hot import HOT_FILE_ENV
from ..host.system import Tree
from ..host.warm.launch import launch_for
from ..output import out
from . import policy
from .core import NextStart, SupervisorCore, Timing
from .machine import State


class Generations(SupervisorCore):
    # -- starting ---------------------------------------------------------------------------
    def start(self, why: str) -> None:
        """Start the next generation (the old tree, if any, is gone)."""
        if self.next.old_ports:
            self.system.wait_until_free(self.next.old_ports)
        command = self.plan.command
        env = dict(self.plan.env)
        if self.soft.enabled:
            env[HOT_FILE_ENV] = str(self.soft.file)
        changed, fresh = sorted(self.next.changes), self.next.fresh or not self.next.changes
        self.next = NextStart()
        out.status(f"starting `{command.display}`")
        launch = launch_for(command, env, self.plan.cwd, self.stdin.reads)
        taken = self.warm.take(launch, changed, fresh)
        if taken is not None:
            pid: Optional[int] = taken.pid
            if self.stdin.reads:
                self.stdin.app.adopt(taken.stdin_write)
        else:
            pid = self._spawn_cold(command.argv, env)
        if pid is None:
            return
        self.transition(State.RUNNING, why, tree=self.system.tree(pid, lambda: self.hooks.pids() | self.warm.pids()))
        self.tell(self.feedback.started(self.system.now(), self.output.mark if self.output is not None else 0))
        self.warm.prepare(launch)
        if not self.stdin.reads:
            self.terminal.give_to(pid)
        self._record_timing()
        self.hooks.fire("start", child_pid=pid, filename=command.script or "")

    def _spawn_cold(self, argv: list[str], env: dict[str, str]) -> Optional[int]:
        stdin_fd = self.stdin.app.open_for_child() if self.stdin.reads else None
        try:
            return self.system.spawn(argv, env, stdin_fd, self.output.fds if self.output is not None else (None, None))
        except ReloaddError as exc:
            out.error(exc.message)
            self._exit(exc.exit_code, "the app could not be started")
            return None

    def _record_timing(self) -> None:
        if self.timing.group_closed:
            t = self.timing
            out.record(
                "timing",
                first_change=t.first_change,
                group_closed=t.group_closed,
                stop_begin=t.stop_begin,
                stopped=t.stopped,
                spawned=self.system.wall_time(),
            )
        self.timing = Timing()

    def restart(self, reason: str, changed: list[str]) -> None:
        """A restart was asked for (changes, `rs`, SIGHUP, a config reload): act by state."""
        said = "restarting due to changes..." if changed else f"restarting: {reason}"
        self.next.changes.update(changed)
        self.next.fresh = self.next.fresh or not changed
        if self.state is State.BETWEEN:
            self.start(reason)
        elif self.state in (State.IDLE, State.BACKOFF):
            out.status(said if changed else f"starting: {reason}")
            self.hooks.fire("restart", changed=changed, filename=",".join(changed))  # nodemon: any restart request
            self.start(reason)
        elif self.state is State.RUNNING:
            assert self.tree is not None
            out.status(said)
            self.hooks.fire("restart", child_pid=self.tree.pid, changed=changed, filename=",".join(changed))
            members = self.tree.members()
            self.next.old_ports = self.system.listening_ports(members)
            if self.plan.command.inspect and self.plan.command.inspect[1]:  # port 0: node picked a free one
                self.next.old_ports.add(self.plan.command.inspect[1])
            self.begin_stop(State.RESTARTING, self.plan.settings.restart_signal, reason, members)
        elif self.state is State.CLEANING_UP:
            self.transition(State.RESTARTING, f"{reason} while the app was exiting")
        elif self.state is State.RESTARTING:
            out.detail(f"{reason} while restarting: the next start includes it")

    # -- stopping and reaping ---------------------------------------------------------------
    def handle_reaped(self) -> None:
        for pid, status in self.system.reap():
            self.on_reaped(pid, status)
        self._check_ladder()

    def on_reaped(self, pid: int, status: int) -> None:
        if self.tree and pid == self.tree.pid:
            self.tree.status = status
            self.last_status = exit_status(status)
            if self.state is State.RUNNING:
                mark = self.feedback.mark
                lines = self.output.crash_lines(mark) if self.output is not None and mark is not None else []
                self.tell(self.feedback.ended(self.last_status, lines))
                self.begin_stop(State.CLEANING_UP, signal.SIGTERM, "the app exited; stopping what it left running")
        elif self.warm.reaped(pid, status) or self.hooks.reaped(pid, status):
            pass
        else:
            out.detail(f"reaped orphan {pid} (status {exit_status(status)})")

    def _check_ladder(self) -> None:
        if self.ladder and self.ladder.poll():
            for pid, status in self.system.reap():  # the tree's last zombies (the app among them)
                self.on_reaped(pid, status)
            self.on_stopped()

    def begin_stop(self, then: State, sig: int, reason: str, members: Optional[set[int]] = None) -> None:
        assert self.tree is not None
        self.timing.stop_begin = self.system.wall_time()
        restart = then is State.RESTARTING
        ladder = self.system.stop(self.tree, sig, self.plan.settings.stop_timeout, reason, members, quiet=restart)
        self.transition(then, reason, ladder=ladder)
        self._check_ladder()

    def on_stopped(self) -> None:
        """The tree is gone: go on according to why it was stopped."""
        assert self.tree is not None
        self.timing.stopped = self.system.wall_time()
        tree = self.tree
        status = self.last_status if tree.status is not None else 0
        self.stdin.app.close()
        if self.state is State.EXITING:
            self._exit(status, "the app's tree is gone")
        elif self.state is State.RESTARTING:
            self.hooks.fire("exit", filename=self.plan.settings.signal, exit_code=status)
            if self.burst.first is None:
                self.start("the old tree is gone")
            else:
                self.transition(State.BETWEEN, "the old tree is gone; the burst of changes is still open")
        else:
            if not self.stdin.reads:
                self.terminal.take_back()  # so that Ctrl-C reaches reloadd while no app runs
            self.after_app_exit(tree, status)

    def after_app_exit(self, tree: Tree, status: int) -> None:
        ending = policy.Ending(
            status=status,
            uptime=self.system.now() - tree.started,
            watching=self.watching,
            exitcrash=self.plan.settings.exitcrash,
            restart_on_crash=self.plan.settings.restart_on_crash,
            held_terminal=self.terminal.usable and not self.stdin.reads,
        )
        decision = self.crash_policy.decide(ending)
        if isinstance(decision, policy.ExitWith):
            self._exit(decision.status, decision.reason)
            return
        if isinstance(decision, policy.StartAfter):
            self.transition(State.BACKOFF, decision.message)
            self.backoff_until = self.system.now() + decision.seconds
        else:
            self.transition(State.IDLE, decision.message)
        self.hooks.fire(decision.event, exit_code=status, child_pid=tree.pid if decision.event == "crash" else None)
        (out.status if status == 0 else out.error)(decision.message)
