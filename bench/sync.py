"""Save on the laptop -> new version served by the app in the "pod": reloadd sync vs Syncthing vs tar-per-batch.

    python bench/sync.py [--saves 20] [--quick]

Everything runs on this machine in one run, with the same app under the same reloadd in a
"pod" directory; only the way the file gets there changes:

- ``reloadd sync --transport env``: the same code path as ``kubectl exec``, minus the network;
- Syncthing (the Debian package), two instances on 127.0.0.1 sharing one folder with
  ``fsWatcherDelayS`` at its minimum, 1 s (global/local discovery, relays, NAT off);
- tar per batch, what Skaffold and Tilt do: a watcher (watchfiles, 20 ms debounce) and, per
  batch, a new ``tar -c | tar -x`` pair of processes (``kubectl exec ... tar x`` without kubectl).

Also: a 1,000-file checkout through reloadd sync (until every file is in place and the app
serves the new version), the initial sync of a 5,000-file, 50 MB tree (node_modules excluded),
and the idle CPU of the laptop side and the agent. Prints a Markdown table; figures go in
BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import psutil

SERVER_JS = """\
const http = require('http');
const version = require('./version.js');
const server = http.createServer((req, res) => res.end(version));
server.listen(Number(process.env.PORT), '127.0.0.1');
"""
STIGNORE = "starts.log\nport\n"
POLL = 0.005  # seconds between HTTP polls while waiting for the new version
DEADLINE = 30.0  # seconds any single wait may take before the bench gives up
SETTLE = 1.5  # seconds between saves, so each save is its own batch for every method
IDLE_SECONDS = 10.0


def reloadd_bin() -> str:
    return str(Path(sys.executable).with_name("reloadd"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def wait(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(POLL)


def make_app(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "server.js").write_text(SERVER_JS)
    (root / "version.js").write_text("module.exports = 'v0';\n")
    return root


def quiet_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NODE_ENV"}
    env.update({"NO_COLOR": "1", **(extra or {})})
    return env


@contextmanager
def started(argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]:
            try:
                child.terminate()
            except psutil.Error:
                pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def pod_app(pod: Path, control: Path) -> Iterator[int]:
    """reloadd running the app in the pod directory; yields the app's port."""
    port = free_port()
    env = quiet_env({"PORT": str(port), "RELOADD_CONTROL_DIR": str(control)})
    with started([reloadd_bin(), "server.js"], pod, env):
        wait(lambda: get(port).startswith("v0"), "the app in the pod")
        yield port


def save_rounds(laptop: Path, port: int, saves: int, tag: str) -> list[float]:
    """Save version.js ``saves`` times; the ms from each save until the app serves it."""
    times = []
    for index in range(1, saves + 1):
        version = f"{tag}{index}"
        began = time.perf_counter()
        (laptop / "version.js").write_text(f"module.exports = '{version}';\n")
        wait(lambda: get(port) == version, f"{version} served")  # noqa: B023
        times.append((time.perf_counter() - began) * 1000)
        time.sleep(SETTLE)
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# -- the three methods -------------------------------------------------------------------------------
@contextmanager
def reloadd_sync(laptop: Path, pod: Path, control: Path) -> Iterator[subprocess.Popen[bytes]]:
    argv = [reloadd_bin(), "sync", str(laptop), "--transport", "env", "--to", str(pod)]
    with started(argv, laptop.parent, quiet_env({"RELOADD_CONTROL_DIR": str(control)})) as proc:
        wait(lambda: (pod / "version.js").exists(), "the first reloadd sync")
        yield proc


