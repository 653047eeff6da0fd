"""``reloadd sync``'s command line (argparse: it has none of nodemon's script-finding rules)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn, Optional

from ...errors import ConfigError
from ...setup.forwards import Forward, parse_forwards
from ...setup.values import parse_log_format
from ..shared.excludes import check_include
from ..shared.heartbeat import HEARTBEAT_WINDOW, parse_window
from .transport import Where, engine_to, same_host, split_to

SYNC_HELP = """\
Usage:
  reloadd sync [LOCAL_DIR] --to TARGET[:REMOTE_DIR] [-n NAMESPACE] [-c CONTAINER] [--context CTX]
  reloadd sync [LOCAL_DIR] -l SELECTOR [--to :REMOTE_DIR] [-n NAMESPACE] [-c CONTAINER] [--context CTX]
  reloadd sync [LOCAL_DIR] --to docker://CONTAINER[:REMOTE_DIR]
  reloadd sync [LOCAL_DIR] --to compose://SERVICE[:REMOTE_DIR]
  reloadd sync [LOCAL_DIR] --transport 'COMMAND ...' [--to REMOTE_DIR]

Sends LOCAL_DIR (default .) into a dev pod and keeps it there: first only the differences,
then every burst of changes as one batch, which the pod side applies all at once. With reloadd
running the app in the pod, each batch restarts it once. The pod side is `reloadd agent`,
started through `kubectl exec -i ... -- reloadd agent [REMOTE_DIR]`: no port, no sidecar;
Kubernetes' pods/exec permission is the authentication.

Where to (or the config file's sync.to, sync.selector, sync.namespace, sync.container: a bare
`reloadd sync` then goes there; the command line wins key by key):
  --to TARGET[:REMOTE_DIR]  pod/NAME, deploy/NAME or NAME; REMOTE_DIR defaults to the container's
                            working directory
  --to docker://CONTAINER[:REMOTE_DIR]
                            a container of this machine's Docker, through `docker exec -i`
  --to compose://SERVICE[:REMOTE_DIR]
                            a Compose service's container, through `docker compose exec -T`
                            (run it where `docker compose` finds your compose file)
  -l, --selector SELECTOR   every running pod with these labels (app=api), one stream each;
                            pods that appear later are picked up
  -n, --namespace NS        -c, --container NAME        --context CTX      (passed to kubectl)
  --transport 'CMD ...'     run CMD + `reloadd agent [REMOTE_DIR]` instead of kubectl exec:
                            'env' (this machine), 'docker exec -i box', 'ssh host'

What:
  --exclude GLOB            leave this out (repeatable); ignoreRoot and what git ignores
                            (.gitignore, .git/info/exclude, core.excludesFile) are left out too
                            [config: sync.exclude]
  --include NAME            sync node_modules or .git too (repeatable): both are otherwise never
                            read, written or deleted, whatever ignoreRoot says [config: sync.include]
  --delete                  delete files in the pod that LOCAL_DIR does not have (never excluded
                            ones) [config: sync.delete]
  (sync.onChange)           commands the pod runs before restarting when some files change;
                            by default the install its lockfile calls for (npm ci...) when
                            package.json or a lockfile changes; see README
  --allow-mass-delete       do not halt when one change would delete every file, or more than half
                            of a tree of 10 or more (see "Halts" below)
  --config FILE             read this .json or .toml file instead of LOCAL_DIR's reloadd.toml / nodemon.json

Ports:
  -p, --port LOCAL[:REMOTE] forward 127.0.0.1:LOCAL here to 127.0.0.1:REMOTE in the pod (REMOTE
                            defaults to LOCAL; repeatable: -p 3000 -p 9229 -p 8080:3000) over the
                            sync's own stream: no second kubectl, no port opened in the pod.
                            Unlike kubectl port-forward it stays up when the app restarts, the
                            stream reconnects or the pod is replaced; a connection made meanwhile
                            waits (up to 10 s in a reconnect, 5 s for the app to listen). With -l:
                            the first pod connected [config: sync.ports]

Link:
  --heartbeat SECONDS       a link silent this long is dead (default 8): the laptop kills kubectl,
                            says so and reconnects, and the agent in the pod exits by itself; each
                            side pings every SECONDS/4 when idle [env: RELOADD_SYNC_HEARTBEAT]

