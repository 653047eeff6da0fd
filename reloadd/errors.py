"""The one error type reloadd raises deep and catches once, in ``main()``."""

from __future__ import annotations

import os

# Exit statuses of reloadd itself (the child's status passes through unchanged otherwise).
EXIT_OK = 0
EXIT_USAGE = 2  # bad flag, bad config file, bad key: one line on stderr
EXIT_NOT_EXECUTABLE = 126  # the program exists but cannot be executed (as sh and tini do)
EXIT_NOT_FOUND = 127  # the program does not exist (as sh and tini do)
SIGNAL_EXIT_BASE = 128  # a child killed by signal N gives 128 + N


class ReloaddError(Exception):
    """A failure to report in one line and exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class ConfigError(ReloaddError):
    """A configuration file, key or flag is wrong; exits 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


def exit_status(wait_status: int) -> int:
    """Turn a ``waitpid`` status into a shell-style exit status (128+N for signal N)."""
    if os.WIFSIGNALED(wait_status):
        return SIGNAL_EXIT_BASE + os.WTERMSIG(wait_status)
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    return SIGNAL_EXIT_BASE  # stopped/continued are never reported: we do not pass WUNTRACED