@contextmanager
def tar_per_batch(laptop: Path, pod: Path) -> Iterator[None]:
    """A watcher and one new tar process pair per batch, as Skaffold and Tilt do with kubectl exec."""
    import watchfiles

    stop = threading.Event()

    def loop() -> None:
        for changes in watchfiles.watch(laptop, debounce=20, step=2, stop_event=stop):
            names = sorted({os.path.relpath(path, laptop) for _, path in changes if os.path.isfile(path)})
            if names:
                pack = subprocess.Popen(["tar", "-C", str(laptop), "-cf", "-", *names], stdout=subprocess.PIPE)
                subprocess.run(["tar", "-C", str(pod), "-xmf", "-"], stdin=pack.stdout, check=False)
                pack.wait()

    shutil.copytree(laptop, pod, dirs_exist_ok=True)
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    time.sleep(0.5)  # the watcher's first scan
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def _syncthing_home(home: Path, gui: int, listen: int) -> tuple[str, ET.ElementTree]:
    subprocess.run(["syncthing", "generate", f"--home={home}", "--no-default-folder", "--skip-port-probing"],
                   check=True, capture_output=True)  # fmt: skip
    tree = ET.parse(home / "config.xml")
    root = tree.getroot()
    device = root.find("device")
    assert device is not None
    root.find("gui/address").text = f"127.0.0.1:{gui}"  # type: ignore[union-attr]
    options = root.find("options")
    assert options is not None
    settings = {"listenAddress": f"tcp://127.0.0.1:{listen}", "globalAnnounceEnabled": "false",
                "localAnnounceEnabled": "false", "relaysEnabled": "false", "natEnabled": "false",
                "urAccepted": "-1", "autoUpgradeIntervalH": "0", "crashReportingEnabled": "false",
                "startBrowser": "false", "setLowPriority": "false"}  # fmt: skip
    for key, value in settings.items():
        options.find(key).text = value  # type: ignore[union-attr]
    return device.get("id", ""), tree


def _share(tree: ET.ElementTree, folder: Path, me: str, peer: str, peer_listen: int) -> None:
    root = tree.getroot()
    peer_device = ET.SubElement(root, "device", id=peer, name="peer", compression="metadata", introducer="false")
    ET.SubElement(peer_device, "address").text = f"tcp://127.0.0.1:{peer_listen}"
    shared = ET.SubElement(root, "folder", id="app", label="app", path=str(folder), type="sendreceive",
                           rescanIntervalS="3600", fsWatcherEnabled="true", fsWatcherDelayS="1")  # fmt: skip
    for device_id in (me, peer):
        ET.SubElement(shared, "device", id=device_id)
    (folder / ".stfolder").mkdir(exist_ok=True)
    (folder / ".stignore").write_text(STIGNORE)


@contextmanager
def syncthing_pair(laptop: Path, pod: Path, base: Path) -> Iterator[None]:
    ports = [free_port() for _ in range(4)]
    homes = [base / "st-laptop", base / "st-pod"]
    ids, trees = zip(*(_syncthing_home(home, ports[i], ports[2 + i]) for i, home in enumerate(homes)))
    for index, (folder, tree) in enumerate(zip((laptop, pod), trees)):
        _share(tree, folder, ids[index], ids[1 - index], ports[3 - index])
        tree.write(homes[index] / "config.xml")
    env = quiet_env({"STNODEFAULTFOLDER": "1", "STNOUPGRADE": "1"})
    argv = ["syncthing", "serve", "--no-browser", "--no-restart", "--logflags=0"]
    with started(argv + [f"--home={homes[0]}"], base, env), started(argv + [f"--home={homes[1]}"], base, env):
        wait(lambda: (pod / "version.js").exists(), "Syncthing's first sync", timeout=120)
        yield


# -- the extra figures ------------------------------------------------------------------------------
def checkout_round(laptop: Path, pod: Path, port: int, files: int) -> float:
    staging = laptop.parent / f"checkout-{time.monotonic_ns()}"
    staging.mkdir()
    for index in range(files):
        (staging / f"f{index:04}.js").write_text(f"module.exports = {index};\n" + "// padding\n" * 20)
    began = time.perf_counter()
    staging.rename(laptop / "many")
    (laptop / "version.js").write_text("module.exports = 'checkout';\n")
    wait(lambda: get(port) == "checkout", "the checkout served")
    elapsed = (time.perf_counter() - began) * 1000
    assert len(os.listdir(pod / "many")) == files, "not every file was in place when the app served it"
    return elapsed


