"""The effective configuration as plain dataclasses: every key reloadd understands, its type and default.

Only the shape lives here; ``config.py`` checks raw values against it. Plain dataclasses rather
than a validation library's models, because every start of the supervisor (and of ``reloadd
sync``) builds one, and importing and building such models cost about as much as node's own
start-up. A field's nodemon name, when it differs from the Python one, is its ``alias``; a list
that must not be empty says so with ``min_length``.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from .shapes import ALIAS, MIN_LENGTH

DEFAULT_IGNORE_ROOT = [
    "**/.git/**",
    "**/.nyc_output/**",
    "**/.sass-cache/**",
    "**/bower_components/**",
    "**/coverage/**",
    "**/node_modules/**",
]
DEFAULT_EXEC_MAP = {"py": "python", "rb": "ruby", "ts": "ts-node"}
DEFAULT_RESTART_SIGNAL = "SIGUSR2"  # nodemon's default: node dies of it unless the app handles it
DEFAULT_HOT_SIGNAL = "SIGHUP"
DEFAULT_STOP_TIMEOUT = 5.0  # seconds the old tree gets before SIGKILL
DEFAULT_POLL_INTERVAL_MS = 100  # chokidar's (and so nodemon's) default interval
DEFAULT_EVENT_TIMEOUT = 30.0  # seconds a hook may run before it is killed
DEFAULT_ON_CHANGE_TIMEOUT = 600.0  # seconds a sync.onChange command (an npm ci) may run before it is killed

ScalarEnv = Union[str, int, float, bool]


def signal_number(name: str) -> int:
    """Map ``SIGUSR2``/``usr2``/``12`` to a signal number, or raise ValueError."""
    text = name.strip().upper()
    if text.isdigit():
        return int(signal.Signals(int(text)))
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise ValueError(f"unknown signal name {name!r}") from None


def _alias(name: str) -> dict[str, Any]:
    return {ALIAS: name}


@dataclass
class HotConfig:
    """Soft reload: changes touching only ``paths`` signal the app instead of restarting it."""

    paths: list[str] = field(default_factory=list)
    signal: str = DEFAULT_HOT_SIGNAL


@dataclass
class OnChangeRule:
    """``sync.onChange``: when a synced batch changes a file matching ``paths``, the pod runs ``run``
    before the app restarts (sync/pod/installs.py); like DevSpace's ``onUpload.exec``."""

    paths: list[str] = field(metadata={MIN_LENGTH: 1})
    run: str = field(metadata={MIN_LENGTH: 1})
    timeout: float = DEFAULT_ON_CHANGE_TIMEOUT  # seconds


@dataclass
class SyncConfig:
    """``reloadd sync``: where to, what it leaves out (besides ignoreRoot and .gitignore), whether it
    deletes pod-only files, what the pod runs when some files change, and which ports it forwards. The
    command line wins."""

    to: Optional[str] = field(default=None, metadata={MIN_LENGTH: 1})  # as --to
    namespace: Optional[str] = field(default=None, metadata={MIN_LENGTH: 1})  # as -n
    container: Optional[str] = field(default=None, metadata={MIN_LENGTH: 1})  # as -c
    selector: Optional[str] = field(default=None, metadata={MIN_LENGTH: 1})  # as -l
    exclude: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)  # protected names to sync anyway (sync/shared/excludes.py)
    delete: bool = False
    on_change: Optional[list[OnChangeRule]] = field(default=None, metadata=_alias("onChange"))  # None: by lockfile
    ports: list[Union[int, str]] = field(default_factory=list)  # forwarded ports (setup/forwards.py), as -p
    logs: bool = False  # as --logs: the app's output from the pods, on the laptop


@dataclass
class Settings:
    """The effective configuration. Aliases are nodemon's key names."""

    watch: Union[list[str], Literal[False]] = field(default_factory=lambda: ["*.*"])
    ignore: list[str] = field(default_factory=list)
    ignore_root: list[str] = field(default_factory=lambda: list(DEFAULT_IGNORE_ROOT), metadata=_alias("ignoreRoot"))
    ext: Optional[str] = None  # None = derived from the script
    delay: float = 0.0  # milliseconds
    exec: Optional[Union[str, list[str]]] = None
    exec_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_EXEC_MAP), metadata=_alias("execMap"))
    env: dict[str, ScalarEnv] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)
    verbose: bool = False
    quiet: bool = False
    legacy_watch: Optional[bool] = field(default=None, metadata=_alias("legacyWatch"))  # None = decide per mount
    polling_interval: int = field(default=DEFAULT_POLL_INTERVAL_MS, metadata=_alias("pollingInterval"))
    restartable: Union[str, Literal[False]] = "rs"
    colours: bool = True
    signal: str = DEFAULT_RESTART_SIGNAL
    stdin: bool = True
    run_on_change_only: bool = field(default=False, metadata=_alias("runOnChangeOnly"))
    exitcrash: bool = False
    script: Optional[str] = None
    args: list[str] = field(default_factory=list)
    node_args: list[str] = field(default_factory=list, metadata=_alias("nodeArgs"))
    exec_args: list[str] = field(default_factory=list, metadata=_alias("execArgs"))
    cwd: Optional[str] = None
    spawn: bool = False
    watch_options: dict[str, Any] = field(default_factory=dict, metadata=_alias("watchOptions"))
    # reloadd's own keys (README "Options")
    stop_timeout: float = field(default=DEFAULT_STOP_TIMEOUT, metadata=_alias("stopTimeout"))
    inspect: Optional[str] = None  # "HOST:PORT"; "brk:HOST:PORT" for --inspect-brk
    restart_on_crash: bool = field(default=False, metadata=_alias("restartOnCrash"))
    log_format: Literal["text", "json"] = field(default="text", metadata=_alias("logFormat"))
    event_timeout: float = field(default=DEFAULT_EVENT_TIMEOUT, metadata=_alias("eventTimeout"))
    hot: Optional[HotConfig] = None
    warm: bool = True  # keep the next node started and its dependencies loaded (reloadd/host/warm/manager.py)
    sync: SyncConfig = field(default_factory=SyncConfig)

    @property
    def watching(self) -> bool:
        return self.watch is not False

    @property
    def restart_signal(self) -> int:
        return signal_number(self.signal)
