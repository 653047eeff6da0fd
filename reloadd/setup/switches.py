"""On/off words for flags and environment variables (``1``/``0``, ``true``/``false``, ``yes``/``no``, ``on``/``off``).

Its own module, importing nothing heavy: the pod-side agent reads ``RELOADD_SYNC`` with it and
must start without loading the config model (pydantic), which it has no use for.
"""

from __future__ import annotations

from ..errors import ConfigError

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def parse_bool(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}: expected 1 or 0 (true or false), got {text!r}")
