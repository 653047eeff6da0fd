"""Idle CPU of the inotify wait loop for several watchfiles step values, and what each costs in detection.

    python bench/idle.py

watchfiles' RustNotify.watch sleeps ``step`` ms between looks at its change set (and calls back
into Python to check the stop event each time), so an idle watcher wakes 1000/step times a
second. This measures the CPU of exactly that loop, in this process, with nothing changing,
and the delay from a write to the loop returning it.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from watchfiles._rust_notify import RustNotify

STEPS_MS = (2, 5, 10, 20, 50)
IDLE_SECONDS = 5.0
WRITES = 20
DEBOUNCE_MS = 10


def thread_cpu() -> float:
    return time.thread_time()


def idle_cpu(root: Path, step: int) -> float:
    notify = RustNotify([str(root)], False, False, 0, False, True)
    stop = threading.Event()
    began, cpu = time.monotonic(), thread_cpu()
    while time.monotonic() - began < IDLE_SECONDS:
        notify.watch(DEBOUNCE_MS, step, 1000, stop)
    used = thread_cpu() - cpu
    notify.close()
    return used / IDLE_SECONDS * 100


def detection_ms(root: Path, step: int) -> list[float]:
    notify = RustNotify([str(root)], False, False, 0, False, True)
    stop = threading.Event()
    delays = []
    for index in range(WRITES):
        time.sleep(0.05 + (index % 7) * 0.003)  # a random phase against the step
        written: list[float] = []

        def write(i: int = index, written: list[float] = written) -> None:
            written.append(time.monotonic())
            (root / f"f{i}.js").write_text("x")

        threading.Timer(0.01, write).start()
        notify.watch(1, step, 5000, stop)  # a 1 ms debounce: the step alone decides the delay
        delays.append((time.monotonic() - written[0]) * 1000)
    notify.close()
    return delays


def main() -> None:
    print("| step ms | idle CPU, % of a core (Python thread time) | write -> seen, median (max) ms |")
    print("|---|---|---|")
    for step in STEPS_MS:
        with tempfile.TemporaryDirectory() as tmp:
            cpu = idle_cpu(Path(tmp), step)
            delays = detection_ms(Path(tmp), step)
        print(f"| {step} | {cpu:.2f} | {statistics.median(delays):.1f} ({max(delays):.1f}) |")
    print(f"\n(pid {os.getpid()}; thread CPU time counts the waiting thread only)")


if __name__ == "__main__":
    main()
