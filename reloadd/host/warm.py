"""The warm process: the next generation's node, started before it is needed.

While the app runs, reloadd keeps one more ``node`` started with the app's own command line,
environment, working directory and stdin arrangement; only its NODE_OPTIONS gains
``--require warm_boot.cjs``, which that script removes again before the app can see it. The
script requires the packages the previous generation's own code required (under
``node_modules`` only: the app's own files are never preloaded) and waits. On a restart, once the
old tree is gone, reloadd says "go": the script returns and node runs the entry point itself, so
stack traces, ``ps``, the inspector and ``require.main`` are those of a plain ``node server.js``.

The supervisor calls: ``take`` instead of spawning, ``prepare`` after a start (``tick`` spawns
it once the app has booted and no burst is open; ``deadline`` says when), ``reaped`` from its
single reaper, ``pids`` to keep the waiting process out of the app's tree, ``discard``/``close``
on config reload and exit, and ``handle_reports`` when a report pipe is readable (it may return
a reason to restart once with nothing preloaded). ``take`` returns None whenever a cold start
is the safe choice, and says why on a ``-V`` line; the loop does the rest.
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import shlex
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from ..errors import ReloaddError, exit_status
from ..output import out, plural
from ..setup.command import Command
from ..setup.node_argv import node_script
from .tree import send, spawn

BOOTSTRAP = Path(__file__).with_name("warm_boot.cjs")  # shipped as package data
# For an ES module entry: node awaits it before the entry, so the warm process can build the ES
# module wrappers of the packages it preloaded (see warm_gate.mjs). Package data too.
GATE = Path(__file__).with_name("warm_gate.mjs")
CONTROL_FD = 3  # in the warm process: reloadd writes its orders here (see warm_boot.cjs)
REPORT_FD = 4  # in the warm process: it reports "ready" and what the app loaded here
FD_FLOOR = 10  # our ends of the pipes are moved above 3 and 4 so posix_spawn's dup2 always copies
KILL_SIGNAL = signal.SIGKILL  # a waiting warm process runs no app code: nothing to shut down gracefully
PREPARE_AFTER = 0.05  # seconds after a start before the next warm process is spawned: the app boots first
REPORT_WAIT = 2.0  # ...or until the new generation reported what it required, at most this long
PRELOAD_LIMIT = 400  # packages named in one order line (a pipe write of a few tens of kB at most)
READ_CHUNK = 65536
NODE_MODULES = "node_modules"

# Node flags that run code or read files before the entry point, change how the entry is
# found, or start something at process start: the warm process would do it at the wrong time.
COLD_FLAGS = frozenset(
    {
        "-r", "--require", "--import", "--loader", "--experimental-loader",  # code before the entry
        "--env-file", "--env-file-if-exists",  # read at process start: a changed .env would be missed
        "--inspect-brk", "--inspect-wait", "--inspect-port", "--debug-port", "--inspect-brk-node",
        "--watch", "--watch-path", "--test", "--test-only", "-i", "--interactive", "-c", "--check",
        "--prof", "--cpu-prof", "--heap-prof",  # profiles would include the wait
        "--experimental-default-type", "--preserve-symlinks-main", "--experimental-policy",
        "--experimental-permission", "--snapshot-blob", "--build-snapshot", "--experimental-sea-config",
    }
)  # fmt: skip
INSPECT_FLAGS = frozenset({"--inspect"})

# Packages that hook module loading or instrument other packages as they are required: every
# package loaded before them would escape them. The preload list stops at the first of these.
NEVER_PRELOAD = frozenset(
    {
        "dd-trace", "newrelic", "elastic-apm-node", "appdynamics", "@splunk/otel", "@sentry/node",
        "@opentelemetry/auto-instrumentations-node", "@opentelemetry/sdk-node", "@opentelemetry/instrumentation",
        "require-in-the-middle", "import-in-the-middle", "shimmer", "pirates",
        "@babel/register", "ts-node", "@swc/register", "@swc-node/register", "esbuild-register", "tsx",
        "coffeescript", "coffee-script", "module-alias", "app-module-path", "proxyquire", "mock-require",
        "rewire", "why-is-node-running",
    }
)  # fmt: skip
# Files whose change means different packages: the warm process's preloaded ones are stale.
PACKAGE_FILES = frozenset(
    {"package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb"}
)
INSTALL_MARKERS = ("node_modules", "node_modules/.package-lock.json", "node_modules/.modules.yaml",
                   "node_modules/.yarn-state.yml")  # fmt: skip


@dataclass(frozen=True)
class Launch:
    """Everything that makes two starts of the app the same start."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    stdin_pipe: bool  # the app reads a pipe reloadd feeds (True) or shares reloadd's stdin
    flags: tuple[str, ...]  # node flags the warm process starts with (the inspector's removed)
    script: str
    args: tuple[str, ...]
    inspect: Optional[tuple[str, int]]
    inspect_flag: str = ""
    inspect_index: int = 0


