"""The child process tree: spawning a program, finding every process of its tree, stopping them all.

A restart must not start the next child while anything of the old one still runs: that is
where nodemon's EADDRINUSE and "inspector port 9229 already in use" come from (it waits only
for the direct child). So a tree here is the child's process group, every descendant (also
those that called setsid), and every orphan re-parented to reloadd while it ran.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

from ..errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, ReloaddError
from ..output import exited, out, pids, plural
from .pid1 import RESET_IN_CHILD

START_FAILURE = "failed to start process, "  # nodemon's words for a program that cannot be run
KILL_WAIT = 2.0  # seconds to wait for the kernel to finish SIGKILLed processes before giving up on them
STOP_POLL_INTERVAL = 0.01  # seconds between looks at the tree while it stops (the restart path: keep it short)
SLOW_STOP = 1.0  # seconds: a restart whose old tree took this long says so even without --verbose

Outputs = tuple[Optional[int], Optional[int]]  # a child's stdout and stderr (None: reloadd's own)


class ProcInfo(NamedTuple):
    ppid: int
    pgid: int
    zombie: bool


def process_table() -> dict[int, ProcInfo]:
    """Parent, process group and zombie state of every process, in one pass.

    /proc/PID/stat gives all three in one read; psutil would need a second pass for the group.
    """
    table: dict[int, ProcInfo] = {}
    try:
        entries = os.listdir("/proc")
    except FileNotFoundError:
        return _psutil_table()
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue  # exited while we looked
        fields = data[data.rfind(b")") + 2 :].split()
        zombie = fields[0] in (b"Z", b"X") and not _threads_left(name)
        table[int(name)] = ProcInfo(int(fields[1]), int(fields[2]), zombie)
    return table


def _threads_left(pid: str) -> bool:
    """A thread-group leader shows Z as soon as it exits, while its other threads (node has a
    dozen) still hold its descriptors, listening sockets included; it is gone only when they are."""
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def _psutil_table() -> dict[int, ProcInfo]:
    import psutil  # only without /proc; importing it costs ~10 ms of every start

    table: dict[int, ProcInfo] = {}
    for proc in psutil.process_iter(["ppid", "status"]):
        try:
            table[proc.pid] = ProcInfo(
                proc.info["ppid"], os.getpgid(proc.pid), proc.info["status"] == psutil.STATUS_ZOMBIE
            )
        except (OSError, psutil.Error):
            continue
    return table


def descendants(roots: set[int], table: dict[int, ProcInfo]) -> set[int]:
    """Every process below ``roots`` in ``table`` (not the roots themselves)."""
    children: dict[int, list[int]] = {}
    for pid, info in table.items():
        children.setdefault(info.ppid, []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def resolve_program(program: str, path_env: Optional[str], cwd: Optional[str] = None) -> str:
    """Find ``program`` as execvp would, or raise with sh's and tini's exit statuses (127/126).

    ``cwd``: where a relative ``./prog`` is looked up, if not the current directory (a plan is
    checked before reloadd changes into its working directory)."""
    if "/" in program:
        candidates = [os.path.join(cwd, program) if cwd else program]
    else:
        found = shutil.which(program, path=path_env)
        if found:
            return found
        candidates = [os.path.join(d or ".", program) for d in (path_env or os.defpath).split(os.pathsep)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            raise ReloaddError(f'{START_FAILURE}"{program}" is not executable', EXIT_NOT_EXECUTABLE)
        if os.path.isdir(candidate) and "/" in program:
            raise ReloaddError(f'{START_FAILURE}"{program}" is a directory', EXIT_NOT_EXECUTABLE)
    raise ReloaddError(f'{START_FAILURE}"{program}" exec not found', EXIT_NOT_FOUND)


def spawn(
    argv: list[str],
    env: dict[str, str],
    stdin_fd: Optional[int] = None,
    extra_fds: Sequence[tuple[int, int]] = (),
    stdout_fd: Optional[int] = None,
    stderr_fd: Optional[int] = None,
) -> int:
    """Start ``argv`` in a new process group with default signal dispositions; return its pid.

    posix_spawn rather than subprocess.Popen: a Popen object reaps its own child when it is
    garbage-collected, which would race reloadd's single reaper for the exit status.

    Args:
        argv: program and arguments; the program is looked up in ``env``'s PATH.
        env: the complete environment of the new process.
        stdin_fd: a descriptor to become its stdin, or None to share reloadd's.
        extra_fds: (ours, theirs) descriptors to hand over as well (the warm process's pipes).
        stdout_fd, stderr_fd: descriptors to become its stdout and stderr (app_output.py), or None
            to share reloadd's.
    """
    path = resolve_program(argv[0], env.get("PATH"))
    actions = [] if stdin_fd is None else [(os.POSIX_SPAWN_DUP2, stdin_fd, 0)]
    actions += [(os.POSIX_SPAWN_DUP2, ours, theirs) for ours, theirs in extra_fds]
    for ours, theirs in ((stdout_fd, 1), (stderr_fd, 2)):
        if ours is not None:
            actions.append((os.POSIX_SPAWN_DUP2, ours, theirs))
    try:
        return os.posix_spawn(
            path, argv, env, file_actions=actions, setpgroup=0, setsigdef=RESET_IN_CHILD, setsigmask=()
        )
    except OSError as exc:
        code = EXIT_NOT_FOUND if exc.errno == errno.ENOENT else EXIT_NOT_EXECUTABLE
        raise ReloaddError(f'{START_FAILURE}"{argv[0]}": {exc.strerror}', code) from None


def send(pid: int, sig: int) -> bool:
    """Signal one process; False if it is already gone (or no longer ours)."""
    return _signal(os.kill, pid, sig)


def send_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False if it is already gone (or no longer ours)."""
    return _signal(os.killpg, pgid, sig)


def _signal(kill: Callable[[int, int], None], target: int, sig: int) -> bool:
    # ESRCH/EPERM mean the target is gone, or its number reused by a process not ours: not an error
    try:
        kill(target, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


@dataclass
class ChildTree:
    """One generation of the app: the child reloadd started and everything that came from it."""

    pid: int
    started: float = field(default_factory=time.monotonic)
    status: Optional[int] = None  # wait status once reaped
    exclude: Callable[[], set[int]] = field(default=lambda: set())  # pids that are not ours (hook processes)

    @property
    def pgid(self) -> int:
        return self.pid  # spawned with setpgroup=0: the group id is the child's pid

    def members(self, table: Optional[dict[int, ProcInfo]] = None) -> set[int]:
        """Live processes of this generation (zombies hold no ports and count as gone)."""
        table = table if table is not None else process_table()
        me = os.getpid()
        hooks = self.exclude()
        adopted = {pid for pid, info in table.items() if info.ppid == me and pid not in hooks}
        roots = {pid for pid in (self.pid, *adopted) if pid in table}
        group = {pid for pid, info in table.items() if info.pgid == self.pgid}
        tree = roots | descendants(roots, table) | group
        hook_trees = descendants(hooks, table) | hooks
        live = {pid for pid in tree - hook_trees if not table[pid].zombie and pid != me}
        if self.status is None and self.pid in table:
            live.add(self.pid)  # the app counts until the reaper has its exit status
        return live

    def signal_all(self, sig: int, pids: set[int]) -> None:
        send_group(self.pgid, sig)
        for pid in pids:
            send(pid, sig)


class StopLadder:
    """Stopping a tree: signal -> wait up to stop_timeout -> SIGKILL -> wait, each step logged."""

    def __init__(
        self,
        tree: ChildTree,
        sig: int,
        timeout: float,
        reason: str,
        members: Optional[set[int]] = None,
        quiet: bool = False,
    ) -> None:
        """``quiet``: a restart; say the steps only with --verbose, unless the tree is slow or needs SIGKILL."""
        self.tree = tree
        self.quiet = quiet
        self.sig = sig
        self.timeout = timeout
        self.began = time.monotonic()
        self.deadline = self.began + timeout
        self.killed_at: Optional[float] = None
        self.done = False
        self.signalled = members if members is not None else tree.members()
        name = signal.Signals(sig).name
        if self.signalled:
            # A restart that goes as planned is nodemon's two lines ("restarting due to changes...",
            # "starting ..."); its stop steps are detail. A stop (the container ending) says them.
            (out.detail if quiet else out.info)(
                f"sending {name} to {plural(len(self.signalled), 'process')} ({pids(self.signalled)}): {reason}"
            )
            tree.signal_all(sig, self.signalled)
        self.poll()

    def kill_now(self, reason: str) -> None:
        """A second stop signal during shutdown: do not wait any longer."""
        if not self.done and self.killed_at is None:
            self._kill(self.tree.members(), reason)

    def poll(self) -> bool:
        """Look at the tree once; return True when nothing of it is left (or SIGKILL could not end it)."""
        if self.done:
            return True
        alive = self.tree.members()
        late = alive - self.signalled  # started after our signal (an npm script re-spawning): same treatment
        if late and self.killed_at is None:
            self.signalled |= late
            self.tree.signal_all(self.sig, late)
        now = time.monotonic()
        if not alive:
            self.done = True
            took = now - self.began
            if self.signalled:
                slow = took >= SLOW_STOP or self.killed_at is not None
                say = out.detail if self.quiet and not slow else out.info
                say(f"{exited(len(self.signalled))} after {took:.2f}s")
        elif self.killed_at is None and now >= self.deadline:
            self._kill(alive, f"still running after {self.timeout:g}s stop-timeout")
        elif self.killed_at is not None and now >= self.killed_at + KILL_WAIT:
            out.error(f"{plural(len(alive), 'process')} survived SIGKILL ({pids(alive)}); giving up on them")
            self.done = True
        return self.done

    def _kill(self, alive: set[int], reason: str) -> None:
        out.warn(f"{plural(len(alive), 'process')} {reason}: sending SIGKILL ({pids(alive)})")
        self.killed_at = time.monotonic()
        self.tree.signal_all(signal.SIGKILL, alive)

    def next_check(self) -> float:
        return 0.0 if self.done else STOP_POLL_INTERVAL