Output:
  --logs                    also print the app's own output (stdout and stderr) from each pod,
                            each line prefixed by the pod [config: sync.logs]
  -V, --verbose             list every file sent or deleted, and kubectl's own last lines when it fails
  -q, --quiet               only errors and warnings
  --log-format FORMAT       text, or json for one JSON object per line [env: RELOADD_LOG_FORMAT]
  --no-colours              no colour (also NO_COLOR=1)

Halts: when LOCAL_DIR is deleted or moved away, the sync halts and deletes nothing; it resumes
(resyncing) when the directory is back. When one change would delete every file, or more than
half of 10 or more, nothing is sent until the files are back or you type y and Enter (on a
terminal); with --delete, such a share of pod-only files is not deleted at (re)connection.

Exit status: 0 after Ctrl-C; 1 the agent cannot be started (kubectl's reason); 2 usage error, a
-p port already in use here, or kubectl not on PATH; 3 the pod refuses (NODE_ENV=production: set
RELOADD_SYNC=1 in the container to allow); 4 RBAC forbids pods/exec (or listing pods for -l); 5
no such pod, deployment or container; 6 reloadd is not installed in the container; 7 the agent's
version differs; 8 kubectl has no usable context. Transient failures (cluster unreachable, 5xx,
pod starting) are retried."""


class Destination(NamedTuple):
    """Where to, as the command line (or the config file's ``sync`` keys) gave it, before it is checked."""

    to: Optional[str] = None
    namespace: Optional[str] = None
    container: Optional[str] = None
    context: Optional[str] = None
    selector: Optional[str] = None
    transport: Optional[str] = None

    @property
    def named(self) -> bool:
        """It says where to (not only how: a namespace or container alone is no destination)."""
        return self.to is not None or self.selector is not None or self.transport is not None


@dataclass
class SyncOptions:
    local_dir: str
    where: Optional[Where]  # None: the command line names no destination; the config file's sync.to does
    excludes: list[str] = field(default_factory=list)
    delete: Optional[bool] = None  # None: the config file's sync.delete
    verbose: bool = False
    quiet: bool = False
    log_format: Optional[str] = None
    colours: bool = True
    config_file: Optional[str] = None
    includes: list[str] = field(default_factory=list)  # protected names to sync anyway (excludes.py)
    allow_mass_delete: bool = False
    heartbeat: float = HEARTBEAT_WINDOW  # seconds of silence that make a link dead (heartbeat.py)
    heartbeat_flag: Optional[str] = None  # --heartbeat as given; sync_main resolves it with the environment
    destination: Destination = field(default_factory=Destination)  # as the command line gave it
    logs: Optional[bool] = None  # --logs; None: the config's sync.logs
    forwards: list[Forward] = field(default_factory=list)  # -p; empty: the config's sync.ports


APP_SEARCH_DEPTH = 2  # how far below LOCAL_DIR to look for app folders to suggest (examples/express)


def whole_repository_warning(local_dir: str) -> Optional[str]:
    """A warning when LOCAL_DIR looks like a whole repository rather than an app (a .git, no package.json):
    run from a repository's root, ``reloadd sync --to ...`` would send all of it into the container."""
    root = os.path.abspath(local_dir)
    if os.path.exists(os.path.join(root, "package.json")) or not os.path.exists(os.path.join(root, ".git")):
        return None
    apps = _app_folders(root)
    hint = f"; did you mean {' or '.join(apps[:3])} (reloadd sync {apps[0]} --to ...)?" if apps else ""
    return f"syncing {local_dir}, a whole git repository with no package.json{hint}"


def _app_folders(root: str) -> list[str]:
    """Folders below ``root`` (up to APP_SEARCH_DEPTH deep) that hold a package.json."""
    found = []
    for folder, dirs, files in os.walk(root):
        relative = os.path.relpath(folder, root)
        depth = 0 if relative == "." else relative.count(os.sep) + 1
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "node_modules" and depth < APP_SEARCH_DEPTH)
        if depth and "package.json" in files:
            found.append(relative)
    return sorted(found)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"sync: {message} (reloadd sync --help)")


