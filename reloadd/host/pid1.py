"""PID-1 duties: record signals, reap every exited process, subreaper, terminal and job control.

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

from ..output import out

# Signals reloadd acts on. Handlers only record; the supervisor loop acts (see Supervisor).
STOP_SIGNALS = (
    signal.SIGTERM,  # docker stop / kubelet: stop gracefully
    signal.SIGINT,  # Ctrl-C on a terminal
    signal.SIGQUIT,  # Ctrl-\ ; forwarded so node can print its report if it wants
)
RESTART_SIGNAL = signal.SIGHUP  # `kill -HUP 1` restarts the app (nodemon #1438); forwarded in --no-watch
# The same SIGHUP also comes from a terminal that hangs up (a closed window, a dropped ssh): the kernel
# sends it to the session leader and bash passes it to its jobs. Then reloadd stops the app's tree
# with this signal and exits, as on Ctrl-C. Not SIGHUP itself: apps use SIGHUP to reload (`hot`).
HANGUP_STOP_SIGNAL = signal.SIGTERM
SUSPEND_SIGNAL = signal.SIGTSTP  # Ctrl-Z: the terminal sends it to its foreground group
CONTINUE_SIGNAL = signal.SIGCONT  # `fg` / `bg`: the shell continues reloadd's group
FORWARDED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)  # straight to the child's process group
HANDLED_SIGNALS = (*STOP_SIGNALS, RESTART_SIGNAL, *FORWARDED_SIGNALS, SUSPEND_SIGNAL, CONTINUE_SIGNAL, signal.SIGCHLD)

# Signals whose disposition reloadd changes and a spawned program must get back at their default:
# Python ignores SIGPIPE and SIGXFSZ, and reloadd ignores the terminal job-control ones.
RESET_IN_CHILD = (*HANDLED_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTTOU, signal.SIGTTIN)

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
CONTROLLING_TERMINAL = "/dev/tty"  # opens the calling process's controlling terminal, whatever fd 0 is


def wake_pipe() -> tuple[int, int]:
    """A non-blocking, close-on-exec pipe. macOS has no pipe2; os.pipe's ends are close-on-exec already."""
    if hasattr(os, "pipe2"):
        return os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    read_fd, write_fd = os.pipe()
    for fd in (read_fd, write_fd):
        os.set_blocking(fd, False)
    return read_fd, write_fd


class SignalInbox:
    """Signal handlers append to a queue and wake the loop through a pipe; nothing else."""

    def __init__(self) -> None:
        self.pending: collections.deque[int] = collections.deque()
        self.read_fd, self.write_fd = wake_pipe()

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
    """The controlling terminal: who is in front, handing it to the app's group and back, hang-ups.

    Shells with job control put each job in its own process group and give the terminal to the
    foreground one. reloadd may hand the terminal on to the app's group (with `-I`), but only
    while its own group is the one in front: a job started with `&` that took the terminal would
    leave the shell unable to read it, and the shell would exit.
    """

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.own_pgrp = os.getpgrp()
        self.usable = self._is_our_terminal()
        self.controlling = has_controlling_terminal()  # at startup; a hang-up takes it away
        # `nohup reloadd ... &` ignores SIGHUP before reloadd installs its handler: the user wants the
        # app to outlive the terminal, so a hang-up is then neither a stop nor a restart.
        self.nohup = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        self.given_to: Optional[int] = None  # the group reloadd handed the terminal to, until taken back

    def _is_our_terminal(self) -> bool:
        try:
            return os.isatty(self.fd) and os.tcgetpgrp(self.fd) > 0
        except OSError:
            return False

    def in_front(self) -> bool:
        """Whether reloadd's own process group is the terminal's foreground group."""
        return self.usable and foreground_group(self.fd) == self.own_pgrp

    def in_back(self) -> bool:
        """Whether another group (the shell's) holds the terminal: neither reloadd's nor the app's it gave it to."""
        return self.usable and foreground_group(self.fd) not in (self.own_pgrp, self.given_to)

    def hung_up(self) -> bool:
        """Whether a SIGHUP just received means the terminal went away (rather than `kill -HUP`).

        A hang-up detaches every process of the session from the terminal before anyone is
        signalled, so /dev/tty no longer opens; a process that never had one (a container
        without a tty) takes every SIGHUP as a restart request.
        """
        return self.controlling and not has_controlling_terminal()

    def forget(self) -> None:
        """The hang-up was seen and outlived (nohup): from now on a SIGHUP is `kill -HUP`, a restart."""
        self.controlling = False

    def app_suspended(self, pid: int) -> bool:
        """Ctrl-Z typed to an app that holds the terminal stopped it: reloadd must stop too, or the
        shell, which waits for reloadd's group, never gets its terminal back."""
        return self.given_to is not None and foreground_group(self.fd) == self.given_to and is_stopped(pid)

    def can_suspend(self) -> bool:
        """PID 1 cannot stop itself (the kernel drops SIGSTOP sent to a namespace's init), and no shell
        would continue it: Ctrl-Z is ignored there, as it was before reloadd."""
        return os.getpid() != 1

    def give_to(self, pgid: int) -> bool:
        """Hand the terminal to ``pgid`` if reloadd holds it: its own group or the last app's is in front."""
        # tini does this in the child before exec; posix_spawn cannot, so a key typed in the
        # few microseconds between spawn and here still reaches reloadd (which forwards it).
        if not self.usable or foreground_group(self.fd) not in (self.own_pgrp, self.given_to):
            return False  # started with `&`, or suspended: the terminal is the shell's
        if self._set(pgid):
            self.given_to = pgid
            return True
        return False

    def take_back(self) -> None:
        """Take the terminal back from the app's group, if that group still holds it."""
        given, self.given_to = self.given_to, None
        if given is not None and foreground_group(self.fd) == given:
            self._set(self.own_pgrp)

    def _set(self, pgid: int) -> bool:
        if not self.usable:
            return False
        try:
            os.tcsetpgrp(self.fd, pgid)
            return True
        except OSError as exc:
            # ENOTTY/ENXIO/EIO: no terminal after all, or it hung up; EPERM/ESRCH: the group is gone. All fine.
            if exc.errno not in (errno.ENOTTY, errno.ENXIO, errno.EIO, errno.EPERM, errno.ESRCH, errno.EINVAL):
                out.detail(f"cannot hand over the terminal: {exc}")
            return False


def foreground_group(fd: int = 0) -> Optional[int]:
    try:
        return os.tcgetpgrp(fd)
    except OSError:
        return None


def has_controlling_terminal() -> bool:
    """Whether this process has a controlling terminal that has not hung up."""
    try:
        fd = os.open(CONTROLLING_TERMINAL, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False  # ENXIO: none (a container, a daemon) or no longer (hung up)
    os.close(fd)
    return True


def is_stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped by a job-control signal (state T in /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 :].startswith(b"T")