@dataclass
class Taken:
    """A warm process that now runs the entry point."""

    pid: int
    stdin_write: Optional[int]  # write end of the app's stdin pipe, when reloadd feeds it
    preloaded: int


@dataclass
class _Channel:
    """Our ends of one warm process's pipes."""

    pid: int
    report: int
    buffer: bytes = b""
    closed: bool = False


@dataclass
class _Waiting:
    launch: Launch
    channel: _Channel
    control: int
    stdin_write: Optional[int]
    started: float = field(default_factory=time.monotonic)
    ordered: bool = False  # the orders line was written
    ready: bool = False
    preload: list[str] = field(default_factory=list)
    preloaded: int = 0
    fingerprint: tuple[object, ...] = ()
    died: Optional[int] = None  # exit status if it ended while waiting
    gate: bool = False  # started with warm_gate.mjs


# -- is this command one a warm process can run? ------------------------------------------------
def launch_for(command: Command, env: dict[str, str], cwd: Path, stdin_pipe: bool) -> Union[Launch, str]:
    """The warm-startable form of ``command``, or why it must start cold.

    Args:
        command: the command reloadd would spawn.
        env: the app's complete environment.
        cwd: the app's working directory.
        stdin_pipe: True when reloadd feeds the app's stdin through a pipe.

    Returns:
        A Launch, or a reason (one phrase) for a cold start.
    """
    if not BOOTSTRAP.is_file():
        return f"{BOOTSTRAP.name} is missing from reloadd's installation"
    if command.shell or not command.is_node:
        return f"`{command.display}` is not node running a script"
    script = node_script(command.argv)
    if script is None or script == "-":
        return "node runs no script file"
    index = command.argv.index(script, 1)
    flags = command.argv[1:index]
    reason = _flag_reason(flags, "node flag") or _flag_reason(_node_options(env), "NODE_OPTIONS flag")
    if reason:
        return reason
    if "--" in flags:
        return "the node flags end with `--`"
    if not stdin_pipe and os.isatty(0):
        return "the app shares reloadd's terminal (node records its mode at start)"
    inspect_at = [i for i, flag in enumerate(flags) if flag.split("=", 1)[0] in INSPECT_FLAGS]
    if len(inspect_at) > 1 or (inspect_at and command.inspect is None):
        return "more than one --inspect flag"
    flag = flags[inspect_at[0]] if inspect_at else ""
    kept = [f for i, f in enumerate(flags) if not inspect_at or i != inspect_at[0]]
    return Launch(
        argv=tuple(command.argv),
        env=tuple(sorted(env.items())),
        cwd=str(cwd),
        stdin_pipe=stdin_pipe,
        flags=tuple(kept),
        script=script,
        args=tuple(command.argv[index + 1 :]),
        inspect=command.inspect,
        inspect_flag=flag,
        inspect_index=inspect_at[0] if inspect_at else 0,
    )


def _node_options(env: dict[str, str]) -> list[str]:
    try:
        return shlex.split(env.get("NODE_OPTIONS", ""))
    except ValueError:
        return ["--unparsable-NODE_OPTIONS"]


