"""How the laptop side reaches the agent: the command whose stdio carries the protocol.

By default ``kubectl exec -i [-n NS] [-c C] [--context CTX] TARGET -- reloadd agent [DIR]``:
Kubernetes authenticates (the ``pods/exec`` RBAC right) and there is no port to open.
``--transport 'CMD ...'`` replaces everything before ``reloadd agent [DIR]`` (shell-split, the
agent's argv appended), so ``env`` runs the agent on this machine and ``docker exec -i box`` or
``ssh host`` reach other places; it is the same code path as kubectl.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from typing import Optional

from ..errors import ConfigError, ReloaddError

KUBECTL = "kubectl"
AGENT_COMMAND = ["reloadd", "agent"]
LIST_TIMEOUT = 30.0  # seconds `kubectl get pods` may take (a slow API server, an expired login prompt)
RUNNING = "--field-selector=status.phase=Running"


@dataclass(frozen=True)
class Where:
    """Where to sync to, as the command line said it."""

    target: Optional[str]  # pod/NAME, deploy/NAME, NAME; None with --selector or --transport
    remote_dir: Optional[str]  # None: the agent's working directory (the container's)
    namespace: Optional[str] = None
    container: Optional[str] = None
    context: Optional[str] = None
    selector: Optional[str] = None
    transport: Optional[str] = None


def agent_argv(remote_dir: Optional[str]) -> list[str]:
    return AGENT_COMMAND + ([remote_dir] if remote_dir else [])


def _kubectl_scope(where: Where) -> list[str]:
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
    argv = [KUBECTL, "exec", "-i", *_kubectl_scope(where)]
    if where.container:
        argv += ["-c", where.container]
    return argv + [target, "--"] + agent_argv(where.remote_dir)


def list_pods(where: Where) -> list[str]:
    """``pod/NAME`` of every running pod the selector matches, from ``kubectl get pods -l``."""
    assert where.selector is not None
    argv = [KUBECTL, "get", "pods", "-l", where.selector, "-o", "name", RUNNING, *_kubectl_scope(where)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=LIST_TIMEOUT, check=False)
    except FileNotFoundError:
        raise ReloaddError(f"{KUBECTL} not found on PATH: it lists the pods for --selector", 127) from None
    except subprocess.TimeoutExpired:
        raise ReloaddError(f"`{shlex.join(argv)}` took longer than {LIST_TIMEOUT:g}s", 1) from None
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise ReloaddError(f"`{shlex.join(argv)}` failed: {message[0]}", 1)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def split_to(value: str, transport: bool) -> tuple[Optional[str], Optional[str]]:
    """``--to``: TARGET[:REMOTE_DIR] for kubectl; with --transport (or --selector) just [:]REMOTE_DIR."""
    if transport:
        return None, value.removeprefix(":") or None
    target, _, remote = value.partition(":")
    return target or None, remote or None
