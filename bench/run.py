"""Benchmarks: reloadd against nodemon and `node --watch`, side by side in one run.

    python bench/run.py            # full run (~6 min), writes bench/results/ and BENCHMARKS.md
    python bench/run.py --quick    # fewer rounds (~2 min)

nodemon is installed from the npm registry into a temporary directory. Tools are alternated
round by round (A B A B) so that machine drift cancels. Figures, not assertions: the goals are
printed next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PORT = 47011
POLL = 0.002  # how often the client asks the app for the new version
POLL_INTERVAL_MS = 100  # nodemon's and reloadd's default polling interval, used as is

SERVER_JS = """\
const http = require('http');
const fs = require('fs');
const version = require('./version.js');
// The time now, at the app's first line: a warm start's performance.timeOrigin is its "go", as
// a cold process's is its exec, so the origin alone would not compare the tools.
fs.appendFileSync(__dirname + '/starts.log', performance.timeOrigin + performance.now() + '\\n');
const server = http.createServer((req, res) => res.end(String(version)));
server.listen(PORT, '127.0.0.1');
process.on('SIGTERM', () => setTimeout(() => process.exit(0), 200));  // a 200 ms graceful shutdown
""".replace("PORT", str(PORT))


def reloadd_bin() -> str:
    found = Path(sys.executable).with_name("reloadd")
    return str(found) if found.exists() else "reloadd"


def install_nodemon(root: Path) -> str:
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(root), "nodemon@3"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return str(root / "node_modules" / ".bin" / "nodemon")


def tools(nodemon: str) -> dict[str, list[str]]:
    return {
        "reloadd": [reloadd_bin(), "--", "node", "server.js"],
        "reloadd (nodemon-style)": [reloadd_bin(), "server.js"],
        "nodemon": [nodemon, "server.js"],
        "node --watch": ["node", "--watch", "server.js"],
    }


def get(port: int = PORT) -> Optional[str]:
    """What the app on ``port`` answers now, or None while nothing does."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5) as response:
            return str(response.read().decode())
    except OSError:
        return None


