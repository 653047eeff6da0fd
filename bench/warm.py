"""Warm restarts: write -> new version served, for a tiny app and a realistic Express app (CommonJS and ESM).

    python bench/warm.py            # 3 rounds of 8 changes per tool and app (~8 min)
    python bench/warm.py --quick    # 2 rounds of 4 changes

Tools, alternated round by round (A B C D, then D C B A) so that machine drift cancels:
reloadd (warm restarts, the default), reloadd --no-warm, nodemon 3, node --watch; plus each
app's cold start (`node server.js` to first response) as the floor. The Express app (express,
helmet, cors, morgan, compression, cookie-parser, winston, lodash, dayjs, zod, uuid; routes in
four files; once as CommonJS, once converted to ES modules) and nodemon are installed from the
npm registry into a temporary directory.
A change comes every CHANGE_GAP seconds, as a person saving files would; the warm process
needs that time to start and preload. Figures, not assertions; the goals are printed beside them.
Also prints reloadd's startup (exec -> the app's first line) against nodemon's; idle CPU is
bench/idle.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import run as bench_run  # bench/run.py, beside this file: the shared client helpers

HERE = Path(__file__).resolve().parent
SECTION = HERE / "results" / "warm.md"  # bench/run.py puts it into BENCHMARKS.md too
BEGIN, END = "<!-- warm restarts: begin -->", "<!-- warm restarts: end -->"
PORT = 47013
POLL = 0.002  # how often the client asks for the new version
CHANGE_GAP = 1.5  # seconds between saves
SETTLE = 1.0  # after the first response, before the first change (watchers start, warm process preloads)
PACKAGES = [
    "express@4", "helmet@7", "cors@2", "morgan@1", "compression@1", "cookie-parser@1", "winston@3",
    "lodash@4", "dayjs@1", "zod@3", "uuid@9",
]  # fmt: skip

TINY_SERVER = """\
const http = require('http');
const version = require('./version.js');
http.createServer((req, res) => res.end(String(version))).listen(PORT, '127.0.0.1');
"""

EXPRESS_SERVER = """\
const express = require('express');
const helmet = require('helmet');
const cors = require('cors');
const morgan = require('morgan');
const compression = require('compression');
const cookieParser = require('cookie-parser');
const logger = require('./lib/logger');
const version = require('./version.js');
const app = express();
app.use(helmet());
app.use(cors());
app.use(compression());
app.use(cookieParser());
app.use(express.json());
app.use(morgan('tiny', { skip: () => true }));
app.use('/users', require('./routes/users'));
app.use('/items', require('./routes/items'));
app.use('/health', require('./routes/health'));
app.get('/', (req, res) => res.send(String(version)));
app.listen(PORT, '127.0.0.1', () => logger.debug('listening'));
"""
EXPRESS_FILES = {
    "lib/logger.js": """\
const winston = require('winston');
module.exports = winston.createLogger({ level: 'info', transports: [new winston.transports.Console()] });
""",
    "lib/store.js": """\
const _ = require('lodash');
const { v4: uuid } = require('uuid');
const items = new Map();
module.exports = {
  add: (item) => { const id = uuid(); items.set(id, { id, ...item }); return id; },
  list: () => _.sortBy([...items.values()], 'name'),
};
""",
    "routes/users.js": """\
const express = require('express');
const { z } = require('zod');
const dayjs = require('dayjs');
const router = express.Router();
const User = z.object({ name: z.string().min(1), email: z.string().email() });
router.post('/', (req, res) => {
  const user = User.parse(req.body);
  res.json({ ...user, created: dayjs().format() });
});
module.exports = router;
""",
    "routes/items.js": """\
const express = require('express');
const store = require('../lib/store');
const router = express.Router();
router.get('/', (req, res) => res.json(store.list()));
router.post('/', (req, res) => res.json({ id: store.add(req.body) }));
module.exports = router;
""",
    "routes/health.js": """\
