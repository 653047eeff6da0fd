"""A stand-in Kubernetes API server for driving the real ``kubectl`` in tests (plain http on 127.0.0.1).

It answers what ``kubectl exec`` and ``kubectl get pods [-w]`` ask for: discovery (``/api``,
``/apis``, ``/version``, the legacy resource lists), pods (get, list with label selectors, watch),
deployments (get), and ``pods/exec`` over WebSocket with the ``v5.channel.k8s.io`` subprotocol
(one channel byte per message: 0 stdin, 1 stdout, 2 stderr, 3 error with a Status JSON, 4 resize;
255 carries v5's "close this stream" signal). The exec'd command runs on this machine, in the
pod's directory with the pod's environment, as a container runtime would run it.

Faults a test can inject: a TCP drop of every exec stream, a frozen stream (the server stops
reading and writing but keeps the socket open), 403 for a verb and resource, exit status 127 (the
command is missing), 5xx answers, a pod that is Pending. The agent's stdin is left open when a
stream drops or freezes, as a real node may leave it: only the agent's own heartbeat ends it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's fixed key suffix
SUBPROTOCOL = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE_SIGNAL = 0, 1, 2, 3, 4, 255
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MISSING_COMMAND = 127  # what a shell answers for a command that is not installed


@dataclass
class Pod:
    name: str
    directory: Path
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    containers: list[str] = field(default_factory=lambda: ["app"])
    phase: str = "Running"
    namespace: str = "default"
    version: int = 1

    def to_json(self) -> dict[str, Any]:
        running = self.phase == "Running"
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": self.labels,
                "uid": f"uid-{self.name}",
                "resourceVersion": str(self.version),
            },
            "spec": {"containers": [{"name": name, "image": "example/dev:latest"} for name in self.containers]},
            "status": {
                "phase": self.phase,
                "conditions": [{"type": "Ready", "status": "True" if running else "False"}],
                "containerStatuses": [
                    {"name": name, "ready": running, "state": {"running": {}} if running else {"waiting": {}}}
                    for name in self.containers
                ],
            },
        }


class ExecStream:
    """One ``kubectl exec`` WebSocket and the process it runs."""

    def __init__(self, sock: socket.socket, proc: subprocess.Popen[bytes], pod: Pod) -> None:
        self.sock = sock
        self.proc = proc
        self.pod = pod
        self.running = threading.Event()  # cleared: frozen
        self.running.set()
        self.send_lock = threading.Lock()
        self.dropped = False

    def freeze(self) -> None:
        self.running.clear()

    def drop(self) -> None:
        self.dropped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.running.set()


class Cluster:
    """The state the server answers from, and the faults to inject."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pods: dict[str, Pod] = {}
        self.deployments: dict[str, dict[str, str]] = {}  # name -> pod labels it selects
        self.forbidden: set[str] = set()  # "create pods/exec", "list pods", "get pods"...
        self.missing_command = False
        self.start_delay = 0.0  # seconds before an exec'd command starts (a slow pod, a busy node)
        self.server_errors = 0  # answer this many requests with 503 first
        self.streams: list[ExecStream] = []
        self.requests: list[str] = []
        self.watches: list[Watch] = []
        self.lock = threading.Lock()
        self.resource_version = 100
        # The "container's" environment: this machine's, with the Python that runs the tests (and
        # its reloadd) first on PATH, and no NODE_ENV unless a pod sets one.
        self.base_env = {key: value for key, value in os.environ.items() if key != "NODE_ENV"}
        self.base_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    def add_pod(self, name: str, **kwargs: Any) -> Pod:
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        pod = Pod(name, directory, **kwargs)
        with self.lock:
            self.pods[name] = pod
        self._notify("ADDED", pod)
        return pod

    def update_pod(self, name: str, **changes: Any) -> None:
        pod = self.pods[name]
        for key, value in changes.items():
            setattr(pod, key, value)
        pod.version += 1
        self._notify("MODIFIED", pod)

    def remove_pod(self, name: str) -> None:
        with self.lock:
            pod = self.pods.pop(name)
        self._notify("DELETED", pod)
        for stream in self.streams:
            if stream.pod is pod:
                stream.drop()
                stream.proc.kill()  # the container is gone, and the process with it

    def _notify(self, kind: str, pod: Pod) -> None:
        self.resource_version += 1
        for watch in list(self.watches):
            if watch.selects(pod):
                watch.push({"type": kind, "object": pod.to_json()})

    def live_streams(self) -> list[ExecStream]:
        return [stream for stream in self.streams if stream.proc.poll() is None]

    def freeze_all(self) -> None:
        for stream in self.live_streams():
            stream.freeze()

    def drop_all(self) -> None:
        for stream in self.live_streams():
            stream.drop()

    def end_watches(self) -> None:
        for watch in list(self.watches):
            watch.push(None)

    def stop(self) -> None:
        self.end_watches()
        for stream in self.streams:
            stream.drop()
            if stream.proc.poll() is None:
                stream.proc.kill()
            stream.proc.wait()
            for pipe in (stream.proc.stdin, stream.proc.stdout, stream.proc.stderr):
                if pipe is not None:
                    try:
                        pipe.close()  # the pump threads see a closed file and end
                    except BrokenPipeError:
                        pass  # stdin still held bytes for an agent that is gone (a stopped one's full pipe)


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        else:
            key, _, value = term.replace("==", "=").partition("=")
            if labels.get(key) != value:
                return False
    return True


