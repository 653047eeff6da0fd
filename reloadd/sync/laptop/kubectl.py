"""kubectl as the laptop uses it: is it installed, which pods a selector names (``kubectl get``),
and its failures, each turned into one line of ours, an exit status, and whether to retry.

kubectl reports a failure on stderr among klog noise (``E1204 ... memcache.go ... Unhandled
Error``, ``websocket: close 1006``), and the real cause often hides behind it: a container
without reloadd comes back as exit status 127, a missing kubeconfig as a page of
``localhost:8080`` lines. ``explain`` reads the captured stderr and the exit status and says
what happened in the user's terms. Transient failures (the cluster unreachable, 5xx answers, a
pod not running yet) are retried; the others end a first connection with the status below and,
once a pod was synced, are retried as a pod restarting would be.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import NamedTuple, Optional

from ...errors import EXIT_USAGE, ReloaddError
from .transport import KUBECTL, Where, kubectl_scope

# Exit statuses of `reloadd sync` (the README's table lists them with production.py's 3).
EXIT_FAILED = 1  # the agent could not be started, for a reason not listed below (kubectl's own line)
EXIT_NO_KUBECTL = EXIT_USAGE  # kubectl is not on PATH: nothing to retry
EXIT_FORBIDDEN = 4  # RBAC: the user may not create pods/exec (or list/watch pods for -l)
EXIT_NOT_FOUND = 5  # no such pod, deployment or container
EXIT_NO_AGENT = 6  # the container has no `reloadd` (exec exit status 127)
EXIT_VERSION = 7  # the agent in the pod speaks another protocol version
EXIT_NO_CLUSTER = 8  # kubectl has no usable context (no kubeconfig, current-context unset, unknown --context)
MISSING_COMMAND = 127  # a container runtime's (and a shell's) status for a command not found
LOOKUP_TIMEOUT = 10.0  # seconds for the `kubectl get pod` that names a pod's containers
NOISE = re.compile(r"^[EWIF]\d{4} ")  # klog's prefix: kubectl's internal logging, never for the user
BASE_IMAGE_HINT = "build the dev image FROM the dev base image (Dockerfile.base) or pip install reloadd in it"


class Failure(NamedTuple):
    message: str
    exit_code: int
    transient: bool = False


def require_kubectl() -> None:
    """kubectl missing ends the sync at once, -l or not: every pod would fail the same way."""
    if shutil.which(KUBECTL) is None:
        raise ReloaddError(f"{KUBECTL} is not installed (not on PATH): reloadd sync runs the agent through it, "
                           "or use --transport", EXIT_NO_KUBECTL)  # fmt: skip


def explain(name: str, status: Optional[int], stderr: list[str], where: Where, why: str = "") -> Failure:
    """Why starting the agent in ``name`` through kubectl failed (``why``: what this side saw, for when
    kubectl said nothing and had not exited)."""
    lines = [line for line in stderr if not NOISE.match(line)]
    text = "\n".join(lines)
    if status == MISSING_COMMAND or "executable file not found" in text or "no such file or directory" in text:
        return Failure(f"{name}: reloadd is not installed in the container{_container(where)}: {BASE_IMAGE_HINT}",
                       EXIT_NO_AGENT)  # fmt: skip
    forbidden = re.search(r'cannot (\w+) resource "([^"]+)"', text)
    if forbidden:
        verb, resource = forbidden.groups()
        user = re.search(r'User "([^"]*)"', text)
        who = f" (user {user.group(1)})" if user else ""
        return Failure(f"{name}: not allowed to {verb} {resource}{_namespace(text)}{who}: "
                       f"RBAC forbids it; ask for the {resource} {verb} permission", EXIT_FORBIDDEN)  # fmt: skip
    return _not_found(name, text, where) or _cluster(text) or _transient(name, text) or _other(name, status, lines, why)


def _container(where: Where) -> str:
    return f" {where.container!r}" if where.container else ""


def _namespace(text: str) -> str:
    found = re.search(r'in the namespace "([^"]+)"', text)
    return f" in namespace {found.group(1)}" if found else ""


def _not_found(name: str, text: str, where: Where) -> Optional[Failure]:
    missing = re.search(r'(pods|deployments\.apps|statefulsets\.apps|replicasets\.apps) "([^"]+)" not found', text)
    if missing:
        kind = {"pods": "pod", "deployments.apps": "deployment"}.get(missing.group(1), missing.group(1))
        return Failure(f"{kind} {missing.group(2)} not found{_namespace_of(where)}", EXIT_NOT_FOUND)
    container = re.search(r"container (\S+) is not valid for pod (\S+)", text) or re.search(
        r'container "?([^"\s]+)"? not found in pod "?([^"\s]+)"?', text
    )
    if container:
        there = containers_of(where, f"pod/{container.group(2)}")
        listed = f": it has {', '.join(there)}" if there else ""
        return Failure(f"{name}: no container {container.group(1)!r}{listed}", EXIT_NOT_FOUND)
    return None


def _namespace_of(where: Where) -> str:
    return f" in namespace {where.namespace}" if where.namespace else ""


def _cluster(text: str) -> Optional[Failure]:
    if "localhost:8080 was refused" in text or "current-context is not set" in text:
        return Failure("kubectl has no current context (no kubeconfig, or current-context unset): "
                       "kubectl config use-context NAME, or --context NAME", EXIT_NO_CLUSTER)  # fmt: skip
    unknown = re.search(r"context was not found for specified context: (\S+)", text)
    if unknown:
        return Failure(f"kubectl has no context {unknown.group(1)!r}: kubectl config get-contexts lists them",
                       EXIT_NO_CLUSTER)  # fmt: skip
    if "Error in configuration" in text or "invalid configuration" in text:
        return Failure(f"kubectl's configuration is unusable: {_last(text)}", EXIT_NO_CLUSTER)
    return None


TRANSIENT = (
    (re.compile(r"connection to the server (\S+) was refused|dial tcp (\S+?):? .*(refused|timeout|unreachable)"),
     "cannot reach the cluster"),
    (re.compile(r"Unable to connect to the server|i/o timeout|TLS handshake timeout|no such host|connection reset"),
     "cannot reach the cluster"),
    (re.compile(r"ServiceUnavailable|InternalError|InternalServerError|the server is currently unable|"
                r"\(Timeout\)|TooManyRequests|status code 5\d\d|50[0-4]"), "the API server answered with an error"),
    (re.compile(r"waiting to start|is not running|does not have a host assigned|ContainerCreating|"
                r"PodInitializing|container not found|cannot exec into a container in a completed pod"),
     "the pod is not running yet"),
    (re.compile(r"websocket: close|unexpected EOF|broken pipe|error dialing backend|upgrade connection"),
     "the exec stream broke"),
)  # fmt: skip


def _transient(name: str, text: str) -> Optional[Failure]:
    for pattern, what in TRANSIENT:
        if pattern.search(text):
            return Failure(f"{name}: {what} ({_last(text)})", EXIT_FAILED, transient=True)
    return None


def _other(name: str, status: Optional[int], lines: list[str], why: str) -> Failure:
    if lines:
        said = lines[-1].strip()
    elif status is not None:
        said = f"exit status {status}"
    else:
        said = why or "no answer"  # kubectl said nothing and still runs: what this side saw
    return Failure(f"{name}: could not start the sync: {said}", EXIT_FAILED)


def _last(text: str) -> str:
    line = text.strip().splitlines()[-1] if text.strip() else ""
    line = re.sub(r"^(error: |Error from server \([A-Za-z]+\): )", "", line)
    return line[:200]


def containers_of(where: Where, pod: str) -> list[str]:
    """The containers ``pod`` has, to name them when -c names none of them (empty if unknown)."""
    argv = [KUBECTL, "get", pod, *kubectl_scope(where), "-o", "jsonpath={.spec.containers[*].name}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=LOOKUP_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.split() if done.returncode == 0 else []