def _flag_reason(flags: list[str], what: str) -> Optional[str]:
    for flag in flags:
        name = flag.split("=", 1)[0]
        if name in COLD_FLAGS or (what.startswith("NODE_OPTIONS") and name.startswith("--inspect")):
            return f"{what} {name}"
        if name == "--unparsable-NODE_OPTIONS":
            return "NODE_OPTIONS cannot be split into flags"
    return None


def launch_difference(old: Launch, new: Launch) -> Optional[str]:
    """What differs between two launches, in a phrase; None when they are the same start."""
    if old == new:
        return None
    if old.argv != new.argv:
        return "the command or node flags changed"
    changed = sorted({k for k, _ in set(old.env) ^ set(new.env)})
    if changed:
        return f"the environment changed ({', '.join(changed[:5])})"
    return "the working directory or stdin arrangement changed"


# -- what may be preloaded ---------------------------------------------------------------------------------
def package_of(filename: str) -> Optional[tuple[str, str]]:
    """(package name, package directory) of a file under node_modules, else None."""
    marker = os.sep + NODE_MODULES + os.sep
    at = filename.rfind(marker)
    if at < 0:
        return None
    rest = filename[at + len(marker) :].split(os.sep)
    size = 2 if rest[0].startswith("@") else 1
    if len(rest) <= size:
        return None
    name = "/".join(rest[:size])
    return name, filename[: at + len(marker)] + os.sep.join(rest[:size])


def preload_list(loaded: list[str], never: dict[str, str]) -> list[str]:
    """The files to require, in the order the app required them, up to the first one never to preload."""
    chosen: list[str] = []
    for filename in loaded:
        package = package_of(filename)
        if package is None:
            continue
        if package[0] in NEVER_PRELOAD or filename in never or package[0] in never:
            break
        chosen.append(filename)
    return chosen[:PRELOAD_LIMIT]


def stale_reason(changed: list[str]) -> Optional[str]:
    """Why a change makes preloaded packages stale (package.json, a lockfile, node_modules), else None."""
    for path in changed:
        parts = Path(path).parts
        if Path(path).name in PACKAGE_FILES or NODE_MODULES in parts:
            return f"the change touched {Path(path).name if NODE_MODULES not in parts else NODE_MODULES}"
    return None


def fingerprint(cwd: str, preload: list[str]) -> tuple[object, ...]:
    """What an install changes: lockfiles, node_modules markers, each preloaded package's package.json."""
    paths = [os.path.join(cwd, name) for name in (*sorted(PACKAGE_FILES), *INSTALL_MARKERS)]
    packages = {package[1] for package in map(package_of, preload) if package is not None}
    paths += sorted(os.path.join(directory, "package.json") for directory in packages)
    stamps: list[object] = []
    for path in paths:
        try:
            stat = os.stat(path)
            stamps.append((path, stat.st_mtime_ns, stat.st_ino, stat.st_size))
        except OSError:
            stamps.append((path, None))
    return tuple(stamps)


def preload_env(env: dict[str, str], gate: bool = False) -> dict[str, str]:
    """The app's environment with the bootstrap (and, for an ES module entry, the gate) added to
    NODE_OPTIONS (node's quoting: \\ and \" escaped)."""
    flags = [("--require", str(BOOTSTRAP))] + ([("--import", GATE.as_uri())] if gate else [])
    own = env.get("NODE_OPTIONS", "")
    added = " ".join(f'{flag} "{_node_quoted(value)}"' for flag, value in flags)
    return {**env, "NODE_OPTIONS": f"{own} {added}".lstrip()}