class Watch:
    def __init__(self, selector: str) -> None:
        self.selector = selector
        self.events: list[Optional[dict[str, Any]]] = []
        self.ready = threading.Condition()

    def selects(self, pod: Pod) -> bool:
        return selector_matches(self.selector, pod.labels)

    def push(self, event: Optional[dict[str, Any]]) -> None:
        with self.ready:
            self.events.append(event)
            self.ready.notify()

    def take(self) -> Iterator[Optional[dict[str, Any]]]:
        while True:
            with self.ready:
                while not self.events:
                    self.ready.wait()
                event = self.events.pop(0)
            yield event
            if event is None:
                return


def _discovery() -> dict[str, dict[str, Any]]:
    resource = {"namespaced": True, "kind": "", "verbs": ["get", "list", "watch"]}
    pods = {**resource, "name": "pods", "singularName": "pod", "kind": "Pod", "shortNames": ["po"]}
    pods_exec = {
        "name": "pods/exec",
        "singularName": "",
        "namespaced": True,
        "kind": "PodExecOptions",
        "verbs": ["create", "get"],
    }
    deployments = {
        **resource,
        "name": "deployments",
        "singularName": "deployment",
        "kind": "Deployment",
        "shortNames": ["deploy"],
    }
    return {
        "/api": {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        },
        "/apis": {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": "apps",
                    "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
                }
            ],
        },
        "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [pods, pods_exec]},
        "/apis/apps/v1": {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "apps/v1",
            "resources": [deployments],
        },
        "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"},
    }


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster: Cluster  # set on the subclass the server makes

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        path = unquote(url.path).rstrip("/")
        self.cluster.requests.append(f"{method} {self.path}")
        if self.cluster.server_errors > 0 and path not in _discovery():
            self.cluster.server_errors -= 1
            self._json(503, _status(503, "ServiceUnavailable", "the server is currently unable to handle the request"))
            return
        static = _discovery().get(path)
        if static is not None:
            self._json(200, static)
            return
        parts = path.split("/")
        # /api/v1/namespaces/NS/pods[/NAME[/exec]] and /apis/apps/v1/namespaces/NS/deployments/NAME
        if parts[1:3] == ["api", "v1"] and len(parts) >= 6 and parts[3] == "namespaces" and parts[5] == "pods":
            self._pods(parts[4], parts[6:], query)
        elif parts[1:4] == ["apis", "apps", "v1"] and len(parts) == 8 and parts[6] == "deployments":
            self._deployment(parts[5], parts[7])
        else:
            self._json(404, _status(404, "NotFound", "the server could not find the requested resource"))

    def _forbidden(self, verb: str, resource: str, name: str, namespace: str) -> bool:
        if f"{verb} {resource}" not in self.cluster.forbidden:
            return False
        what = f'pods "{name}" is forbidden' if name else "pods is forbidden"
        message = (
            f'{what}: User "dev" cannot {verb} resource "{resource}" in API group "" in the namespace "{namespace}"'
        )
        self._json(403, _status(403, "Forbidden", message))
        return True

    def _pods(self, namespace: str, rest: list[str], query: dict[str, str]) -> None:
        selector = query.get("labelSelector", "")
        if not rest:
            if query.get("watch") in ("true", "1"):
                if not self._forbidden("watch", "pods", "", namespace):
                    self._watch(selector)
                return
            if self._forbidden("list", "pods", "", namespace):
                return
            items = [pod.to_json() for pod in self.cluster.pods.values() if selector_matches(selector, pod.labels)]
            rv = str(self.cluster.resource_version)
            self._json(
                200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}
            )
            return
        name = rest[0]
        if len(rest) == 2 and rest[1] == "exec":
            if not self._forbidden("create", "pods/exec", name, namespace):
                self._exec(name, query)
            return
        if self._forbidden("get", "pods", name, namespace):
            return
        pod = self.cluster.pods.get(name)
        if pod is None:
            self._json(404, _status(404, "NotFound", f'pods "{name}" not found'))
        else:
            self._json(200, pod.to_json())

    def _deployment(self, namespace: str, name: str) -> None:
        labels = self.cluster.deployments.get(name)
        if labels is None:
            self._json(404, _status(404, "NotFound", f'deployments.apps "{name}" not found'))
            return
        selector = {"matchLabels": labels}
        self._json(
            200,
            {
                "kind": "Deployment",
                "apiVersion": "apps/v1",
                "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "1"},
                "spec": {
                    "selector": selector,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "app", "image": "example/dev:latest"}]},
                    },
                },
                "status": {"replicas": 1},
            },
        )

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _watch(self, selector: str) -> None:
        watch = Watch(selector)
        self.cluster.watches.append(watch)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            for event in watch.take():
                if event is None:
                    break
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        finally:
            self.cluster.watches.remove(watch)
        self.close_connection = True

    # -- pods/exec over WebSocket --------------------------------------------------------------
    def _exec(self, name: str, query: dict[str, str]) -> None:
        pod = self.cluster.pods.get(name)
        if pod is None:
            self._json(404, _status(404, "NotFound", f'pods "{name}" not found'))
            return
        container = query.get("container", pod.containers[0])
        if pod.phase != "Running":
            self._json(
                400,
                _status(
                    400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
                ),
            )
            return
        if container not in pod.containers:
            self._json(400, _status(400, "BadRequest", f"container {container} is not valid for pod {name}"))
            return
        protocols = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if self.headers.get("Upgrade", "").lower() != "websocket" or SUBPROTOCOL not in protocols:
            self._json(400, _status(400, "BadRequest", "this stand-in speaks only v5.channel.k8s.io over WebSocket"))
            return
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", SUBPROTOCOL)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        command = parse_qs(urlsplit(self.path).query).get("command", [])
        self._run(pod, command)

    def _run(self, pod: Pod, command: list[str]) -> None:
        sock = self.connection
        if self.cluster.missing_command:
            message = f"exec: {command[0]!r}: executable file not found in $PATH"
            _send_frame(sock, OP_BINARY, bytes([STDERR]) + message.encode() + b"\n")
            _send_frame(sock, OP_BINARY, bytes([ERROR]) + json.dumps(_exit_status(command, MISSING_COMMAND)).encode())
            _send_frame(sock, OP_CLOSE, struct.pack(">H", 1000))
            return
        env = {**self.cluster.base_env, **pod.env}
        time.sleep(self.cluster.start_delay)
        proc = subprocess.Popen(
            command, cwd=pod.directory, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        stream = ExecStream(sock, proc, pod)
        self.cluster.streams.append(stream)
        pumps = [
            threading.Thread(target=_pump_out, args=(stream, proc.stdout, STDOUT), daemon=True),
            threading.Thread(target=_pump_out, args=(stream, proc.stderr, STDERR), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        threading.Thread(target=_pump_in, args=(stream, self.rfile), daemon=True).start()
        for pump in pumps:
            pump.join()
        status = proc.wait()
        stream.running.wait()
        if stream.dropped:
            return
        body = {"metadata": {}, "status": "Success"} if status == 0 else _exit_status(command, status)
        try:
            with stream.send_lock:
                _send_frame(sock, OP_BINARY, bytes([ERROR]) + json.dumps(body).encode())
                _send_frame(sock, OP_CLOSE, struct.pack(">H", 1000))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _exit_status(command: list[str], status: int) -> dict[str, Any]:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {command}, exit code {status}",  # noqa: E501
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(status)}]},
    }