const express = require('express');
const router = express.Router();
router.get('/', (req, res) => res.json({ ok: true, uptime: process.uptime() }));
module.exports = router;
""",
}


def to_esm(source: str) -> str:
    """The CommonJS bench files as ES modules: `const x = require('y')` -> `import x from 'y'`."""
    lines = []
    for line in source.splitlines():
        if line.startswith("const ") and " = require(" in line and line.endswith(");"):
            names, module = line[len("const ") :].split(" = require(", 1)
            target = module[:-2].strip("'")
            if target.startswith(".") and not target.endswith(".js"):
                target += ".js"
            names = names.replace(": ", " as ")
            lines.append(f"import {names} from '{target}';")
        elif line.startswith("module.exports = "):
            lines.append("export default " + line[len("module.exports = ") :])
        else:
            lines.append(line)
    text = "\n".join(lines) + "\n"
    for route in ("users", "items", "health"):
        text = text.replace(f"require('./routes/{route}')", route.capitalize() + "Routes")
        if route.capitalize() + "Routes" in text:
            text = f"import {route.capitalize()}Routes from './routes/{route}.js';\n" + text
    return text


def get() -> Optional[str]:
    return bench_run.get(PORT)


def wait(condition: Callable[[], object]) -> None:
    bench_run.wait(condition, timeout=30.0)  # an Express app's cold start under load takes seconds


def npm_install(root: Path, packages: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text('{"name": "bench-app", "version": "1.0.0", "private": true}\n')
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent", *packages],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def make_apps(work: Path) -> dict[str, Path]:
    tiny = work / "tiny"
    tiny.mkdir(parents=True)
    (tiny / "server.js").write_text(TINY_SERVER.replace("PORT", str(PORT)))
    express = work / "express"
    npm_install(express, PACKAGES)
    (express / "server.js").write_text(EXPRESS_SERVER.replace("PORT", str(PORT)))
    for name, text in EXPRESS_FILES.items():
        (express / name).parent.mkdir(parents=True, exist_ok=True)
        (express / name).write_text(text)
    esm = work / "express-esm"
    shutil.copytree(express, esm, symlinks=True)
    (esm / "package.json").write_text('{"name": "bench-app", "version": "1.0.0", "private": true, "type": "module"}\n')
    for name in ["server.js", *EXPRESS_FILES]:
        (esm / name).write_text(to_esm((esm / name).read_text()))
    return {"tiny": tiny, "express": express, "express-esm": esm}


def reloadd_bin() -> str:
    found = Path(sys.executable).with_name("reloadd")
    return str(found) if found.exists() else "reloadd"


def tools(nodemon: str) -> dict[str, list[str]]:
    return {
        "reloadd (warm)": [reloadd_bin(), "server.js"],
        "reloadd --no-warm": [reloadd_bin(), "--no-warm", "server.js"],
        "nodemon": [nodemon, "server.js"],
        "node --watch": ["node", "--watch", "server.js"],
    }


def set_version(app: Path, version: int) -> None:
    esm = '"module"' in (app / "package.json").read_text() if (app / "package.json").exists() else False
    (app / "version.js").write_text(f"export default {version};\n" if esm else f"module.exports = {version};\n")


def restart_round(argv: list[str], app: Path, changes: int) -> list[float]:
    set_version(app, 0)
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("NODE_ENV", None)
    proc = subprocess.Popen(
        argv, cwd=app, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait(lambda: get() == "0")
        time.sleep(SETTLE)
        latencies = []
        for version in range(1, changes + 1):
            began = time.monotonic()
            set_version(app, version)
            wait(lambda v=version: get() == str(v))
            latencies.append((time.monotonic() - began) * 1000)
            time.sleep(CHANGE_GAP)
        return latencies
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the tool left behind
    except ProcessLookupError:
        pass
    proc.wait()
    wait(lambda: get() is None)


def floor(app: Path, rounds: int) -> list[float]:
    set_version(app, 0)
    return [bench_run.cold_start_ms(app, PORT, timeout=30.0) for _ in range(rounds)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "p90": pct(values, 0.9), "n": len(values)}


# ---------------------------------------------------------------- reloadd's own cost


def startup_ms(app: Path, argv: list[str], rounds: int) -> list[float]:
    """exec of the tool -> the app's first line runs (the app appends its start time to a file)."""
    probe = app / "started.log"
    values = []
    for _ in range(rounds):
        probe.unlink(missing_ok=True)
        began = time.time()
        proc = subprocess.Popen(
            argv, cwd=app, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        wait(lambda: probe.exists() and probe.read_text().strip())
        values.append((float(probe.read_text().split()[0]) / 1000 - began) * 1000)
        stop_quietly(proc)
    return values


def stop_quietly(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


FIRST_LINE = (
    "require('fs').appendFileSync(__dirname + '/started.log', performance.timeOrigin + performance.now() + '\\n');\n"
)


def own_cost(work: Path, nodemon: str, rounds: int) -> dict[str, dict[str, float]]:
    bench_run.compiled_reloadd()
    app = work / "startup"
    app.mkdir()
    (app / "server.js").write_text(FIRST_LINE + "setInterval(() => {}, 1000);\n")
    argvs = {"reloadd": [reloadd_bin(), "server.js"], "nodemon": [nodemon, "server.js"]}
    raw: dict[str, list[float]] = {name: [] for name in argvs}
    for index in range(rounds):  # alternating, one start at a time, so drift hits both alike
        for name in argvs if index % 2 == 0 else reversed(list(argvs)):
            raw[name] += startup_ms(app, argvs[name], 1)
    return {name: {"startup_ms": statistics.median(values)} for name, values in raw.items()}


# ---------------------------------------------------------------- run and report


def run(quick: bool) -> dict:
    rounds, changes = (2, 4) if quick else (3, 8)
    work = Path(tempfile.mkdtemp(prefix="reloadd-warm-bench-"))
    try:
        npm_install(work / "nodemon", ["nodemon@3"])
        nodemon = str(work / "nodemon" / "node_modules" / ".bin" / "nodemon")
        apps = make_apps(work)
        argvs = tools(nodemon)
        results: dict = {"apps": {}}
        for app_name, app in apps.items():
            raw: dict[str, list[float]] = {name: [] for name in argvs}
            for index in range(rounds):
                order = list(argvs) if index % 2 == 0 else list(reversed(argvs))
                for name in order:
                    raw[name] += restart_round(argvs[name], app, changes)
                    print(f"  {app_name} round {index + 1}/{rounds}: {name} done", file=sys.stderr)
            results["apps"][app_name] = {
                "restart": {name: summary(values) for name, values in raw.items()},
                "floor": summary(floor(app, rounds * 3)),
            }
        results["own_cost"] = own_cost(work, nodemon, 5 if quick else 9)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def table(results: dict) -> str:
    lines = []
    for app_name, data in results["apps"].items():
        restart, floor_ms = data["restart"], data["floor"]["median"]
        lines += [
            f"\n**{app_name} app** (cold start `node server.js` -> first response: {floor_ms:.0f} ms median)\n",
            "| tool | write -> new version served, median ms | p90 ms | / nodemon | vs cold start |",
            "|---|---|---|---|---|",
        ]
        nodemon = restart["nodemon"]["median"]
        for name, r in restart.items():
            lines.append(
                f"| {name} | {r['median']:.0f} | {r['p90']:.0f} | {r['median'] / nodemon:.2f} | "
                f"{r['median'] - floor_ms:+.0f} ms |"
            )
    lines += goals(results)
    cost = results["own_cost"]
    lines += [
        "\n| supervisor | startup: exec -> app's first line, median ms |",
        "|---|---|",
    ]
    for name, r in cost.items():
        lines.append(f"| {name} | {r['startup_ms']:.0f} |")
    return "\n".join(lines)


GOALS = {"tiny": 0.8, "express": 0.5, "express-esm": 0.35}  # warm restart / nodemon's, per app
STARTUP_GOAL = 0.9  # reloadd's startup / nodemon's


def goals(results: dict) -> list[str]:
    """The goals of warm restarts, each with the figure that meets it or not."""
    warm = "reloadd (warm)"
    lines = [""]
    for app_name, goal in GOALS.items():
        data = results["apps"].get(app_name)
        if data is None:
            continue
        ratio = data["restart"][warm]["median"] / data["restart"]["nodemon"]["median"]
        below = data["restart"][warm]["median"] < data["floor"]["median"]
        lines.append(
            f"- {app_name} app: reloadd/nodemon **{ratio:.2f}** "
            f"(goal <= {goal}: {'met' if ratio <= goal else 'not met'}); "
            f"below the app's cold start: {'yes' if below else 'no'}."
        )
    cost = results["own_cost"]
    startup = cost["reloadd"]["startup_ms"] / cost["nodemon"]["startup_ms"]
    lines.append(
        f"- Startup (exec -> the app's first line): reloadd/nodemon **{startup:.2f}** "
        f"({cost['reloadd']['startup_ms']:.0f} vs {cost['nodemon']['startup_ms']:.0f} ms; goal <= {STARTUP_GOAL}: "
        f"{'met' if startup <= STARTUP_GOAL else 'not met'})."
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--no-markdown", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--from-json", type=Path, help="rewrite the tables from an earlier run's warm.json")
    args = parser.parse_args()
    results = json.loads(args.from_json.read_text()) if args.from_json else run(args.quick)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "warm.json").write_text(json.dumps(results, indent=2))
    text = table(results)
    print(text)
    if not args.no_markdown:
        write_section(text, args.quick)


NOTES = """
Reading these figures: this run had the machine to itself (a tiny app's cold start: ~65 ms), so
nodemon's cold restarts are as fast as they get and the ratios are the least flattering; on a
loaded machine every cold start stretches and the warm ratios fall. The tools ran alternately in
the same run, so the ratios compare like with like. The warm restart saves node's boot and the
loading of the preloaded packages; what remains is detection and the 20 ms burst window,
stopping the old tree, and loading the app's own files. In the ES module app the CommonJS
packages (express, cors, morgan, compression, cookie-parser, winston, lodash, dayjs) are
preloaded and, from the second warm process on, their ES module wrappers built before "go"
(warm_gate.mjs; without it this app measured 0.47 of nodemon on the same machine); helmet, zod
and uuid are imported as their ES module builds, which reloadd does not preload (node offers no
list of an app's ES modules without a loader hook in the app's process, ~19 ms here), and every
ES module of the app is linked and evaluated afresh. A save that comes sooner after a start than
the warm process needs to boot and preload waits for it: never slower than a cold start, but not
faster either. `--no-warm` is reloadd's cold restart, on par with nodemon. Startup is met since
the config is checked without pydantic (docs/design.md, "reloadd's own cost"); it is measured
with reloadd's bytecode compiled, as an installed package has it. Idle CPU is bench/idle.py's
section.
"""


def write_section(text: str, quick: bool) -> None:
    """bench/results/warm.md, and the same section in BENCHMARKS.md (replaced, or appended once)."""
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    rounds = "2 rounds of 4 changes (--quick)" if quick else "3 rounds of 8 changes"
    section = "\n".join(
        [
            BEGIN,
            "## Warm restarts (`python bench/warm.py`)",
            "",
            f"{time.strftime('%Y-%m-%d')}, node {node}, {os.cpu_count()} cores; {rounds} per tool and app, "
            f"tools alternating; a save every {CHANGE_GAP:g} s.",
            text,
            NOTES,
            END,
        ]
    )
    SECTION.write_text(section + "\n")
    target = HERE.parent / "BENCHMARKS.md"
    current = target.read_text() if target.exists() else ""
    if BEGIN in current and END in current:
        current = current[: current.index(BEGIN)] + section + current[current.index(END) + len(END) :]
    else:
        current = current.rstrip("\n") + "\n\n" + section + "\n"
    target.write_text(current)


if __name__ == "__main__":
    main()