def _node_quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _high(fd: int) -> int:
    """Move a descriptor above FD_FLOOR (close-on-exec), so dup2 onto 3 or 4 never hits itself."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FD_FLOOR)
    os.close(fd)
    return moved


def _close(fd: Optional[int]) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


class Warm:
    """At most one waiting warm process, and the report channel of the generation it follows."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector
        self.enabled = True
        self.waiting: Optional[_Waiting] = None
        self.active: Optional[_Channel] = None  # the running generation's report pipe, until it reports
        self.loaded: list[str] = []  # packages the last generation's own code required
        self.never: dict[str, str] = {}  # file or package -> why it is never preloaded again
        self.fresh_reason: Optional[str] = None  # a decision for the loop: restart with nothing preloaded
        self.discarded: set[int] = set()  # killed, not yet reaped
        self.next_launch: Optional[Launch] = None  # what prepare() asked for, spawned by tick()
        self.prepare_at = 0.0
        self.output_fds: tuple[Optional[int], Optional[int]] = (None, None)  # app_output.py: None is reloadd's
        # The last warm process ran an ES module entry on a node that takes --import in NODE_OPTIONS:
        # the next one gets the gate.
        self.gate = False

    # -- the interface the supervisor calls ------------------------------------------------------
    def configure(self, enabled: bool) -> None:
        """``warm``/``--no-warm``: off discards the waiting process."""
        self.enabled = enabled
        if not enabled:
            self.discard("warm restarts are off")

    def pids(self) -> set[int]:
        """The waiting process: not part of the app's tree (the stop ladder must leave it alone)."""
        return {self.waiting.channel.pid} if self.waiting and self.waiting.died is None else set()

    def prepare(self, launch: Union[Launch, str]) -> None:
        """Ask for the next warm process; tick() starts it once the new generation has booted."""
        if not self.enabled or isinstance(launch, str) or self.waiting is not None:
            self.next_launch = None
            return
        self.next_launch = launch
        self.prepare_at = time.monotonic() + PREPARE_AFTER

    def deadline(self) -> Optional[float]:
        """When tick() has something to do (monotonic seconds), for the loop's wait."""
        if self.next_launch is None:
            return None
        return self.prepare_at + (REPORT_WAIT if self.active is not None else 0.0)

    def tick(self, now: float, busy: bool) -> None:
        """Spawn the asked-for warm process: not while changes are still arriving (``busy``): a
        booting node would compete with the tool writing them and split its burst."""
        due = self.deadline()
        if due is None or busy or now < due:
            return
        launch, self.next_launch = self.next_launch, None
        assert launch is not None
        try:
            self.waiting = self._spawn(launch)
        except (OSError, ReloaddError) as exc:
            out.detail(f"warm process not started: {exc}")
            return
        self._order()

    def take(self, launch: Union[Launch, str], changed: list[str], fresh: bool) -> Optional[Taken]:
        """Activate a compatible warm process; None means: start cold (a -V line says why).

        Args:
            launch: what would be started now (or why it must start cold).
            changed: the files whose change causes this start.
            fresh: nothing may be preloaded (a manual restart, a config change).
        """
        if not self.enabled:
            out.detail("cold start: warm restarts are off")
            return None
        if isinstance(launch, str):
            self.discard(launch)
            out.detail(f"cold start: {launch}")
            return None
        self.next_launch = None
        waiting = self.waiting
        if waiting is not None and waiting.died is not None:
            self._forget()
            out.detail(f"cold start: the warm process died (status {waiting.died})")
            return None
        reason = self._refusal(waiting, launch, changed, fresh) if waiting is not None else None
        if reason:
            self.discard(reason)
            out.detail(f"starting with nothing preloaded: {reason}")
        if self.waiting is None:
            try:
                self.waiting = self._spawn(launch)  # activated at once: nothing to preload yet
            except (OSError, ReloaddError) as exc:
                out.detail(f"cold start: warm process not started: {exc}")
                return None
            self._order(preload=[])
        return self._go()

    def reaped(self, pid: int, status: int) -> bool:
        """The reaper's status for a warm process (True if ``pid`` was one)."""
        if self.waiting and self.waiting.channel.pid == pid:
            self.waiting.died = exit_status(status)
            self._close_channel(self.waiting.channel)
            return True
        if pid in self.discarded:
            self.discarded.discard(pid)
            return True
        return False

    def discard(self, reason: str) -> None:
        """Kill the waiting process (config change, exit, incompatible change); the reaper collects it."""
        self.next_launch = None
        # Whatever made it stale (a package.json with another "type", another script) may have
        # changed the entry's kind: the next warm process goes without the gate and tells.
        self.gate = False
        waiting = self.waiting
        if waiting is None:
            return
        if waiting.died is None:
            out.detail(f"discarding warm process {waiting.channel.pid}: {reason}")
            send(waiting.channel.pid, KILL_SIGNAL)
            self.discarded.add(waiting.channel.pid)
        self._forget()

    def close(self) -> None:
        """reloadd is exiting: kill the waiting process and stop listening to reports."""
        self.discard("reloadd is exiting")
        if self.active is not None:
            self._close_channel(self.active)
            self.active = None

    def handle_reports(self) -> Optional[str]:
        """Read what warm processes reported; return a reason to restart with nothing preloaded, or None."""
        if self.active is not None:
            for message in self._messages(self.active):
                self._on_loaded(message)
            if self.active.closed:
                self.active = None
        if self.waiting is not None and self.waiting.died is None:
            for message in self._messages(self.waiting.channel):
                self._on_ready(message)
        reason, self.fresh_reason = self.fresh_reason, None
        return reason

    # -- inside ----------------------------------------------------------------------------------------
    def _refusal(self, waiting: _Waiting, launch: Launch, changed: list[str], fresh: bool) -> Optional[str]:
        if fresh:
            return "a manual restart or config change"
        stale = stale_reason(changed)
        if stale:
            return stale
        difference = launch_difference(waiting.launch, launch)
        if difference:
            return difference
        if waiting.ordered and fingerprint(launch.cwd, waiting.preload) != waiting.fingerprint:
            return "packages were installed or changed while the warm process waited"
        return None

    def _spawn(self, launch: Launch) -> _Waiting:
        control_read, control_write = os.pipe()
        report_read, report_write = os.pipe()
        control_read, report_write = _high(control_read), _high(report_write)
        stdin_read, stdin_write = os.pipe() if launch.stdin_pipe else (None, None)
        fds = [(control_read, CONTROL_FD), (report_write, REPORT_FD)]
        argv = [launch.argv[0], *launch.flags, launch.script, *launch.args]
        gate = self.gate and GATE.is_file()
        try:
            pid = spawn(
                argv,
                preload_env(dict(launch.env), gate=gate),
                stdin_fd=stdin_read,
                extra_fds=fds,
                stdout_fd=self.output_fds[0],
                stderr_fd=self.output_fds[1],
            )
        except ReloaddError:
            for fd in (control_write, report_read, stdin_write):
                _close(fd)
            raise
        finally:
            for fd in (control_read, report_write, stdin_read):
                _close(fd)
        os.set_blocking(report_read, False)
        channel = _Channel(pid, report_read)
        self.selector.register(report_read, selectors.EVENT_READ, "warm")
        return _Waiting(launch, channel, control_write, stdin_write, gate=gate)

    def _order(self, preload: Optional[list[str]] = None) -> None:
        """Write the waiting process's orders: argv, inspector, and what to preload."""
        waiting = self.waiting
        if waiting is None or waiting.ordered or waiting.died is not None:
            return
        launch = waiting.launch
        waiting.preload = preload_list(self.loaded, self.never) if preload is None else preload
        waiting.fingerprint = fingerprint(launch.cwd, waiting.preload)
        inspect = {"host": launch.inspect[0], "port": launch.inspect[1]} if launch.inspect else None
        orders: dict[str, object] = {
            "nodeOptions": dict(launch.env).get("NODE_OPTIONS"),  # put back as the app set it (None: unset)
            "inspect": inspect if launch.inspect_flag else None,
            "inspectFlag": launch.inspect_flag,
            "inspectIndex": launch.inspect_index,
            "preload": waiting.preload,
            "root": launch.cwd,
            "gate": waiting.gate,
        }
        waiting.ordered = self._write(waiting, orders)

    def _go(self) -> Optional[Taken]:
        waiting = self.waiting
        assert waiting is not None
        if not waiting.ordered:
            self._order()  # the running generation never reported: preload what the one before loaded
        if not waiting.ordered or not self._write(waiting, {"go": True}):
            self._forget()
            out.detail("cold start: the warm process stopped reading its orders")
            return None
        self.waiting = None
        _close(waiting.control)
        if self.active is not None:
            self._close_channel(self.active)
        self.active = waiting.channel  # its next report: what the new generation's code required
        count = waiting.preloaded if waiting.ready else len(waiting.preload)
        taken = Taken(waiting.channel.pid, waiting.stdin_write, count)
        late = "" if waiting.ready or not waiting.preload else " (still preloading: the entry runs when it is done)"
        out.detail(f"warm start: pid {taken.pid}, {plural(count, 'package')} preloaded{late}")
        return taken

    def _write(self, waiting: _Waiting, message: dict[str, object]) -> bool:
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(waiting.control, data) :]
        except OSError:
            return False  # EPIPE: it died; the reaper will say how
        return True

    def _messages(self, channel: _Channel) -> list[dict[str, object]]:
        while not channel.closed:
            try:
                chunk = os.read(channel.report, READ_CHUNK)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._close_channel(channel)
                break
            channel.buffer += chunk
        *lines, channel.buffer = channel.buffer.split(b"\n")
        messages = []
        for line in lines:
            try:
                message = json.loads(line.decode(errors="replace"))
            except ValueError:
                continue
            if isinstance(message, dict):
                messages.append(message)
        return messages

    def _on_loaded(self, message: dict[str, object]) -> None:
        loaded = message.get("loaded")
        if isinstance(loaded, list):
            self.loaded = [str(item) for item in loaded]
        if message.get("patched"):
            self.loaded = []
            out.detail("the app changes how modules are loaded: warm processes preload nothing")
        unused = message.get("unused")
        if isinstance(unused, list) and unused:
            names = ", ".join(sorted({self._name(str(item)) for item in unused}))
            self.fresh_reason = f"the new code no longer requires {names}, which was preloaded"
        if self._record_unsafe(message.get("unsafe")):
            self.fresh_reason = "a preloaded package was unsafe to load early"

    def _on_ready(self, message: dict[str, object]) -> None:
        waiting = self.waiting
        if waiting is None or not message.get("ready"):
            return
        if self._record_unsafe(message.get("unsafe")):
            launch = waiting.launch
            self.discard("a preloaded package is unsafe to load early")
            self.prepare(launch)
            return
        waiting.ready = True
        self.gate = message.get("kind") == "esm" and message.get("gateable") is True
        preloaded = message.get("preloaded", 0)
        waiting.preloaded = preloaded if isinstance(preloaded, int) else 0
        took = time.monotonic() - waiting.started
        packages = plural(waiting.preloaded, "package")
        modules = "an ES module" if waiting.preloaded == 1 else "ES modules"
        wrapped = f" and wrapped as {modules}" if waiting.gate else ""
        out.detail(f"warm process {waiting.channel.pid} ready in {took:.2f}s: {packages} preloaded{wrapped}")

    def _record_unsafe(self, unsafe: object) -> bool:
        """Remember packages that must never be preloaded again; True if there were any."""
        if not isinstance(unsafe, list) or not unsafe:
            return False
        for item in unsafe:
            if isinstance(item, dict):
                name, why = self._name(str(item.get("file"))), str(item.get("reason"))
                self.never[name] = why
                out.detail(f"never preloading {name}: {why}")
        return True

    @staticmethod
    def _name(filename: str) -> str:
        package = package_of(filename)
        return package[0] if package else filename

    def _close_channel(self, channel: _Channel) -> None:
        if channel.closed:
            return
        channel.closed = True
        try:
            self.selector.unregister(channel.report)
        except (KeyError, ValueError):
            pass
        _close(channel.report)

    def _forget(self) -> None:
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            _close(waiting.control)
            _close(waiting.stdin_write)
            self._close_channel(waiting.channel)