def initial_sync_round(base: Path, files: int, megabytes: int, control: Path) -> float:
    laptop = make_app(base / "big-laptop")
    size = megabytes * 1024 * 1024 // files
    for index in range(files):
        directory = laptop / "src" / f"d{index % 100:02}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index:05}.js").write_bytes(os.urandom(size // 2).hex().encode()[:size])
    (laptop / "node_modules" / "dep").mkdir(parents=True)
    (laptop / "node_modules" / "dep" / "index.js").write_text("excluded")
    pod = base / "big-pod"
    pod.mkdir()
    began = time.perf_counter()
    with reloadd_sync(laptop, pod, control):
        wait(lambda: (pod / "src" / "d99" / f"f{files - 1:05}.js").exists(), "the initial sync", timeout=300)
        return (time.perf_counter() - began) * 1000


def idle_cpu(proc: psutil.Process, seconds: float) -> float:
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    return (after.user + after.system - before.user - before.system) / seconds * 100


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 saves, a smaller initial tree")
    args = parser.parse_args()
    saves = 3 if args.quick else args.saves
    base = Path(tempfile.mkdtemp(prefix="reloadd-sync-bench-"))
    control = base / "control"
    control.mkdir(mode=0o700)
    results: dict[str, list[float]] = {}
    extra: dict[str, str] = {}
    try:
        laptop, pod = make_app(base / "laptop-sync"), base / "pod-sync"
        pod.mkdir()
        with reloadd_sync(laptop, pod, control) as sync, pod_app(pod, control) as port:
            results["reloadd sync + reloadd"] = save_rounds(laptop, port, saves, "s")
            extra["checkout"] = f"{checkout_round(laptop, pod, port, 1000):.0f} ms"
            agent = next(p for p in psutil.Process(sync.pid).children(recursive=True) if "agent" in p.cmdline())
            laptop_cpu, agent_cpu = idle_cpu(psutil.Process(sync.pid), IDLE_SECONDS), idle_cpu(agent, IDLE_SECONDS)
            extra["idle"] = f"laptop side {laptop_cpu:.2f} %, agent {agent_cpu:.2f} % of a core"
        laptop, pod = make_app(base / "laptop-st"), base / "pod-st"
        pod.mkdir()
        with syncthing_pair(laptop, pod, base), pod_app(pod, control) as port:
            time.sleep(2)  # both instances settle after the first exchange
            results["Syncthing (fsWatcherDelayS 1) + reloadd"] = save_rounds(laptop, port, saves, "t")
        laptop, pod = make_app(base / "laptop-tar"), base / "pod-tar"
        pod.mkdir()
        with tar_per_batch(laptop, pod), pod_app(pod, control) as port:
            results["tar per batch + reloadd"] = save_rounds(laptop, port, saves, "r")
        files, megabytes = (500, 5) if args.quick else (5000, 50)
        took = initial_sync_round(base, files, megabytes, control)
        extra["initial"] = f"{took:.0f} ms for {files} files, {megabytes} MB"
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"save -> served, {saves} saves each, one run, same app and reloadd in the pod dir\n")
    print("| method | median ms | p90 ms | min ms | max ms |\n|---|---|---|---|---|")
    for name, values in results.items():
        figures = (statistics.median(values), pct(values, 0.9), min(values), max(values))
        print(f"| {name} | " + " | ".join(f"{figure:.0f}" for figure in figures) + " |")
    ours = statistics.median(results["reloadd sync + reloadd"])
    theirs = statistics.median(results["Syncthing (fsWatcherDelayS 1) + reloadd"])
    print(f"\nreloadd sync / Syncthing median: {ours / theirs:.2f} (goal <= 0.2)")
    print(f"reloadd sync median: {ours:.0f} ms (goal <= 200)")
    print(f"1,000-file checkout, save -> every file in place and served: {extra['checkout']} (goal <= 3000 ms)")
    print(f"initial sync: {extra['initial']} (node_modules excluded)")
    print(f"idle CPU over {IDLE_SECONDS:g} s: {extra['idle']}")


if __name__ == "__main__":
    main()