def _send_frame(sock: socket.socket, opcode: int, payload: bytes) -> None:
    length = len(payload)
    if length < 126:
        header = struct.pack(">BB", 0x80 | opcode, length)
    elif length < 65536:
        header = struct.pack(">BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack(">BBQ", 0x80 | opcode, 127, length)
    sock.sendall(header + payload)


def _read_frame(rfile: Any) -> Optional[tuple[bool, int, bytes]]:
    head = rfile.read(2)
    if len(head) < 2:
        return None
    fin, opcode = bool(head[0] & 0x80), head[0] & 0x0F
    length = head[1] & 0x7F
    if length == 126:
        length = struct.unpack(">H", rfile.read(2))[0]
    elif length == 127:
        length = struct.unpack(">Q", rfile.read(8))[0]
    mask = rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
    data = rfile.read(length)
    if len(data) < length:
        return None
    if any(mask):  # unmask in one big-integer XOR: byte by byte, megabytes would take seconds
        key = (mask * (length // 4 + 1))[:length]
        data = (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
    return fin, opcode, data


def _pump_in(stream: ExecStream, rfile: Any) -> None:
    """Client messages to the process's stdin, until the client closes, the stream drops or stdin is closed."""
    stdin = stream.proc.stdin
    assert stdin is not None
    message = b""
    while True:
        stream.running.wait()
        try:
            frame = _read_frame(rfile)
        except (OSError, ValueError):
            frame = None
        stream.running.wait()
        if frame is None or stream.dropped:
            return  # a dropped stream leaves the process's stdin open: a node may well do so
        fin, opcode, payload = frame
        if opcode == OP_PING:
            try:
                with stream.send_lock:
                    _send_frame(stream.sock, OP_PONG, payload)
            except OSError:
                return
            continue
        if opcode == OP_CLOSE:
            _close(stdin)
            return
        if opcode not in (OP_CONT, OP_TEXT, OP_BINARY):
            continue
        message += payload
        if not fin:
            continue
        channel, data, message = message[0], message[1:], b""
        if channel == STDIN and data:
            try:
                stdin.write(data)
                stdin.flush()
            except (OSError, ValueError):
                pass
        elif channel == CLOSE_SIGNAL and data[:1] == bytes([STDIN]):
            _close(stdin)


def _close(stdin: Any) -> None:
    try:
        stdin.close()
    except (OSError, ValueError):
        pass  # the agent is gone and its pipe full: nothing more to say to it


def _pump_out(stream: ExecStream, pipe: Any, channel: int) -> None:
    while True:
        try:
            data = os.read(pipe.fileno(), 64 * 1024)
        except (OSError, ValueError):  # closed by Cluster.stop
            return
        if not data:
            return
        stream.running.wait()
        if stream.dropped:
            continue  # keep draining so the process is never blocked by a dead stream's pipe
        try:
            with stream.send_lock:
                _send_frame(stream.sock, OP_BINARY, bytes([channel]) + data)
        except OSError:
            continue


class StandIn:
    """The server on 127.0.0.1 (an ephemeral port), its cluster, and a kubeconfig for kubectl."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.cluster = Cluster(root / "pods")
        handler = type("BoundHandler", (Handler,), {"cluster": self.cluster})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.kubeconfig = root / "kubeconfig"
        self.kubeconfig.write_text(kubeconfig(f"http://127.0.0.1:{self.port}"))

    def env(self) -> dict[str, str]:
        """What kubectl needs to talk to this server only: its kubeconfig, and a private cache."""
        return {"KUBECONFIG": str(self.kubeconfig), "HOME": str(self.kubeconfig.parent)}

    def stop(self) -> None:
        self.cluster.stop()
        self.server.shutdown()
        self.server.server_close()


def kubeconfig(server: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": server}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "dev", "namespace": "default"}}],
            "users": [{"name": "dev", "user": {"token": "stand-in"}}],
        }
    )
