"""The supervisor's state machine: its states, the changes between them it may make, and the check.

Pure: no processes, no clock. The supervisor (core.py) keeps the current state and changes it in one
place, ``transition``, which asks ``check`` first. docs/design.md shows ``ALLOWED`` as a table;
a test keeps the two the same.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    IDLE = "idle"  # no app: before the first change (-C), after a crash or a clean exit
    RUNNING = "running"
    RESTARTING = "restarting"  # the tree is stopping; the next generation starts once it is gone
    BETWEEN = "between generations"  # the old tree is gone; the next starts when the burst closes
    CLEANING_UP = "cleaning up"  # the app exited by itself; what it left running is stopping
    EXITING = "exiting"  # the tree is stopping; reloadd exits once it is gone
    BACKOFF = "backoff"  # --restart-on-crash: waiting before the next start
    EXITED = "exited"  # done; exit_code says with what


# Every transition the loop may make; anything else is a bug in reloadd, reported as one.
ALLOWED: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.RUNNING, State.EXITED}),
    State.RUNNING: frozenset({State.RESTARTING, State.CLEANING_UP, State.EXITING}),
    State.RESTARTING: frozenset({State.RUNNING, State.BETWEEN, State.EXITING, State.EXITED}),
    State.BETWEEN: frozenset({State.RUNNING, State.EXITED}),
    State.CLEANING_UP: frozenset({State.RESTARTING, State.EXITING, State.IDLE, State.BACKOFF, State.EXITED}),
    State.EXITING: frozenset({State.EXITED}),
    State.BACKOFF: frozenset({State.RUNNING, State.EXITED}),
    State.EXITED: frozenset(),
}
WITH_TREE = frozenset({State.RUNNING, State.RESTARTING, State.CLEANING_UP, State.EXITING})  # an app tree exists
STOPPING = frozenset({State.RESTARTING, State.CLEANING_UP, State.EXITING})  # a stop ladder runs


class TransitionError(RuntimeError):
    """The loop tried a state change that ALLOWED does not list: a bug in reloadd."""


def check(old: State, new: State, why: str) -> None:
    """Raise TransitionError unless ``old -> new`` is in ALLOWED (``why`` goes into the message)."""
    if new not in ALLOWED[old]:
        raise TransitionError(f"{old.value} -> {new.value} is not a state change reloadd makes ({why})")
