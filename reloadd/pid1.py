"""PID-1 duties: record signals, reap every exited process, subreaper, terminal handoff.

In a container reloadd is PID 1: the kernel gives it no default signal actions and re-parents
every orphan to it. On a laptop it makes itself a child subreaper so the same holds there.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import os
import signal
from typing import Optional

from .output import out

# Signals reloadd acts on. Handlers only record; the supervisor loop acts (see Supervisor).
STOP_SIGNALS = (
    signal.SIGTERM,  # docker stop / kubelet: stop gracefully
    signal.SIGINT,  # Ctrl-C on a terminal
    signal.SIGQUIT,  # Ctrl-\ ; forwarded so node can print its report if it wants
)
RESTART_SIGNAL = signal.SIGHUP  # `kill -HUP 1` restarts the app (nodemon #1438); forwarded in --no-watch
FORWARDED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)  # straight to the child's process group
HANDLED_SIGNALS = (*STOP_SIGNALS, RESTART_SIGNAL, *FORWARDED_SIGNALS, signal.SIGCHLD)

# Signals whose disposition reloadd changes and a spawned program must get back at their default:
# Python ignores SIGPIPE and SIGXFSZ, and reloadd ignores the terminal job-control ones.
RESET_IN_CHILD = (*HANDLED_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTTOU, signal.SIGTTIN, signal.SIGTSTP)

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


class SignalInbox:
    """Signal handlers append to a queue and wake the loop through a pipe; nothing else."""

    def __init__(self) -> None:
        self.pending: collections.deque[int] = collections.deque()
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def install(self) -> None:
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._record)
        # reloadd hands the terminal to the child's group; as a background process it must not
        # be stopped when it later takes the terminal back (tcsetpgrp from the background).
        for sig in (signal.SIGTTOU, signal.SIGTTIN):
            signal.signal(sig, signal.SIG_IGN)
        signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)

    def _record(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)

    def drain(self) -> list[int]:
        """Empty the wake-up pipe and return the signals received since the last call, in order."""
        try:
            while os.read(self.read_fd, 512):
                pass
        except BlockingIOError:
            pass
        taken = []
        while self.pending:
            taken.append(self.pending.popleft())
        return taken

    def wake(self) -> None:
        """Wake the loop from another thread (the watcher) without a signal."""
        try:
            os.write(self.write_fd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the loop is going to wake anyway


def reap() -> list[tuple[int, int]]:
    """Collect every exited child: the app, hooks and adopted orphans.

    This is the only place in reloadd that calls waitpid: a second waiter (Popen.wait,
    asyncio's child watcher) would race it for the app's exit status.

    Returns:
        (pid, wait status) for each process reaped.
    """
    reaped = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        reaped.append((pid, status))
    return reaped


def become_subreaper() -> bool:
    """Adopt orphaned descendants, as PID 1 does, so their zombies can be reaped. PID 1 needs nothing."""
    if os.getpid() == 1:
        return True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
            return True
        reason = os.strerror(ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        reason = str(exc)
    out.warn(
        f"cannot become a child subreaper ({reason}): orphaned processes will not be reaped by reloadd; "
        "run it as PID 1 (the container entrypoint) or under an init such as tini"
    )
    return False


class Terminal:
    """Hands the controlling terminal to the app's process group, as tini does, and takes it back."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.own_pgrp = os.getpgrp()
        self.usable = self._is_our_terminal()

    def _is_our_terminal(self) -> bool:
        try:
            return os.isatty(self.fd) and os.tcgetpgrp(self.fd) > 0
        except OSError:
            return False

    def give_to(self, pgid: int) -> bool:
        # tini does this in the child before exec; posix_spawn cannot, so a key typed in the
        # few microseconds between spawn and here still reaches reloadd (which forwards it).
        return self._set(pgid)

    def take_back(self) -> None:
        self._set(self.own_pgrp)

    def _set(self, pgid: int) -> bool:
        if not self.usable:
            return False
        try:
            os.tcsetpgrp(self.fd, pgid)
            return True
        except OSError as exc:
            # ENOTTY/ENXIO: no terminal after all; EPERM/ESRCH: the group is gone. Both are fine.
            if exc.errno not in (errno.ENOTTY, errno.ENXIO, errno.EPERM, errno.ESRCH, errno.EINVAL):
                out.detail(f"cannot hand over the terminal: {exc}")
            return False


def foreground_group(fd: int = 0) -> Optional[int]:
    try:
        return os.tcgetpgrp(fd)
    except OSError:
        return None
