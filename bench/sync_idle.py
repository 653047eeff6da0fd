"""Idle CPU of `reloadd sync` through the real kubectl: the laptop side's process tree and each agent.

    python bench/sync_idle.py [SECONDS]        (default 60 s per case)

Starts the stand-in Kubernetes API server the system tests use (tests/kube_standin.py, plain
http on 127.0.0.1, pods/exec over WebSocket, the agents run on this machine), syncs a small app
into one pod (``--to pod/web-1``) and into three pods (``-l app=web``), waits for the first sync
and a settling pause, then counts CPU time over SECONDS from /proc/PID/stat (utime + stime, the
whole tree: reloadd and every kubectl it runs) for the laptop side, and for each agent process.
Nothing changes during the measurement: what is left is heartbeats, kubectl's own WebSocket
pings, and whatever else wakes periodically. Never against a real cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from kube_standin import StandIn  # noqa: E402
from support import make_app, reloadd_argv  # noqa: E402

SETTLE = 3.0  # seconds after the first sync before measuring (kubectl's start-up is not idle)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    return cpu_seconds_path(f"/proc/{pid}/stat")


def cpu_seconds_path(path: str) -> float:
    try:
        with open(path) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def cpu_seconds_task(pid: int, tid: str) -> float:
    return cpu_seconds_path(f"/proc/{pid}/task/{tid}/stat")


def thread_name(pid: int, tid: str) -> str:
    try:
        with open(f"/proc/{pid}/task/{tid}/comm") as comm:
            return f"{comm.read().strip()}[{tid}]"
    except OSError:
        return tid


def tree_of(pid: int) -> list[int]:
    try:
        return [pid] + [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def measure(label: str, args: list[str], pods: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        control = base / "control"
        control.mkdir(mode=0o700)
        standin = StandIn(base / "cluster")
        for index in range(1, pods + 1):
            standin.cluster.add_pod(f"web-{index}", labels={"app": "web"}, env={"RELOADD_CONTROL_DIR": str(control)})
        laptop = make_app(base / "laptop")
        env = {**os.environ, **standin.env(), "RELOADD_CONTROL_DIR": str(control), "NO_COLOR": "1"}
        log = base / "sync.log"
        with open(log, "wb") as err:
            sync = subprocess.Popen(reloadd_argv() + ["sync", str(laptop), *args], env=env, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while log.read_text().count("] synced ") < pods and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(SETTLE)
            laptop_pids = tree_of(sync.pid)
            agents = [stream.proc.pid for stream in standin.cluster.live_streams()]
            before = {pid: cpu_seconds(pid) for pid in laptop_pids + agents}
            threads_before = {tid: cpu_seconds_task(sync.pid, tid) for tid in os.listdir(f"/proc/{sync.pid}/task")}
            time.sleep(seconds)
            by_thread = {
                thread_name(sync.pid, tid): (cpu_seconds_task(sync.pid, tid) - start) / seconds * 100
                for tid, start in threads_before.items()
            }
            used = {pid: cpu_seconds(pid) - start for pid, start in before.items()}
            laptop_pct = sum(used[pid] for pid in laptop_pids) / seconds * 100
            agent_pct = [used[pid] / seconds * 100 for pid in agents]
            print(f"{label}: laptop side ({len(laptop_pids)} processes) {laptop_pct:.3f} % of a core; "
                  f"agents {', '.join(f'{pct:.3f} %' for pct in agent_pct)}; "
                  f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
            reloadd_only = used[sync.pid] / seconds * 100
            print(f"    of which reloadd itself {reloadd_only:.3f} %, kubectl {laptop_pct - reloadd_only:.3f} %")
            print("    reloadd by thread: " + ", ".join(f"{name} {pct:.3f} %" for name, pct in by_thread.items()))
        finally:
            sync.terminate()
            sync.wait(15)
            standin.stop()


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    measure("one pod (--to pod/web-1)", ["--to", "pod/web-1"], 1, seconds)
    measure("three pods (-l app=web)", ["-l", "app=web"], 3, seconds)


if __name__ == "__main__":
    main()
