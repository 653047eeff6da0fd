"""What forwarded ports (`reloadd sync -p`) cost, and what they do to file batches.

    python bench/sync_ports.py [EDITS]        (default 20 edits per case)

Runs the agent on this machine (``--transport env``) with reloadd supervising a small node app
in the "pod" directory, forwards one port to it, and measures:

- a small file batch's time (the sync's own "synced 1 file ... in N ms" line) with no port
  traffic, next to a client that requested 256 MB and reads nothing, and during a download of
  256 MB through the forwarded port;
- one small request's round trip, straight to the app and through the forwarded port (median
  of 200);
- a 256 MB download through the forwarded port (MB/s).

Never against a real cluster: kubectl's stream adds its own latency and bandwidth limits.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import Reloadd, free_port, make_app, wait_for  # noqa: E402
from sync_support import PORTS_SERVER_JS, control_env, tree  # noqa: E402

BIG_MB = 256
REQUESTS = 200


def get(port: int, path: str = "/") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = bytearray()
        while chunk := sock.recv(1024 * 1024):
            answer += chunk
    return bytes(answer)


def batch_times(sync: Reloadd, laptop: Path, pod: Path, edits: int) -> list[int]:
    before = len(re.findall(r"\] synced 1 file", sync.log()))
    for number in range(edits):
        text = f"edit {time.monotonic_ns()} {number}"
        (laptop / "notes.txt").write_text(text)  # .txt: synced, no restart
        wait_for(lambda: tree(pod).get("notes.txt") == text, what="the batch")  # noqa: B023
        time.sleep(0.1)
    times = [int(ms) for ms in re.findall(r"\] synced 1 file \(\d+ B\) to \S+ in (\d+) ms", sync.log())]
    return times[before:]


def describe(times: list[int]) -> str:
    return f"median {statistics.median(times):.0f} ms, max {max(times)} ms"


def main() -> None:
    edits = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        laptop = make_app(base / "laptop", server_js=PORTS_SERVER_JS)
        pod = base / "pod"
        pod.mkdir()
        remote, local = free_port(), free_port()
        env = {**control_env(base), "PORT": str(remote), "BIG_MB": str(BIG_MB)}
        sync = Reloadd(["sync", str(laptop), "--transport", "env", "--to", str(pod), "-p", f"{local}:{remote}"], laptop)
        app = None
        try:
            wait_for(lambda: "] synced " in sync.log(), what=f"the first sync:\n{sync.log()}")
            app = Reloadd(["server.js"], pod, env=env)
            wait_for(lambda: get_or_none(remote) is not None, what=f"the app:\n{app.log()}")
            print(f"batch, no port traffic: {describe(batch_times(sync, laptop, pod, edits))}")

            slow = socket.create_connection(("127.0.0.1", local))
            slow.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            time.sleep(1.0)
            print(f"batch, a client reading nothing: {describe(batch_times(sync, laptop, pod, edits))}")
            slow.close()

            done = threading.Event()
            download = threading.Thread(target=lambda: (get(local, "/big"), done.set()))
            download.start()
            times = batch_times(sync, laptop, pod, edits)
            running = not done.is_set()
            print(f"batch, during a {BIG_MB} MB download: {describe(times)} (download still running: {running})")
            download.join()

            for port, name in ((remote, "straight to the app"), (local, "through -p")):
                rtts = []
                for _ in range(REQUESTS):
                    began = time.perf_counter()
                    get(port)
                    rtts.append((time.perf_counter() - began) * 1000)
                print(f"small request {name}: median {statistics.median(rtts):.2f} ms")

            began = time.perf_counter()
            size = len(get(local, "/big"))
            seconds = time.perf_counter() - began
            print(f"{size / 1e6:.0f} MB through -p: {size / 1e6 / seconds:.0f} MB/s")
        finally:
            if app is not None:
                app.stop()
            sync.stop()


def get_or_none(port: int) -> bytes | None:
    try:
        return get(port)
    except OSError:
        return None


if __name__ == "__main__":
    os.environ.pop("NODE_ENV", None)
    main()
