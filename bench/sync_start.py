"""How long a ``reloadd sync`` start takes to reach "in sync", against rsync -a and a tar pipe.

    python bench/sync_start.py [--rounds 5] [--trees 20k,100k,mixed] [--cases a,b,c,d] [--baseline BIN] [--profile]
                               [--editable]

Trees, built once in a temp dir (no names the default excludes drop):

- ``20k``: 20,000 files of 2 KB in 400 folders;
- ``100k``: 100,000 files of 1 KB in 2,000 folders;
- ``mixed``: 10,000 files in 2,000 folders, mostly 1-8 KB, some up to 128 KB, 1 % up to 1 MB.

Cases, each from the same prepared pod state for every tool:

- (a) identical: the pod holds a copy with the same mtimes (``cp -a``);
- (b) empty: the pod directory is empty;
- (c) touched: same content, every pod file's mtime differs;
- (d) changed: 1 % of the pod's files differ (another size and content, an older mtime);
- (r) reconnect: the pod is identical; once in sync, the agent is killed (a dropped link), and the
  time runs from the kill to the next "synced" record (the reconnect's comparison), against
  ``rsync -a`` on the same unchanged tree.

Times ``reloadd sync LAPTOP --transport env --to POD --log-format json`` from the spawn to its
first "synced" record on stderr (then it is stopped), against ``rsync -a LAPTOP/ POD/`` for
(a), (c), (d) and ``tar -cf - . | env tar -xf -`` (the receiving tar through the same ``env``
transport) for (b). ``--baseline`` adds another ``reloadd`` executable (say, main's, installed in
its own venv) to the same rounds, for before/after figures from one run. Tools alternate within
each round (A B C, then C B A); the table shows medians. Each tool's "CPU s" is the user and
system time of everything it ran (for reloadd: the laptop side and its agent, until it is
stopped; for (r): both the start and the reconnect), from the rusage of this process's waited
children: on a machine whose wall clock swings with its neighbours' load, the work done is the
steadier figure.
The reloadd under test is this checkout installed as users get it: a plain ``pip install`` into a
venv of the bench's own (``--editable`` times this venv's editable install instead, whose import
hook costs every interpreter start ~8 ms here). Before timing, each package under test is
compiled to bytecode, as ``pip install`` does: an editable install on a machine that sets
``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module at every start (~70 ms here),
which no installed copy pays.
``--profile`` also runs one (a) start and one (c) start of the first tree under cProfile on both
sides, and times the parts of a start in this process. Figures go into BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

DEADLINE = 600.0  # seconds a single start may take before the bench gives up
CASES = {
    "a": "identical pod",
    "b": "empty pod",
    "c": "same content, other mtimes",
    "d": "1 % of files changed",
    "r": "reconnect, pod identical",
}
TAR_PIPE = r"tar \| env tar"  # escaped: the name goes into a markdown table
REFERENCE = {"a": "rsync -a", "b": TAR_PIPE, "c": "rsync -a", "d": "rsync -a", "r": "rsync -a"}
GOAL_RATIO = {"a": 2.0, "b": 1.5, "c": 2.0, "d": 2.0}  # (r) has only a time goal: back within 1 s
GOAL_SECONDS = {("20k", "a"): 0.5, ("100k", "a"): 2.0, ("20k", "r"): 1.0}
TOUCH_OFFSET_NS = 1_000_000_000_000  # (c): pod mtimes 1,000 s older than the laptop's
REPOSITORY = Path(__file__).resolve().parent.parent


def reloadd_bin() -> str:
    return str(Path(sys.executable).with_name("reloadd"))


def plain_install(base: Path) -> str:
    """This checkout installed as users get it (``pip install``, not editable) in a venv of its own; its
    ``reloadd``. An editable install's import hook costs every interpreter start (~8 ms here), and a
    sync start runs two one after the other. The checkout is copied first: a build writes into it."""
    source = base / "source"
    skip = shutil.ignore_patterns(".git", ".venv*", "__pycache__", "build", "*.egg-info", "tests", "bench")
    shutil.copytree(REPOSITORY, source, ignore=skip)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(source)], check=True)
    return str(venv / "bin" / "reloadd")


def compile_package(binary: str) -> None:
    """Write the bytecode of the ``reloadd`` package that ``binary`` runs, as an install would."""
    python = Path(binary).with_name("python")
    found = subprocess.run([str(python), "-c", "import reloadd; print(reloadd.__path__[0])"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    subprocess.run([str(python), "-m", "compileall", "-q", found.stdout.strip()], check=True)


# -- trees --------------------------------------------------------------------------------------------
def mixed_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.90:
        return rng.randint(1024, 8 * 1024)
    if roll < 0.99:
        return rng.randint(8 * 1024, 128 * 1024)
    return rng.randint(128 * 1024, 1024 * 1024)


def build_tree(root: Path, folders: int, files: int, size: Callable[[random.Random], int]) -> list[Path]:
    rng = random.Random(files)
    made = []
    for index in range(files):
        folder = root / f"pkg{index % folders:04}" / ("lib" if index % 3 else "src")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"module_{index:06}.js"
        path.write_bytes(os.urandom(size(rng)))
        made.append(path)
    return made


TREES: dict[str, tuple[int, int, Callable[[random.Random], int]]] = {
    "20k": (400, 20_000, lambda rng: 2048),
    "100k": (2_000, 100_000, lambda rng: 1024),
    "mixed": (2_000, 10_000, mixed_size),
}


# -- pod states ---------------------------------------------------------------------------------------
def files_under(root: Path) -> Iterator[Path]:
    for directory, _, names in os.walk(root):
        for name in names:
            yield Path(directory) / name


def prepare(case: str, laptop: Path, pod: Path, changed: list[Path]) -> None:
    """Put the pod into the state ``case`` starts from (whatever the last run left there)."""
    case = "a" if case == "r" else case  # a reconnect starts from an identical pod
    if case == "b":
        shutil.rmtree(pod, ignore_errors=True)
        pod.mkdir()
        return
    if not pod.exists() or not (pod / "pkg0000").exists():
        shutil.rmtree(pod, ignore_errors=True)
        subprocess.run(["cp", "-a", f"{laptop}/.", str(pod)], check=True)
    for path in files_under(laptop):
        mine = path.stat()
        theirs = pod / path.relative_to(laptop)
        mtime = mine.st_mtime_ns - TOUCH_OFFSET_NS if case == "c" else mine.st_mtime_ns
        os.utime(theirs, ns=(mtime, mtime))
    if case == "d":
        for path in changed:
            theirs = pod / path.relative_to(laptop)
            theirs.write_bytes(b"old " + path.read_bytes())
            old = path.stat().st_mtime_ns - TOUCH_OFFSET_NS
            os.utime(theirs, ns=(old, old))


# -- the tools ----------------------------------------------------------------------------------------
def quiet_env(control: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NODE_ENV"}
    env.update({"NO_COLOR": "1", "RELOADD_CONTROL_DIR": str(control)})
    return env


def run_reloadd(
    laptop: Path,
    pod: Path,
    control: Path,
    prefix: Optional[list[str]] = None,
    binary: str = "",
    reconnect: bool = False,
) -> tuple[float, str]:
    """Seconds from spawning ``reloadd sync`` to its first "synced" record, and that record's message.

    With ``reconnect``, seconds from killing the agent after that record to the next one.
    """
    binary = binary or reloadd_bin()
    argv = (prefix or [binary]) + ["sync", str(laptop), "--transport", "env", "--to", str(pod)]
    argv += ["--log-format", "json"]
    env = quiet_env(control)
    env["PATH"] = f"{Path(binary).parent}:{env['PATH']}"  # `env reloadd agent`: the agent of the same install
    began = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    assert proc.stderr is not None
    try:
        for raw in proc.stderr:
            if time.perf_counter() - began > DEADLINE:
                raise SystemExit("reloadd sync took too long")
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if record.get("event") == "synced" and reconnect:
                reconnect = False
                began = time.perf_counter()
                os.kill(agent_of(proc.pid), signal.SIGKILL)
            elif record.get("event") == "synced":
                return time.perf_counter() - began, str(record.get("msg"))
            if record.get("level") == "error":
                raise SystemExit(f"reloadd sync failed: {record.get('msg')}")
        raise SystemExit(f"reloadd sync ended without a sync (exit status {proc.wait()})")
    finally:
        proc.terminate()  # the laptop side closes the agent's stdin, and the agent ends
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the laptop side and the agent it started
            proc.wait()


def agent_of(pid: int) -> int:
    """The agent ``reloadd sync`` started (``env`` execs it: the sync's only child)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    if len(children) != 1:
        raise SystemExit(f"expected one agent under reloadd sync, found {children}")
    return int(children[0])


def run_rsync(laptop: Path, pod: Path) -> float:
    began = time.perf_counter()
    subprocess.run(["rsync", "-a", f"{laptop}/", f"{pod}/"], check=True)
    return time.perf_counter() - began


def run_tar(laptop: Path, pod: Path) -> float:
    began = time.perf_counter()
    pack = subprocess.Popen(["tar", "-C", str(laptop), "-cf", "-", "."], stdout=subprocess.PIPE)
    subprocess.run(["env", "tar", "-C", str(pod), "-xf", "-"], stdin=pack.stdout, check=True)
    assert pack.stdout is not None
    pack.stdout.close()
    if pack.wait() != 0:
        raise SystemExit("tar -c failed")
    return time.perf_counter() - began


# -- the run ------------------------------------------------------------------------------------------
Results = dict[tuple[str, str, str], list[float]]  # (tree, case, tool) -> seconds of each round


def children_cpu() -> float:
    """User + system seconds of this process's children that have been waited for, so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(base: Path, name: str, rounds: int, control: Path, binary: str, baseline: str, results: Results,
            cpu: Results, messages: dict[tuple[str, str], str], cases: list[str]) -> None:  # fmt: skip
    folders, count, size = TREES[name]
    laptop = base / f"{name}-laptop"
    made = build_tree(laptop, folders, count, size)
    changed = random.Random(7).sample(made, max(1, count // 100))
    for round_index in range(rounds):
        for case in cases:
            pod = base / f"{name}-pod-{case}"
            tools = ["reloadd", "baseline", "reference"] if baseline else ["reloadd", "reference"]
            if round_index % 2:
                tools.reverse()
            for tool in tools:
                prepare(case, laptop, pod, changed)
                spent = children_cpu()
                if tool == "reloadd":
                    took, message = run_reloadd(laptop, pod, control, binary=binary, reconnect=case == "r")
                    messages[(name, case)] = message
                elif tool == "baseline":
                    took, _ = run_reloadd(laptop, pod, control, binary=baseline, reconnect=case == "r")
                else:
                    took = run_tar(laptop, pod) if case == "b" else run_rsync(laptop, pod)
                results.setdefault((name, case, tool), []).append(took)
                cpu.setdefault((name, case, tool), []).append(children_cpu() - spent)
            print(f"  {name} round {round_index + 1} ({case}) done", file=sys.stderr, flush=True)
    shutil.rmtree(base / f"{name}-laptop", ignore_errors=True)
    for case in CASES:
        shutil.rmtree(base / f"{name}-pod-{case}", ignore_errors=True)


def report(results: Results, cpu: Results, messages: dict[tuple[str, str], str]) -> None:
    baseline = any(tool == "baseline" for _, _, tool in results)
    extra = " baseline median s | baseline CPU s | baseline ratio |" if baseline else ""
    head = f"| tree | case | reloadd sync median s (min-max) | CPU s |{extra}"
    print(f"{head} reference | median s | CPU s | ratio | goal |")
    print("|---|---|---|---|" + ("---|---|---|" if baseline else "") + "---|---|---|---|---|")
    for (name, case, tool), ours in results.items():
        if tool != "reloadd":
            continue
        theirs = statistics.median(results[(name, case, "reference")])
        goals = [f"<= {GOAL_RATIO[case]:g}x"] if case in GOAL_RATIO else []
        if (name, case) in GOAL_SECONDS:
            goals.append(f"<= {GOAL_SECONDS[(name, case)]:g} s")
        goal = " and ".join(goals) or "-"
        row = f"| {name} | ({case}) {CASES[case]} | {statistics.median(ours):.2f} ({min(ours):.2f}-{max(ours):.2f}) |"
        row += f" {statistics.median(cpu[(name, case, tool)]):.2f} |"
        if baseline:
            before = statistics.median(results[(name, case, "baseline")])
            row += f" {before:.2f} | {statistics.median(cpu[(name, case, 'baseline')]):.2f} | {before / theirs:.2f} |"
        row += f" {REFERENCE[case]} | {theirs:.2f} | {statistics.median(cpu[(name, case, 'reference')]):.2f} |"
        row += f" {statistics.median(ours) / theirs:.2f} | {goal} |"
        print(row)
    print("\nreloadd's own summary lines (last round):")
    for (name, case), message in messages.items():
        if any(key[0] == name for key in results):
            print(f"- {name} ({case}): {message}")


# -- profiling ------------------------------------------------------------------------------------------
def profile_start(base: Path, control: Path, case: str) -> None:
    """One start of the 20k tree under cProfile, both sides; prints where the time went."""
    laptop = base / "prof-laptop"
    if not laptop.exists():
        build_tree(laptop, 400, 20_000, lambda rng: 2048)
    pod = base / f"prof-pod-{case}"
    prepare(case, laptop, pod, [])
    wrapper = base / "prof-bin"
    wrapper.mkdir(exist_ok=True)
    agent_prof = base / f"agent-{case}.prof"
    laptop_prof = base / f"laptop-{case}.prof"
    # reloadd leaves by os._exit, so `python -m cProfile` would never write: a runner calls its main itself.
    runner = base / "prof_run.py"
    runner.write_text(PROFILE_RUNNER)
    # The transport runs `env reloadd agent POD`: a `reloadd` first on PATH runs the real one profiled.
    (wrapper / "reloadd").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{runner}" "{agent_prof}" "$@"\n')
    (wrapper / "reloadd").chmod(0o755)
    os.environ["PATH"] = f"{wrapper}:{os.environ['PATH']}"
    try:
        took, message = run_reloadd(laptop, pod, control, [sys.executable, str(runner), str(laptop_prof)])
    finally:
        os.environ["PATH"] = os.environ["PATH"].split(":", 1)[1]
    print(f"\n### cProfile, 20k tree, case ({case}): {took:.2f} s to the line: {message}")
    deadline = time.monotonic() + 30
    while not (agent_prof.exists() and laptop_prof.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for side, path in (("laptop", laptop_prof), ("agent", agent_prof)):
        if not path.exists():
            print(f"({side}: no profile written)")
            continue
        text = io.StringIO()
        pstats.Stats(str(path), stream=text).sort_stats("tottime").print_stats(16)
        print(f"\n{side}, by own time:\n```\n{_trim(text.getvalue())}\n```")


PROFILE_RUNNER = """\
import cProfile, sys
profile = cProfile.Profile()
profile.enable()
try:
    from reloadd.app import main
    main(sys.argv[2:])
finally:
    profile.disable()
    profile.dump_stats(sys.argv[1])
"""


def _trim(text: str) -> str:
    lines = text.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(lines[:1] + lines[start:])


def profile_parts(base: Path) -> None:
    """The parts of a start, one by one in this process, on the 20k tree."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from reloadd.sync.laptop.compare import diff
    from reloadd.sync.shared.excludes import excluder
    from reloadd.sync.shared.manifest import Entry, flat, listings
    from reloadd.sync.shared.protocol import FrameReader, encode_message

    laptop = base / "prof-laptop"
    if not laptop.exists():
        build_tree(laptop, 400, 20_000, lambda rng: 2048)
    exclude = excluder(str(laptop), [])
    fd = os.open(laptop, os.O_RDONLY | os.O_DIRECTORY)
    parts: dict[str, float] = {}

    def timed(what: str, call: Callable[[], object]) -> object:
        began = time.perf_counter()
        value = call()
        parts[what] = time.perf_counter() - began
        return value

    manifest = timed("walk (scan), one side", lambda: flat(listings(fd, exclude)))
    assert isinstance(manifest, dict)
    wire = [entry.to_wire() for entry in manifest.values()]
    frames = timed("encode (JSON frames)", lambda: b"".join(
        encode_message({"t": "manifest", "entries": wire[i : i + 2000]}) for i in range(0, len(wire), 2000)
    ))  # fmt: skip
    assert isinstance(frames, bytes)
    decoded = timed("decode (frames -> entries)", lambda: {
        e.path: e for f in FrameReader().feed(frames) if isinstance(f, dict)
        for e in map(Entry.from_wire, f["entries"]) if e is not None})  # fmt: skip
    assert isinstance(decoded, dict)
    timed("compare (diff)", lambda: diff(manifest, decoded, False))
    files = [path for path, entry in manifest.items() if entry.kind == "f"]
    timed("hash every file (sha256)", lambda: [_hash_at(fd, path) for path in files])
    os.close(fd)
    timed("agent start (spawn -> hello)", lambda: _agent_hello(base))
    timed("import reloadd.sync.laptop.loop (fresh interpreter)", lambda: subprocess.run(
        [sys.executable, "-c", "import reloadd.sync.laptop.loop"], check=True))  # fmt: skip
    timed("python -c pass (interpreter alone)", lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
    print(f"\n### parts of a start, 20k tree ({len(manifest)} entries, {len(frames) / 1e6:.1f} MB of manifest frames)")
    print("| part | ms |\n|---|---|")
    for what, seconds in parts.items():
        print(f"| {what} | {seconds * 1000:.0f} |")


def _hash_at(root_fd: int, path: str) -> Optional[str]:
    from reloadd.sync.shared.manifest import file_hash

    directory, _, name = path.rpartition("/")
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root_fd)
    try:
        return file_hash(fd, name)
    finally:
        os.close(fd)


def _agent_hello(base: Path) -> None:
    pod = base / "hello-pod"
    pod.mkdir(exist_ok=True)
    proc = subprocess.Popen(["env", reloadd_bin(), "agent", str(pod)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.read(5)  # the hello frame's header: the agent is up
    proc.stdin.close()
    proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trees", default="20k,100k,mixed")
    parser.add_argument("--cases", default=",".join(CASES), help="which of the cases a, b, c, d, r to time")
    parser.add_argument("--baseline", default="", help="another reloadd executable to time in the same rounds")
    parser.add_argument("--profile", action="store_true", help="also profile one 20k start (cases a and c)")
    parser.add_argument("--editable", action="store_true", help="time this venv's reloadd, not a plain install")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped: the temp trees are still removed
    base = Path(tempfile.mkdtemp(prefix="reloadd-sync-start-"))
    control = base / "control"
    control.mkdir(mode=0o700)
    results: Results = {}
    cpu: Results = {}
    messages: dict[tuple[str, str], str] = {}
    binary = reloadd_bin() if args.editable else plain_install(base)
    for tool in filter(None, (binary, args.baseline)):
        compile_package(tool)
    try:
        if args.rounds:
            print(f"sync start -> in sync, {args.rounds} rounds, tools alternating, one run (medians)")
        for name in args.trees.split(","):
            if args.rounds:
                cases = args.cases.split(",")
                measure(base, name, args.rounds, control, binary, args.baseline, results, cpu, messages, cases)
                print(f"\n{name} tree, after it (a long run can be cut short with what is done so far):\n")
                report({key: value for key, value in results.items() if key[0] == name}, cpu, messages)
                sys.stdout.flush()
        if args.profile:
            profile_parts(base)
            profile_start(base, control, "a")
            profile_start(base, control, "c")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
