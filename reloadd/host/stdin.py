"""reloadd's stdin, read for ``rs``, and the pipe the rest goes to, which becomes the app's stdin.

Reading happens only where stdin can carry a command (a terminal, a pipe or a socket); a pod
without stdin has /dev/null, and the app then shares reloadd's. What the bytes mean is decided
by the supervisor's console (supervise/console.py).
"""

from __future__ import annotations

import os
import stat
from typing import Optional

from ..output import out

STDIN_CHUNK = 65536


def stdin_is_interactive(fd: int = 0) -> bool:
    """A terminal, pipe or socket can carry `rs`; /dev/null or a file (a pod without stdin) cannot."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def read_input(fd: int = 0) -> Optional[bytes]:
    """What is there to read now: bytes, b"" at end of input, None if nothing after all."""
    try:
        return os.read(fd, STDIN_CHUNK)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""  # the terminal went away: as good as the end of input


class AppStdin:
    """The pipe reloadd feeds to the app's stdin while it reads its own stdin for ``rs``."""

    def __init__(self) -> None:
        self.write_end: Optional[int] = None
        self.source_open = True  # reloadd's own stdin has not ended

    def open_for_child(self) -> int:
        """A new pipe for the next generation; returns the end that becomes its stdin."""
        read_end, write_end = os.pipe()
        self.adopt(write_end)
        return read_end

    def adopt(self, write_end: Optional[int]) -> None:
        """A pipe's write end (a new one, or the warm process's stdin) becomes the one reloadd feeds."""
        if write_end is None:
            return
        self.close()
        if self.source_open:
            os.set_blocking(write_end, False)
            self.write_end = write_end
        else:
            os.close(write_end)  # our stdin already ended: so does the app's

    def forward(self, data: bytes) -> None:
        if self.write_end is None:
            return
        try:
            os.write(self.write_end, data)
        except BlockingIOError:
            out.detail("the app is not reading its stdin; input dropped")
        except BrokenPipeError:
            self.close()

    def source_ended(self) -> None:
        self.source_open = False
        self.close()

    def close(self) -> None:
        if self.write_end is not None:
            os.close(self.write_end)
            self.write_end = None
