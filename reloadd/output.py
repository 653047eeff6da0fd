"""reloadd's own log lines: ``[reloadd] ...`` on stderr, coloured only on a terminal, or JSON lines."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any, Optional

PREFIX = "[reloadd] "

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

    def configure(self, *, colour: bool, verbose: bool, quiet: bool, json_lines: bool) -> None:
        self.__init__(self.stream, colour, verbose, quiet, json_lines)  # type: ignore[misc]

    def log(self, level: str, message: str, event: Optional[str] = None, **fields: Any) -> None:
        if level == DETAIL and not self.verbose:
            return
        if self.quiet and level not in (ERROR, WARN):
            return
        if self.json_lines:
            record: dict[str, Any] = {"ts": round(time.time(), 6), "level": level, "msg": message}
            if event:
                record["event"] = event
            record.update(fields)
            line = json.dumps(record, default=str)
        elif self._codes:
            line = f"{self._codes[level]}{PREFIX}{message}{self._codes['reset']}"
        else:
            line = PREFIX + message
        try:
            with self._lock:
                self.stream.write(line + "\n")
                self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr went away (a closed pipe, EIO from a hung-up terminal): reloadd keeps supervising regardless

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


def format_pids(pids: Any) -> str:
    return ",".join(str(pid) for pid in sorted(pids))


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}es" if word.endswith("s") else f"{count} {word}s"


out = Output(colour=False)
"""The process-wide output; ``app.main`` configures it once the settings are known."""
