"""What reloadd loads before node starts: a plain start, and a restart, never import the validation
library; it is loaded only to word the error of a config that is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from support import Reloadd, starts_reach, touch, wait_for

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
