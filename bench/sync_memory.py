"""Peak memory (RSS) of both sides of ``reloadd sync`` on a large tree.

Builds a tree of small files (default 100,000 in 1,000 folders) in a temporary directory and
runs ``reloadd sync --transport env`` into an empty pod directory (the initial sync), then once
more into the now identical pod (a start with nothing to send). For each run it prints the peak
resident set size (the kernel's ``VmHWM``) of the laptop side and of the agent, read just before
each is stopped, and the wall time to the "synced"/"in sync" line.

    python bench/sync_memory.py [--files 100000] [--dirs 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

DONE_MARKERS = ("synced ", "in sync with ")
RUN_TIMEOUT = 600.0  # seconds one sync may take before the bench gives up


def build_tree(root: Path, files: int, dirs: int) -> None:
    per_dir = max(1, files // dirs)
    for index in range(dirs):
        directory = root / "src" / f"d{index:04d}"
        directory.mkdir(parents=True)
        for number in range(per_dir):
            (directory / f"m{number:03d}.js").write_text(f"module.exports = {index * per_dir + number};\n")


def peak_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def agent_pid(pid: int) -> int:
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "agent" in child.cmdline():
                return child.pid
        except psutil.NoSuchProcess:
            continue
    return 0


def one_run(laptop: Path, pod: Path) -> tuple[float, int, int]:
    """(seconds to the summary line, laptop peak KB, agent peak KB)."""
    log = tempfile.TemporaryFile()
    started = time.monotonic()
    argv = ["reloadd", "sync", str(laptop), "--transport", "env", "--to", str(pod)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    agent = 0
    try:
        while time.monotonic() - started < RUN_TIMEOUT:
            agent = agent or agent_pid(proc.pid)
            log.seek(0)
            text = log.read().decode(errors="replace")
            if any(marker in text for marker in DONE_MARKERS) or proc.poll() is not None:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        laptop_kb, agent_kb = peak_kb(proc.pid), peak_kb(agent) if agent else 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    if proc.returncode not in (0, None):
        log.seek(0)
        sys.exit(f"reloadd sync failed ({proc.returncode}):\n{log.read().decode(errors='replace')}")
    return elapsed, laptop_kb, agent_kb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--dirs", type=int, default=1_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reloadd-sync-memory-"))
    try:
        laptop, pod = work / "laptop", work / "pod"
        build_tree(laptop, args.files, args.dirs)
        pod.mkdir()
        print(f"| {args.files:,} files in {args.dirs:,} folders | time s | laptop peak RSS MB | agent peak RSS MB |")
        print("|---|---|---|---|")
        for case in ("initial sync into an empty pod", "start with nothing to send"):
            elapsed, laptop_kb, agent_kb = one_run(laptop, pod)
            print(f"| {case} | {elapsed:.1f} | {laptop_kb / 1024:.0f} | {agent_kb / 1024:.0f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("RELOADD_CONTROL_DIR", tempfile.mkdtemp(prefix="reloadd-control-"))
    main()
