"""What a warm process may preload, and when what it preloaded has gone stale.

Pure decisions on file names and stat stamps: only packages under ``node_modules`` are ever
preloaded (the app's own files never are), in the order the app required them, stopping at the
first package that hooks module loading; a change to package.json, a lockfile or node_modules
makes them stale, and so does an install the watcher did not report (``fingerprint``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

PRELOAD_LIMIT = 400  # packages named in one order line (a pipe write of a few tens of kB at most)
NODE_MODULES = "node_modules"

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


def package_name(filename: str) -> str:
    """The package a file belongs to, or the file itself when it is in no package."""
    package = package_of(filename)
    return package[0] if package else filename


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