def wait(condition: Callable[[], object], timeout: float = 15.0) -> None:
    """Poll ``condition`` until it holds; a benchmark step that never gets there fails the run."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("benchmark step timed out")
        time.sleep(POLL)


def make_app(root: Path) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "server.js").write_text(SERVER_JS)
    (root / "version.js").write_text("module.exports = 0;\n")
    return root


class Running:
    """A supervisor (or plain node) running the bench app, with its stderr kept for timings."""

    def __init__(self, argv: list[str], app: Path, extra_env: Optional[dict[str, str]] = None) -> None:
        self.app = app
        self.err = tempfile.TemporaryFile()
        self.lines: list[tuple[float, str]] = []  # stdout lines with the time they arrived
        env = {**os.environ, "NO_COLOR": "1", **(extra_env or {})}
        self.launched = time.time()
        self.proc = subprocess.Popen(
            argv,
            cwd=app,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.err,
            start_new_session=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append((time.time(), raw.decode(errors="replace")))

    def stop(self) -> float:
        """SIGTERM the supervisor; seconds until it exited."""
        began = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        took = time.monotonic() - began
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever the tool left behind
        except ProcessLookupError:
            pass
        wait(lambda: get() is None, timeout=10)
        return took

    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read().decode(errors="replace")


def starts(app: Path) -> list[float]:
    log = app / "starts.log"
    return [float(x) / 1000 for x in log.read_text().split()] if log.exists() else []


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p10": pct(values, 0.1), "p90": pct(values, 0.9), "n": len(values)}


# ---------------------------------------------------------------- measurements


def restart_round(argv: list[str], app: Path, changes: int, env: Optional[dict[str, str]] = None) -> dict:
    make_app(app)
    running = Running(argv, app, env)
    wait(lambda: get() == "0")
    startup = starts(app)[0] - running.launched
    time.sleep(0.5)  # let the watcher settle before the first change
    latencies = []
    for version in range(1, changes + 1):
        began = time.time()
        (app / "version.js").write_text(f"module.exports = {version};\n")
        wait(lambda v=version: get() == str(v))
        latencies.append((time.time() - began) * 1000)
        time.sleep(0.25)
    rss = rss_kb(running.proc.pid)
    cpu = idle_cpu(running.proc.pid, 3.0)
    burst = burst_restarts(app)
    stop = running.stop()
    return {
        "latency_ms": latencies,
        "startup_ms": startup * 1000,
        "rss_kb": rss,
        "idle_cpu": cpu,
        "burst_restarts": burst,
        "stop_ms": stop * 1000,
        "stderr": running.stderr(),
    }


def burst_restarts(app: Path) -> int:
    before = len(starts(app))
    (app / "lib").mkdir(exist_ok=True)
    for index in range(200):
        (app / "lib" / f"m{index}.js").write_text(f"module.exports = {index};\n")
    time.sleep(3.0)
    return len(starts(app)) - before


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` in nanoseconds from schedstat (clock ticks are too coarse
    for a process that wakes ten times a second for a millisecond), or from ticks without it."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds * 100


def floor_ms(app: Path, rounds: int) -> list[float]:
    make_app(app)
    return [cold_start_ms(app, PORT) for _ in range(rounds)]


def cold_start_ms(app: Path, port: int, timeout: float = 15.0) -> float:
    """One cold `node server.js` in ``app``: start -> it answers "0" on ``port``, then it is ended."""
    began = time.monotonic()
    proc = subprocess.Popen(["node", "server.js"], cwd=app, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait(lambda: get(port) == "0", timeout)
    elapsed = (time.monotonic() - began) * 1000
    proc.kill()
    proc.wait()
    wait(lambda: get(port) is None, timeout)
    return elapsed


def reloadd_phases(stderr: str) -> dict[str, float]:
    phases: dict[str, list[float]] = {"detect+group": [], "restart signal -> tree gone": [], "tree gone -> spawned": []}
    for line in stderr.splitlines():
        if '"event": "timing"' not in line:
            continue
        record = json.loads(line)
        phases["detect+group"].append((record["group_closed"] - record["first_change"]) * 1000)
        phases["restart signal -> tree gone"].append((record["stopped"] - record["stop_begin"]) * 1000)
        phases["tree gone -> spawned"].append((record["spawned"] - record["stopped"]) * 1000)
    return {name: statistics.median(v) for name, v in phases.items() if v}


# ---------------------------------------------------------------- polling tree


def make_tree(root: Path) -> Path:
    if (root / ".done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for d in range(200):
        folder = root / "src" / f"d{d}"
        folder.mkdir(parents=True)
        for f in range(10):
            (folder / f"f{f}.js").write_text(f"module.exports = {f};\n")
    for d in range(4000):
        folder = root / "node_modules" / f"p{d // 40}" / f"d{d}"
        folder.mkdir(parents=True)
        for f in range(10):
            (folder / f"f{f}.js").write_text("x\n")
    (root / "server.js").write_text(SERVER_JS)
    (root / "version.js").write_text("module.exports = 0;\n")
    (root / ".done").write_text("")
    return root


def inotify_watches(pid: int) -> int:
    count = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for info in (task / "fdinfo").iterdir():
            try:
                count += info.read_text().count("inotify wd:")
            except OSError:
                continue
        break  # threads share the descriptor table: one task is enough
    return count


SEEN_MARKERS = ("restarting due to changes",)  # nodemon's line when it has seen a change


def seen_times(running: Running) -> list[float]:
    """When the tool saw each change: reloadd's timing records, nodemon's log line."""
    times = [t for t, line in running.lines if any(m in line for m in SEEN_MARKERS)]
    for line in running.stderr().splitlines():
        if '"event": "timing"' in line:
            times.append(json.loads(line)["first_change"])
    return sorted(times)


def polling_round(argv: list[str], tree: Path, idle_seconds: float, edits: int, env: Optional[dict] = None) -> dict:
    """Idle CPU, watches and RSS on the big tree, then ``edits`` in-place edits of files nobody
    touched before, at random moments, each timed to when the tool saw it and to the new process."""
    (tree / "starts.log").unlink(missing_ok=True)
    running = Running(argv, tree, env)
    wait(lambda: get() is not None, timeout=60)
    time.sleep(2.0)  # initial scan
    cpu = idle_cpu(running.proc.pid, idle_seconds)
    watches = inotify_watches(running.proc.pid)
    rss = rss_kb(running.proc.pid)
    pick = random.Random(len(argv))  # the same files for both tools
    targets = pick.sample([(d, f) for d in range(200) for f in range(10)], edits)
    seen, new_process = [], []
    for d, f in targets:
        time.sleep(0.5 + pick.random())  # a random phase against the poller's sweep
        before_starts, before_seen = len(starts(tree)), len(seen_times(running))
        began = time.time()
        path = tree / "src" / f"d{d}" / f"f{f}.js"
        with open(path, "r+") as handle:  # in place, as an editor or a FUSE/NFS client writes
            handle.write(f"module.exports = {f + 1};")
        wait(lambda n=before_starts, m=before_seen: len(starts(tree)) > n and len(seen_times(running)) > m, timeout=30)
        seen.append((seen_times(running)[before_seen] - began) * 1000)
        new_process.append((starts(tree)[before_starts] - began) * 1000)
    running.stop()
    return {
        "idle_cpu": cpu,
        "inotify_watches": watches,
        "rss_kb": rss,
        "change_seen_ms": seen,
        "change_to_new_process_ms": new_process,
    }


# ---------------------------------------------------------------- report


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node,
        "date": time.strftime("%Y-%m-%d"),
    }


def chart(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(results["restart"])
    medians = [results["restart"][n]["latency"]["median"] for n in names]
    spreads = [
        [m - results["restart"][n]["latency"]["p10"] for n, m in zip(names, medians)],
        [results["restart"][n]["latency"]["p90"] - m for n, m in zip(names, medians)],
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].bar(names, medians, yerr=spreads, color=["#2a7", "#5b9", "#c55", "#88a"])
    axes[0].axhline(
        statistics.median(results["floor_ms"]), color="black", linestyle="--", label="node cold start (floor)"
    )
    axes[0].set_ylabel("ms from write to new code served")
    axes[0].set_title("restart latency (median, p10-p90)")
    axes[0].legend()
    axes[0].tick_params(axis="x", rotation=20)
    poll = results.get("polling", {})
    if poll:
        labels = list(poll)
        axes[1].bar(labels, [poll[x]["idle_cpu"] for x in labels], color=["#2a7", "#c55"][: len(labels)])
        axes[1].set_ylabel("% of one core")
        axes[1].set_title("idle CPU while polling 2,000 files (100 ms)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def compiled_reloadd() -> None:
    """reloadd's bytecode written, as `pip install` leaves an installed package: an editable
    checkout run with PYTHONDONTWRITEBYTECODE would compile every module at every start."""
    import compileall

    import reloadd

    compileall.compile_dir(str(Path(reloadd.__file__).parent), quiet=1)


def run(quick: bool) -> dict:
    rounds = 2 if quick else 4
    changes = 5 if quick else 10
    work = Path(tempfile.mkdtemp(prefix="reloadd-bench-"))
    compiled_reloadd()
    try:
        nodemon = install_nodemon(work / "nodemon")
        argvs = tools(nodemon)
        results: dict = {"machine": machine(), "restart": {}, "floor_ms": floor_ms(work / "floor", rounds * 3)}
        raw: dict[str, list[dict]] = {name: [] for name in argvs}
        for round_index in range(rounds):
            order = list(argvs) if round_index % 2 == 0 else list(reversed(argvs))  # A B ... B A
            for name in order:
                env = {"RELOADD_LOG_FORMAT": "json"} if name.startswith("reloadd") else None
                argv = argvs[name][:1] + (["-V"] if name.startswith("reloadd") else []) + argvs[name][1:]
                raw[name].append(restart_round(argv, work / "app", changes, env))
                print(f"  round {round_index + 1}/{rounds}: {name} done", file=sys.stderr)
        for name, runs in raw.items():
            results["restart"][name] = {
                "latency": summary([v for r in runs for v in r["latency_ms"]]),
                "startup_ms": statistics.median(r["startup_ms"] for r in runs),
                "rss_mb": statistics.median(r["rss_kb"] for r in runs) / 1024,
                "idle_cpu": statistics.median(r["idle_cpu"] for r in runs),
                "burst_restarts": [r["burst_restarts"] for r in runs],
                "stop_ms": statistics.median(r["stop_ms"] for r in runs),
            }
        results["reloadd_phases_ms"] = reloadd_phases("".join(r["stderr"] for r in raw["reloadd"]))
        tree = make_tree(work / "tree")
        idle = 5.0 if quick else 10.0
        edits = 4 if quick else 8
        json_log = {"RELOADD_LOG_FORMAT": "json"}
        for mode, flags in (("polling", ["-L"]), ("native", [])):
            argvs = {
                f"reloadd{' -L' if flags else ''}": ([reloadd_bin(), "-V", *flags, "server.js"], json_log),
                f"nodemon{' -L' if flags else ''}": ([nodemon, *flags, "server.js"], None),
            }
            runs: dict[str, list[dict]] = {name: [] for name in argvs}
            for round_index in range(rounds // 2):
                order = list(argvs) if round_index % 2 == 0 else list(reversed(argvs))  # A B B A
                for name in order:
                    argv, env = argvs[name]
                    runs[name].append(polling_round(argv, tree, idle, edits, env))
                    print(f"  {mode} round {round_index + 1}/{rounds // 2}: {name} done", file=sys.stderr)
            results[mode] = {
                name: {
                    "idle_cpu": statistics.median(r["idle_cpu"] for r in rs),
                    "inotify_watches": max(r["inotify_watches"] for r in rs),
                    "rss_kb": statistics.median(r["rss_kb"] for r in rs),
                    "change_seen_ms": [v for r in rs for v in r["change_seen_ms"]],
                    "change_to_new_process_ms": [v for r in rs for v in r["change_to_new_process_ms"]],
                }
                for name, rs in runs.items()
            }
        results["non_ignored_dirs"] = 1 + 1 + 200  # the root, src/ and its 200 directories
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def seen_cell(r: dict) -> str:
    return f"{statistics.median(r['change_seen_ms']):.0f} ({max(r['change_seen_ms']):.0f})"


def table(results: dict) -> str:
    floor = statistics.median(results["floor_ms"])
    lines = [
        "| tool | restart median (p10-p90) ms | over floor ms | startup ms (to the first line) "
        "| RSS MB | idle CPU % | stop ms "
        "| restarts per 200-file burst |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["restart"].items():
        lat = r["latency"]
        lines.append(
            f"| {name} | {lat['median']:.0f} ({lat['p10']:.0f}-{lat['p90']:.0f}) | {lat['median'] - floor:+.0f} | "
            f"{r['startup_ms']:.0f} | {r['rss_mb']:.1f} | {r['idle_cpu']:.2f} | {r['stop_ms']:.0f} | "
            f"{', '.join(map(str, r['burst_restarts']))} |"
        )
    lines.append(f"\nFloor (`node server.js` cold start to first response): {floor:.0f} ms.")
    ratio = results["restart"]["reloadd"]["latency"]["median"] / results["restart"]["nodemon"]["latency"]["median"]
    lines.append(f"Restart latency ratio reloadd/nodemon: **{ratio:.2f}** (goal <= 1.0).")
    phases = results.get("reloadd_phases_ms", {})
    if phases:
        lines.append(
            "reloadd's own phases (median ms, from its `--log-format json -V` timing records): "
            + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
            + "."
        )
    poll, native = results["polling"], results["native"]
    lines.append(
        f"\n| polling 2,000 files / 200 dirs (+ node_modules 40,000 files / 4,000 dirs), {POLL_INTERVAL_MS} ms "
        "| idle CPU % | RSS MB | change -> seen, median (max) ms | change -> new process, median ms |"
    )
    lines.append("|---|---|---|---|---|")
    for name, r in poll.items():
        lines.append(
            f"| {name} | {r['idle_cpu']:.2f} | {r['rss_kb'] / 1024:.1f} | {seen_cell(r)} | "
            f"{statistics.median(r['change_to_new_process_ms']):.0f} |"
        )
    share = poll["reloadd -L"]["idle_cpu"] / max(poll["nodemon -L"]["idle_cpu"], 1e-9)
    worst = max(poll["reloadd -L"]["change_seen_ms"])
    lines.append(f"\nPolling CPU reloadd/nodemon: **{share:.2f}** (goal <= 0.25).")
    lines.append(
        f"Slowest change seen by reloadd -L: **{worst:.0f} ms** of {len(poll['reloadd -L']['change_seen_ms'])} "
        f"in-place edits of files not touched before (goal: within interval + 100 = {POLL_INTERVAL_MS + 100} ms)."
    )
    lines.append(
        "\n| native mode, same tree | inotify watches | idle CPU % | RSS MB | change -> seen, median (max) ms "
        "| change -> new process, median ms |"
    )
    lines.append("|---|---|---|---|---|---|")
    for name, r in native.items():
        lines.append(
            f"| {name} | {r['inotify_watches']} | {r['idle_cpu']:.2f} | {r['rss_kb'] / 1024:.1f} | {seen_cell(r)} | "
            f"{statistics.median(r['change_to_new_process_ms']):.0f} |"
        )
    lines.append(
        f"\nNon-ignored directories: {results['non_ignored_dirs']} (goal: reloadd's watches no more than that)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--no-markdown", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = parser.parse_args()
    results = run(args.quick)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    has_chart = chart(results, RESULTS / "latest.png")
    text = table(results)
    print(text)
    if not args.no_markdown:
        write_markdown(results, text, has_chart)


WARM_END = "<!-- warm restarts: end -->"  # bench/warm.py's marker


def write_markdown(results: dict, text: str, has_chart: bool) -> None:
    m = results["machine"]
    notes = (HERE / "NOTES.md").read_text() if (HERE / "NOTES.md").exists() else ""
    body = [
        "# Benchmarks: reloadd vs nodemon vs node --watch",
        "",
        "Generated by `python bench/run.py` (install the bench extra for the chart: `pip install -e '.[bench]'`).",
        f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, node {m['node']}, "
        f"{m['date']}.",
        "Tools alternate round by round (A B ... B A) in one run; nodemon 3 is installed from npm into a temp dir.",
        "",
        text,
        "",
    ]
    if has_chart:
        body += ["![restart latency and polling CPU](bench/results/latest.png)", ""]
    body.append(notes)
    warm = RESULTS / "warm.md"  # written by bench/warm.py
    if warm.exists():
        body += ["", warm.read_text()]
    target = HERE.parent / "BENCHMARKS.md"
    # The other benches' sections (sync, idle, memory) follow the warm section: kept as they are.
    current = target.read_text() if target.exists() else ""
    if WARM_END in current:
        body.append(current[current.index(WARM_END) + len(WARM_END) :].lstrip("\n"))
    target.write_text("\n".join(body))


if __name__ == "__main__":
    main()
