"""What reloadd loads before it does its job: a plain start, and a restart, never import the
validation library (it is loaded only to word the error of a config that is wrong); the sync agent,
which every sync start waits for, walks the pod before it imports what batches need."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

from support import Reloadd, starts_reach, touch, wait_for

from reloadd.sync.shared.protocol import FrameReader, encode_message

RunReloadd = Callable[..., Reloadd]
IMPORT_TIMES = {"PYTHONPROFILEIMPORTTIME": "1"}  # Python lists every module it imports on stderr


def imported(log: str) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in log.splitlines() if line.startswith("import time:")}


def test_a_start_and_a_restart_with_a_typical_config_never_import_pydantic(app: Path, run_reloadd: RunReloadd) -> None:
    (app / "nodemon.json").write_text(json.dumps({
        "watch": ["."], "ext": "js,json", "ignore": ["*.test.js"], "delay": 100, "env": {"PORT": 0},
        "events": {"restart": "true"}, "hot": {"paths": ["public/**"]}, "sync": {"exclude": ["*.log"]},
    }))  # fmt: skip
    (app / "package.json").write_text(json.dumps({"name": "app", "nodemonConfig": {"verbose": True}}))
    runner = run_reloadd(["server.js"], app, env=IMPORT_TIMES)
    wait_for(starts_reach(app, 1), what=f"the first start:\n{runner.log()}")
    touch(app / "version.js", "module.exports = 'v2';\n")
    wait_for(starts_reach(app, 2), what=f"the restart:\n{runner.log()}")
    modules = imported(runner.log())
    assert "reloadd.supervise.loop" in modules, runner.log()[-2000:]
    assert not {name for name in modules if name.startswith(("pydantic", "annotated_types"))}


def test_a_wrong_config_is_still_worded_by_key(app: Path, run_reloadd: RunReloadd) -> None:
    (app / "nodemon.json").write_text(json.dumps({"delay": "soon"}))
    runner = run_reloadd(["server.js"], app)
    assert runner.proc.wait(timeout=30) == 2
    assert "nodemon.json: key 'delay': expected a number of milliseconds" in runner.log(), runner.log()


# `reloadd agent` as its entry point runs it, with the walk replaced by one that first writes down
# every module imported so far.
AGENT_AT_ITS_WALK = """
import json, sys
import reloadd.app
from reloadd.sync.pod import agent, handlers

walk = handlers.listings

def listings(*args):
    with open(sys.argv[1], "w") as out:
        json.dump(sorted(sys.modules), out)
    return walk(*args)

handlers.listings = listings
sys.exit(agent.agent_main([sys.argv[2]], {"RELOADD_CONTROL_DIR": sys.argv[3]}))
"""
BATCH_SIDE = {  # what only a batch needs: pydantic and dataclasses are the costliest to load
    "reloadd.sync.pod.applier",
    "reloadd.sync.pod.batch",
    "reloadd.sync.pod.installs",
    "reloadd.sync.pod.announce",
    "dataclasses",
    "pydantic",
}


def test_the_agent_walks_the_pod_before_it_imports_what_batches_need(tmp_path: Path) -> None:
    pod = tmp_path / "pod"
    (pod / "src").mkdir(parents=True)
    (pod / "src" / "a.js").write_text("a")
    loaded = tmp_path / "loaded.json"
    start = encode_message({"t": "start", "exclude": []})
    argv = [sys.executable, "-c", AGENT_AT_ITS_WALK, str(loaded), str(pod), str(tmp_path / "control")]
    done = subprocess.run(argv, input=start, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    replies = [frame["t"] for frame in FrameReader().feed(done.stdout) if isinstance(frame, dict)]
    assert replies[0] == "hello" and "dirs-end" in replies, replies
    assert not BATCH_SIDE & set(json.loads(loaded.read_text()))
