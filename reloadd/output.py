"""reloadd's own log lines: ``[reloadd] ...`` on stderr, coloured only on a terminal, or JSON lines.

Writing a log line never raises: a terminal that went away (EIO), a full disk (ENOSPC) or any
other failure loses the line, never the app reloadd supervises. Lines go to the descriptor with
os.write, not through the stream's buffer, so a failed write leaves nothing behind to fail again
at the next flush (or at exit, where Python would turn it into status 120).
"""

from __future__ import annotations

import json
import os
import select
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any, Optional

PREFIX = "[reloadd] "
# An app may set O_NONBLOCK on the stderr pipe it shares with reloadd (the flag belongs to the
# open file, so reloadd's descriptor turns non-blocking too) and flood it: reloadd's write then
# fails with EAGAIN whenever the pipe is full. A line waits this long for room, then is dropped.
LINE_WRITE_WAIT = 1.0

# Levels as nodemon colours them: yellow info, green status, red failure.
INFO, STATUS, WARN, ERROR, DETAIL = "info", "status", "warn", "error", "detail"


def _colour_codes() -> dict[str, str]:
    from colorama import Fore, Style

    return {
        INFO: Fore.YELLOW,
        STATUS: Fore.GREEN,
        WARN: Fore.MAGENTA,
        ERROR: Fore.RED,
        DETAIL: Style.DIM,
        "reset": Style.RESET_ALL,
    }


def use_colour(stream: IO[str], env: Mapping[str, str], colours_setting: bool) -> bool:
    """NO_COLOR and ``--no-colours`` win; FORCE_COLOR forces; otherwise colour only on a terminal."""
    if env.get("NO_COLOR") or not colours_setting:
        return False
    if env.get("FORCE_COLOR", "") not in ("", "0", "false"):
        return True
    return stream.isatty()


class Output:
    """Writes reloadd's log lines. ``verbose`` adds DETAIL lines; ``quiet`` keeps only errors and warnings."""

    def __init__(
        self,
        stream: Optional[IO[str]] = None,
        colour: bool = False,
        verbose: bool = False,
        quiet: bool = False,
        json_lines: bool = False,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.verbose = verbose
        self.quiet = quiet
        self.json_lines = json_lines
        self._codes = _colour_codes() if colour and not json_lines else {}
        self._lock = threading.Lock()  # the watcher thread logs too: keep lines whole
        self._lost = 0  # lines dropped since the last one that got out: said on the next line
        self._cut = False  # the last write stopped part-way through a line

    def configure(self, *, colour: bool, verbose: bool, quiet: bool, json_lines: bool) -> None:
        self.__init__(self.stream, colour, verbose, quiet, json_lines)  # type: ignore[misc]

    def log(self, level: str, message: str, event: Optional[str] = None, **fields: Any) -> None:
        if level == DETAIL and not self.verbose:
            return
        if self.quiet and level not in (ERROR, WARN):
            return
        line = self._format(level, message, event, fields)
        with self._lock:
            if self._lost:
                lost = f"{plural(self._lost, 'log line')} lost: stderr could not be written"
                line = self._format(WARN, lost, None, {}) + "\n" + line
            if self._cut:
                line = "\n" + line  # the last line was cut short: do not run this one into it
            written = self._write(line + "\n")
            self._lost = 0 if written else self._lost + 1

    def traceback(self) -> None:
        """The exception being handled, as Python prints it (for --verbose); never raises either."""
        import traceback  # only for reloadd's own bugs: every process's start would pay for it otherwise

        with self._lock:
            self._write(traceback.format_exc())

    def _format(self, level: str, message: str, event: Optional[str], fields: dict[str, Any]) -> str:
        if self.json_lines:
            record: dict[str, Any] = {"ts": round(time.time(), 6), "level": level, "msg": message}
            if event:
                record["event"] = event
            record.update(fields)
            return json.dumps(record, default=str)
        if self._codes:
            return f"{self._codes[level]}{PREFIX}{message}{self._codes['reset']}"
        return PREFIX + message

    def _write(self, text: str) -> bool:
        """Write ``text`` whole or give up; never raises. Returns whether all of it went out."""
        fd = _descriptor(self.stream)
        if fd is None:  # not a file (a StringIO in tests): its own write is all there is
            try:
                self.stream.write(text)
                self.stream.flush()
                return True
            except (OSError, ValueError):
                return False
        encoding = getattr(self.stream, "encoding", None) or "utf-8"
        data = memoryview(text.encode(encoding, "backslashreplace"))
        total = len(data)
        deadline = time.monotonic() + LINE_WRITE_WAIT
        while data:
            try:
                data = data[os.write(fd, data) :]
            except BlockingIOError:
                if not _wait_writable(fd, deadline - time.monotonic()):
                    break
            except OSError:  # EIO (terminal gone), ENOSPC, EPIPE...: this line is lost, reloadd goes on
                break
        self._cut = 0 < len(data) < total
        return not data

    def info(self, message: str, **fields: Any) -> None:
        self.log(INFO, message, **fields)

    def status(self, message: str, **fields: Any) -> None:
        self.log(STATUS, message, **fields)

    def warn(self, message: str, **fields: Any) -> None:
        self.log(WARN, message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log(ERROR, message, **fields)

    def detail(self, message: str, **fields: Any) -> None:
        self.log(DETAIL, message, **fields)

    def record(self, event: str, **fields: Any) -> None:
        """A machine-readable record (JSON format only), e.g. restart timings for benchmarks."""
        if self.json_lines and self.verbose:
            self.log(DETAIL, event, event=event, **fields)


def _descriptor(stream: IO[str]) -> Optional[int]:
    try:
        stream.flush()  # anything written through the stream itself (a traceback) goes first
    except (OSError, ValueError):
        pass
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


def _wait_writable(fd: int, seconds: float) -> bool:
    """Wait up to ``seconds`` until ``fd`` takes more data; False when it does not (or cannot)."""
    if seconds <= 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    try:
        events = poller.poll(seconds * 1000)
    except OSError:
        return False
    return any(mask & select.POLLOUT for _, mask in events)


def format_pids(pids: Any) -> str:
    return ",".join(str(pid) for pid in sorted(pids))


def pids(found: Any) -> str:
    """``pid 7`` or ``pids 7,9``, for the parentheses after a count of processes."""
    return ("pid " if len(found) == 1 else "pids ") + format_pids(found)


def exited(count: int) -> str:
    return "the process exited" if count == 1 else f"all {count} processes exited"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}es" if word.endswith("s") else f"{count} {word}s"


out = Output(colour=False)
"""The process-wide output; ``app.main`` configures it once the settings are known."""
