"""How the laptop side reaches the agent: the command whose stdio carries the protocol.

By default ``kubectl exec -i [-n NS] [-c C] [--context CTX] TARGET -- reloadd agent [DIR]``:
Kubernetes authenticates (the ``pods/exec`` RBAC right) and there is no port to open.
``--transport 'CMD ...'`` replaces everything before ``reloadd agent [DIR]`` (shell-split, the
agent's argv appended), so ``env`` runs the agent on this machine and ``docker exec -i box`` or
``ssh host`` reach other places; it is the same code path as kubectl.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from typing import IO, NamedTuple, Optional

from ...errors import ConfigError, ReloaddError

KUBECTL = "kubectl"
# --to spellings that need no cluster: the container's own exec is the transport, as with kubectl.
# `docker exec -i` keeps stdin open for the protocol; `compose exec -T` gives no terminal (its default
# would put one between the two sides and mangle the frames).
ENGINE_SCHEMES = {
    "docker://": ["docker", "exec", "-i"],
    "compose://": ["docker", "compose", "exec", "-T"],
}
AGENT_COMMAND = ["reloadd", "agent"]
ENGINE_CHECK_TIMEOUT = 30.0  # seconds `docker compose version` may take (a slow docker CLI)
SAME_HOST_TRANSPORT = "env"  # --transport env: the agent on this machine (for trying sync, and tests)
STDERR_TAIL = 20  # lines of a transport's or kubectl's own stderr kept for the failure line and -V


class Where(NamedTuple):
    """Where to sync to, as the command line said it."""

    target: Optional[str]  # pod/NAME, deploy/NAME, NAME; None with --selector or --transport
    remote_dir: Optional[str]  # None: the agent's working directory (the container's)
    namespace: Optional[str] = None
    container: Optional[str] = None
    context: Optional[str] = None
    selector: Optional[str] = None
    transport: Optional[str] = None


def same_host(where: Where) -> bool:
    """The pod side runs on this machine (``--transport env``): its 127.0.0.1 and its working
    directory are the laptop's own."""
    if where.transport is None:
        return False
    try:
        words = shlex.split(where.transport)
    except ValueError:
        return False
    return words[:1] == [SAME_HOST_TRANSPORT]


def agent_argv(remote_dir: Optional[str]) -> list[str]:
    return AGENT_COMMAND + ([remote_dir] if remote_dir else [])


def kubectl_scope(where: Where) -> list[str]:
    scope = []
    if where.namespace:
        scope += ["-n", where.namespace]
    if where.context:
        scope += ["--context", where.context]
    return scope


def exec_argv(where: Where, target: Optional[str]) -> list[str]:
    """The full argv that starts the agent for ``target`` (a pod, or None with --transport)."""
    if where.transport is not None:
        prefix = shlex.split(where.transport)
        if not prefix:
            raise ConfigError("--transport: empty command")
        return prefix + agent_argv(where.remote_dir)
    assert target is not None
    argv = [KUBECTL, "exec", "-i", *kubectl_scope(where)]
    if where.container:
        argv += ["-c", where.container]
    return argv + [target, "--"] + agent_argv(where.remote_dir)


def engine_to(value: str) -> Optional[tuple[str, str, Optional[str]]]:
    """``docker://CONTAINER[:DIR]`` or ``compose://SERVICE[:DIR]``: (name as given, transport, DIR), else None."""
    for scheme, prefix in ENGINE_SCHEMES.items():
        if value.startswith(scheme):
            name, _, remote = value[len(scheme) :].partition(":")
            if not name or "/" in name:
                raise ConfigError(f"--to {value!r}: expected {scheme}NAME[:DIR], e.g. {scheme}api:/app")
            return f"{scheme}{name}", shlex.join([*prefix, name]), remote or None
    return None


def check_engine(where: Where) -> None:
    """Before a docker:// or compose:// sync: the docker CLI (and its compose plugin) must be there.

    Without this, a missing compose plugin shows as docker's whole usage text and a closed stream.
    """
    if where.target is None or not where.target.startswith(tuple(ENGINE_SCHEMES)):
        return
    if shutil.which("docker") is None:
        raise ReloaddError(f"{where.target}: docker not found on PATH", 127)
    if not where.target.startswith("compose://"):
        return
    try:
        done = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=ENGINE_CHECK_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return  # a slow docker CLI: let the exec itself say what is wrong
    if done.returncode != 0:
        service = where.target.removeprefix("compose://")
        raise ReloaddError(
            f"{where.target}: `docker compose` (Compose v2) is not installed; use the container's name "
            f"(--to docker://NAME, see docker ps) or --transport 'docker-compose exec -T {service}'",
            1,
        )


def split_to(value: str, transport: bool) -> tuple[Optional[str], Optional[str]]:
    """``--to``: TARGET[:REMOTE_DIR] for kubectl; with --transport (or --selector) just [:]REMOTE_DIR."""
    if transport:
        return None, value.removeprefix(":") or None
    target, _, remote = value.partition(":")
    return target or None, remote or None


def stderr_tail(stderr: Optional[IO[bytes]]) -> list[str]:
    """The last non-empty lines a transport or kubectl process wrote to its stderr file."""
    if stderr is None:
        return []
    stderr.seek(0)
    lines = stderr.read().decode(errors="replace").splitlines()
    return [line for line in lines if line.strip()][-STDERR_TAIL:]
