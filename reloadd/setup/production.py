"""The production guard: the pod side of a sync never writes into a production container.

Teams run one image in dev and production, and ``kubectl exec`` into the wrong context is an
easy mistake, so the agent follows the rule the supervisor already honours: with
``NODE_ENV=production`` it refuses unless ``RELOADD_WATCH=1`` (the supervisor's "watch anyway")
or ``RELOADD_SYNC=1`` allows it; ``RELOADD_SYNC=0`` refuses always. The supervisor applies the
same check before it opens its local "batch committed" channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

from ..errors import ReloaddError
from .switches import parse_bool

EXIT_REFUSED = 3  # the agent's status when it refuses to sync; the laptop stops instead of reconnecting
PRODUCTION = "production"
SYNC_SWITCH = "RELOADD_SYNC"  # 1: allow the sync (even in production), 0: never allow it
WATCH_SWITCH = "RELOADD_WATCH"  # the supervisor's own switch: 1 watches even in production


class SyncRefused(ReloaddError):
    """The container's environment forbids syncing into it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_REFUSED)


def refusal(env: Mapping[str, str]) -> Optional[str]:
    """Why this container must not be synced into (one line), or None when it may be."""
    switch = _switch(env, SYNC_SWITCH)
    if switch is False:
        return f"{SYNC_SWITCH}=0"
    if switch is True:
        return None
    if is_production(env) and not _switch(env, WATCH_SWITCH):
        return f"NODE_ENV={PRODUCTION} (set {SYNC_SWITCH}=1 in the container to allow)"
    return None


def is_production(env: Mapping[str, str]) -> bool:
    """NODE_ENV says production, however it is spelt: ``Production``, `` PRODUCTION `` (the supervisor
    and the agent must agree, or a typo'd case would let a sync into production)."""
    return env.get("NODE_ENV", "").strip().lower() == PRODUCTION


def _switch(env: Mapping[str, str], name: str) -> Optional[bool]:
    text = env.get(name, "").strip()
    return parse_bool(name, text) if text else None