def _parser() -> _Parser:
    parser = _Parser(prog="reloadd sync", add_help=False)
    parser.add_argument("local_dir", nargs="?", default=".")
    parser.add_argument("--to")
    parser.add_argument("-n", "--namespace")
    parser.add_argument("-c", "--container")
    parser.add_argument("--context")
    parser.add_argument("-l", "--selector")
    parser.add_argument("--transport")
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("--delete", action="store_true", default=None)
    parser.add_argument("--include", action="append", default=[])
    parser.add_argument("--allow-mass-delete", action="store_true")
    parser.add_argument("-V", "--verbose", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("--log-format")
    parser.add_argument("--no-colours", "--no-colors", dest="colours", action="store_false")
    parser.add_argument("--config")
    parser.add_argument("--heartbeat")
    parser.add_argument("--logs", action="store_true", default=None)
    parser.add_argument("-p", "--port", action="append", default=[])
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def parse_sync_args(argv: list[str]) -> Optional[SyncOptions]:
    """The options, or None when --help was asked for (the caller prints SYNC_HELP)."""
    args = _parser().parse_args(argv)
    if args.help:
        return None
    destination = Destination(args.to, args.namespace, args.container, args.context, args.selector, args.transport)
    where = destination_where(destination) if destination.named else None
    return _options(args, where, destination)


NO_DESTINATION = (
    "sync: say where to: --to TARGET[:REMOTE_DIR], -l SELECTOR or --transport CMD "
    '(or "sync": {"to": ...} in nodemon.json, [sync] to = ... in reloadd.toml)'
)


def destination_where(destination: Destination, to: str = "--to") -> Where:
    """Check a destination and make it a Where; ``to`` names where ``to`` came from in errors."""
    d = destination
    if d.transport is not None and d.selector is not None:
        raise ConfigError("sync: --transport and --selector cannot be used together")
    if not d.named:
        raise ConfigError(NO_DESTINATION)
    if d.to is not None and engine_to(d.to) is not None:
        return _engine_where(d, to)
    target, remote = split_to(d.to or "", transport=d.transport is not None or d.selector is not None)
    if d.to is not None and d.transport is None and d.selector is None and not target:
        raise ConfigError(f"sync: {to} {d.to!r}: expected TARGET[:REMOTE_DIR], e.g. deploy/api:/app")
    where = Where(target, remote, d.namespace, d.container, d.context, d.selector, d.transport)
    if same_host(where) and remote is None:
        # The agent's working directory would be this one: it would write wherever the command ran.
        raise ConfigError("sync: --transport env runs the pod side on this machine: say where it writes, --to DIR")
    return where


def with_config(cli: Destination, config: Destination) -> tuple[Destination, str]:
    """The command line's destination with its gaps filled from the config file's ``sync`` keys (the
    command line wins key by key; a destination it names replaces the config's ``to`` and
    ``selector``), and how to name ``to`` in errors."""
    to, selector, source = cli.to, cli.selector, "--to"
    if not cli.named:
        to, selector, source = config.to, config.selector, "sync.to"
    elif cli.transport is not None and cli.to is None and config.to and ":" in config.to:
        to, source = ":" + config.to.partition(":")[2], "sync.to"  # --transport keeps the config's :DIR
    merged = Destination(
        to, cli.namespace or config.namespace, cli.container or config.container, cli.context, selector, cli.transport
    )
    return merged, source


def _engine_where(d: Destination, to: str) -> Where:
    """``--to docker://...`` / ``compose://...``: the docker transport under a name people know."""
    assert d.to is not None
    found = engine_to(d.to)
    assert found is not None
    name, transport, remote = found
    for flag, value in (("--transport", d.transport), ("-l", d.selector), ("-n", d.namespace)):
        if value is not None:
            raise ConfigError(f"sync: {flag} cannot be used with {to} {name}")
    for flag, value in (("-c", d.container), ("--context", d.context)):
        if value is not None:
            raise ConfigError(f"sync: {flag} is for kubectl; {to} {name} names the container itself")
    return Where(name, remote, transport=transport)


def _options(args: argparse.Namespace, where: Optional[Where], destination: Destination) -> SyncOptions:
    if not os.path.lexists(args.local_dir):
        raise ConfigError(f"sync: {args.local_dir!r} does not exist")
    if not os.path.isdir(args.local_dir):
        raise ConfigError(f"sync: {args.local_dir!r} is not a directory")
    log_format = parse_log_format("--log-format", args.log_format) if args.log_format is not None else None
    if args.heartbeat is not None:
        parse_window(args.heartbeat, "--heartbeat")  # a bad value is a usage error now, not later
    return SyncOptions(
        args.local_dir,
        where,
        args.exclude,
        args.delete,
        args.verbose,
        args.quiet,
        log_format,
        args.colours,
        args.config,
        check_include(args.include, "sync: --include"),
        args.allow_mass_delete,
        heartbeat_flag=args.heartbeat,
        destination=destination,
        logs=args.logs,
        forwards=parse_forwards(args.port, "sync: -p"),
    )
