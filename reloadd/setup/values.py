"""One setting's value, whatever its source: the text parsers that flags and environment variables
share (the signal and --inspect parsers, which only flags use, are flags.py's), and the bounds
every number is held to, from a flag, a variable or a config file alike.

Each parser takes the name its message uses (``--delay``, ``RELOADD_STOP_TIMEOUT``) and the text,
and raises ConfigError in one line. On/off words are switches.py's, kept apart for the agent.
"""

from __future__ import annotations

import re

from ..errors import ConfigError

# The largest duration any key takes (delay, pollingInterval, stopTimeout, eventTimeout): an hour.
# Longer is a typo (seconds written as milliseconds) or `1e308`, and would hide every change, hang
# every restart or overflow the clock arithmetic; README "Options" documents the bound.
MAX_DURATION_SECONDS = 3600
MAX_DURATION_MS = MAX_DURATION_SECONDS * 1000
MAX_POLL_INTERVAL_MS = MAX_DURATION_MS
MS_PER_SECOND = 1000.0
LOG_FORMATS = ("text", "json")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$", re.IGNORECASE)
_MILLISECONDS = re.compile(r"^\s*(\d+)\s*(ms)?\s*$", re.IGNORECASE)


# -- bounds ------------------------------------------------------------------------------------------
# Every number reaches one of these, whatever its source, so a flag, a variable and a file take the
# same values: finite, not negative, at most MAX_DURATION_* (NaN fails every comparison, so is refused).
def check_milliseconds(value: float) -> float:
    """A ``delay``: a finite number of milliseconds from 0 to MAX_DURATION_MS."""
    if not 0 <= value <= MAX_DURATION_MS:
        raise ValueError(f"expected a number of milliseconds from 0 to {MAX_DURATION_MS} (an hour)")
    return value


def check_seconds(value: float, positive: bool = False) -> float:
    """A ``stopTimeout`` (0 or more) or ``eventTimeout`` (positive): seconds, at most MAX_DURATION_SECONDS."""
    if not 0 <= value <= MAX_DURATION_SECONDS or (positive and value == 0):
        low = "above 0" if positive else "from 0"
        raise ValueError(f"expected a number of seconds {low} to {MAX_DURATION_SECONDS} (an hour)")
    return value


def check_poll_interval(value: int) -> int:
    """A ``pollingInterval``: whole milliseconds from 1 to MAX_POLL_INTERVAL_MS."""
    if not 1 <= value <= MAX_POLL_INTERVAL_MS:
        raise ValueError(f"expected a whole number of milliseconds from 1 to {MAX_POLL_INTERVAL_MS} (an hour)")
    return value


# -- text to values, for flags and environment variables ---------------------------------------------
def parse_duration_ms(name: str, text: str) -> float:
    """nodemon's CLI delay units: ``2500ms`` -> 2500, ``5s`` -> 5000, bare seconds ``2.5`` -> 2500.

    Checked as config ``delay`` is (check_milliseconds): a flag and a file take the same values.
    """
    match = _DURATION.match(text)
    try:
        if not match:
            raise ValueError("not a duration")
        number = float(match.group(1))
        return check_milliseconds(number if (match.group(2) or "").lower() == "ms" else number * MS_PER_SECOND)
    except ValueError:
        raise ConfigError(
            f"{name}: expected a duration like 2.5, 2500ms or 5s (at most an hour), got {text!r}"
        ) from None


def parse_seconds(name: str, text: str, positive: bool = False) -> float:
    """A duration in seconds (``5``, ``2.5``, ``500ms``, ``5s``), checked as config ``stopTimeout``/``eventTimeout``."""
    match = _DURATION.match(text)
    try:
        if not match:
            raise ValueError("not a duration")
        return check_seconds(parse_duration_ms(name, text) / MS_PER_SECOND, positive)
    except (ValueError, ConfigError):
        wanted = "a positive" if positive else "a"
        raise ConfigError(
            f"{name}: expected {wanted} number of seconds like 5, 2.5 or 500ms (at most an hour), got {text!r}"
        ) from None


def parse_milliseconds(name: str, text: str) -> int:
    """A whole number of milliseconds (``100`` or ``100ms``), checked as config ``pollingInterval``."""
    match = _MILLISECONDS.match(text)
    try:
        if not match:
            raise ValueError("not a number of milliseconds")
        return check_poll_interval(int(match.group(1)))
    except ValueError:
        raise ConfigError(
            f"{name}: expected a whole number of milliseconds like 100 (1 to {MAX_POLL_INTERVAL_MS}, an hour), "
            f"got {text!r}"
        ) from None


def parse_log_format(name: str, text: str) -> str:
    word = text.strip().lower()
    if word not in LOG_FORMATS:
        raise ConfigError(f"{name}: expected text or json, got {text!r}")
    return word
