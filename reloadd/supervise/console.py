"""The stdin console: reloadd reads its stdin so that typing ``rs`` restarts the app.

``decide`` turns bytes read into a decision; reading them, and the pipe the rest goes to, are
the host's (host/stdin.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class RestartTyped:
    word: str


@dataclass(frozen=True)
class ForwardInput:
    data: bytes


@dataclass(frozen=True)
class InputEnded:
    pass


Input = Union[RestartTyped, ForwardInput, InputEnded]


def decide(data: bytes, restartable: str) -> Input:
    """``rs`` (any case, surrounding blanks ignored) restarts; end of file ends; the rest is the app's."""
    if not data:
        return InputEnded()
    if data.decode(errors="replace").strip().lower() == restartable.lower():
        return RestartTyped(restartable)
    return ForwardInput(data)
