"""Idle CPU and wake-ups of the supervisor, side by side with nodemon, while nothing changes.

    python bench/idle.py              # 60 s
    python bench/idle.py --seconds 20

reloadd (warm restarts, the default), reloadd --no-warm, reloadd -L (polling) and nodemon 3
(installed from the npm registry into a temporary directory) each supervise their own copy of a
small app, all at the same time. After they settle, the CPU time of each supervisor process
(every thread; not the app or the waiting warm node, which are children) and its context
switches (a wake-up is one) are read from /proc over the same window.
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

import warm as bench_warm  # bench/warm.py, beside this file: npm install and the reloadd binary

HERE = Path(__file__).resolve().parent
SETTLE = 5.0  # seconds after start: watchers built, the warm process ready
GOAL = 0.1  # % of a core, reloadd with inotify, plain and warm
BEGIN, END = "<!-- idle: begin -->", "<!-- idle: end -->"
APP = "const http = require('http');\nhttp.createServer((q, r) => r.end('ok')).listen(0, '127.0.0.1');\n"


def cpu_and_wakeups(pid: int) -> tuple[float, int]:
    """CPU seconds and context switches of every thread of ``pid``."""
    cpu, switches = 0.0, 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu += int((task / "schedstat").read_text().split()[0]) / 1e9
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
        except OSError:
            continue  # a thread that just ended
    return cpu, switches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--no-markdown", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reloadd-idle-bench-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        bench_warm.npm_install(work / "nodemon", ["nodemon@3"])
        nodemon = str(work / "nodemon" / "node_modules" / ".bin" / "nodemon")
        tools = {
            "reloadd (warm)": [bench_warm.reloadd_bin(), "server.js"],
            "reloadd --no-warm": [bench_warm.reloadd_bin(), "--no-warm", "server.js"],
            "reloadd -L (polling, 100 ms)": [bench_warm.reloadd_bin(), "-L", "server.js"],
            "nodemon": [nodemon, "server.js"],
            "nodemon -L": [nodemon, "-L", "server.js"],
        }
        env = {**os.environ, "NO_COLOR": "1", "RELOADD_CONTROL_DIR": str(work / "control")}
        for index, (name, argv) in enumerate(tools.items()):
            app = work / f"app{index}"
            app.mkdir()
            (app / "server.js").write_text(APP)
            procs[name] = subprocess.Popen(
                argv, cwd=app, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        time.sleep(SETTLE)
        before = {name: cpu_and_wakeups(proc.pid) for name, proc in procs.items()}
        time.sleep(args.seconds)
        after = {name: cpu_and_wakeups(proc.pid) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    text = table(before, after, args.seconds)
    print(text)
    if not args.no_markdown:
        write_section(text, args.seconds)


def table(before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]], seconds: float) -> str:
    lines = ["| supervisor | idle CPU, % of a core | wake-ups per second |", "|---|---|---|"]
    share = {}
    for name in before:
        cpu = (after[name][0] - before[name][0]) / seconds * 100
        wakes = (after[name][1] - before[name][1]) / seconds
        share[name] = cpu
        lines.append(f"| {name} | {cpu:.3f} | {wakes:.1f} |")
    worst = max(share["reloadd (warm)"], share["reloadd --no-warm"])
    ratio = worst / max(share["nodemon"], 1e-6)
    lines.append(
        f"\nreloadd with inotify, plain and warm: **{worst:.3f} %** of a core "
        f"(goal <= {GOAL} %: {'met' if worst <= GOAL else 'not met'}); nodemon {share['nodemon']:.3f} % "
        f"(reloadd/nodemon {ratio:.2f})."
    )
    return "\n".join(lines)


def write_section(text: str, seconds: float) -> None:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    section = "\n".join(
        [
            BEGIN,
            "## Idle (`python bench/idle.py`)",
            "",
            f"{time.strftime('%Y-%m-%d')}, node {node}, {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
            f"all supervisors at once, {seconds:g} s after {SETTLE:g} s to settle; nothing changes.",
            "",
            text,
            END,
        ]
    )
    target = HERE.parent / "BENCHMARKS.md"
    current = target.read_text()
    if BEGIN in current and END in current:
        current = current[: current.index(BEGIN)] + section + current[current.index(END) + len(END) :]
    else:
        current = current.rstrip("\n") + "\n\n" + section + "\n"
    target.write_text(current)


if __name__ == "__main__":
    main()
