# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""The laptop's "your change is live" line: after every batch, one line per pod saying what the
batch did to the app there (restarted and how fast, crashed at start and where, nothing to
restart, nobody to restart it), from the pod's own supervisor. ``--transport env`` and a real
node app under reloadd in the pod directory."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable

import pytest
from support import Reloadd, free_port, make_app, wait_for
from sync_support import control_env, served, start_sync

from reloadd.sync.pod.announce import LOG_RESCAN

LIVE = re.compile(r"\] (\S+): (.+?) → (.*)$", re.M)  # pod: what → outcome
QUIET = 1.5  # seconds with no further line: "exactly one line for this batch"

SERVER_JS = """\
const http = require('http');
const version = require('./version.js');
require('./lib/start.js');
http.createServer((req, res) => res.end(version)).listen(Number(process.env.PORT), '127.0.0.1');
"""


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    root = make_app(tmp_path / "laptop", server_js=SERVER_JS)
    (root / "lib").mkdir()
    (root / "lib" / "start.js").write_text("// runs at start\n")
    return root


def outcomes(sync: Reloadd) -> list[str]:
    return [match[2] for match in LIVE.findall(sync.log())]


def settled(sync: Reloadd) -> int:
    """The number of live lines once every batch so far has its own (each "synced" line is followed by one)."""
    wait_for(lambda: len(outcomes(sync)) >= sync.log().count("] synced "), what=f"the live lines:\n{sync.log()}")
    return len(outcomes(sync))


def next_outcome(sync: Reloadd, before: int) -> str:
    """Wait for the line of the next batch, then for QUIET more: no second line may follow."""
    wait_for(lambda: len(outcomes(sync)) > before, what=f"a live line:\n{sync.log()}")
    time.sleep(QUIET)
    found = outcomes(sync)
    assert len(found) == before + 1, sync.log()
    return found[-1]


def app_in(run_reloadd: Callable[..., Reloadd], pod: Path, *flags: str) -> tuple[Reloadd, int]:
    port = free_port()
    app = run_reloadd([*flags, "server.js"], pod, env={"PORT": str(port), **control_env(pod.parent)})
    wait_for(lambda: served(port).startswith("module") or served(port).startswith("v"), what=f"the app:\n{app.log()}")
    return app, port


@pytest.mark.parametrize("flags", [[], ["--no-warm"]], ids=["warm", "cold"])
def test_every_batch_says_once_whether_the_app_restarted_or_crashed_and_where(
    run_reloadd, laptop: Path, pod: Path, flags: list[str]
) -> None:
    sync = start_sync(run_reloadd, laptop, pod)
    app, port = app_in(run_reloadd, pod, *flags)
    seen = settled(sync)

    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    outcome = next_outcome(sync, seen)
    assert re.fullmatch(r"restarted in \d+ ms", outcome), sync.log()
    assert served(port) == "v2"
    assert re.search(r"\] \S+: 1 file → restarted", sync.log())

    (laptop / "lib" / "start.js").write_text("\n\nthrow new Error('boom at start');\n")
    assert next_outcome(sync, seen + 1) == "crashed at start (exit status 1):"
    log = sync.log()
    tail = log[log.rindex("crashed at start") :]
    assert "  lib/start.js:3\n" in tail, log  # where, as the developer's own path, not the pod's
    assert "Error: boom at start" in tail and str(pod) not in tail and "node:internal" not in tail, log

    (laptop / "lib" / "start.js").write_text("// fixed\n")
    assert next_outcome(sync, seen + 2).startswith("restarted in "), sync.log()
    assert served(port) == "v2"


def test_a_batch_the_app_does_not_watch_says_no_restart(run_reloadd, laptop: Path, pod: Path) -> None:
    sync = start_sync(run_reloadd, laptop, pod)
    app, _ = app_in(run_reloadd, pod)
    starts_before = app.log().count("starting `node server.js`")
    seen = settled(sync)
    (laptop / "notes.md").write_text("not watched: .md is not among the app's extensions\n")
    assert next_outcome(sync, seen) == "no restart (nothing the app watches changed)"
    assert app.log().count("starting `node server.js`") == starts_before


def test_a_config_file_synced_after_the_pod_s_reloadd_started_is_read(run_reloadd, laptop: Path, pod: Path) -> None:
    """The pod's reloadd started before the project's config arrived: the config is read when it comes."""
    sync = start_sync(run_reloadd, laptop, pod)
    app, _ = app_in(run_reloadd, pod)
    (laptop / "reloadd.toml").write_text('ext = "js,md"\n')  # .toml is no watched extension
    app.wait_log("config reloaded: ext")
    seen = settled(sync)
    (laptop / "notes.md").write_text("watched now\n")
    assert next_outcome(sync, seen).startswith("restarted in "), f"{sync.log()}\n{app.log()}"


def test_with_no_supervisor_in_the_pod_the_line_says_nothing_restarted(run_reloadd, laptop: Path, pod: Path) -> None:
    sync = start_sync(run_reloadd, laptop, pod)
    seen = settled(sync)
    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    outcome = next_outcome(sync, seen)
    assert outcome.startswith("written, but no reloadd in the pod watches"), sync.log()


def test_json_lines_carry_the_outcome_and_the_crash_lines(run_reloadd, laptop: Path, pod: Path) -> None:
    sync = start_sync(run_reloadd, laptop, pod, "--log-format", "json")
    app_in(run_reloadd, pod)

    def live_records() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in sync.log().splitlines() if line.startswith("{")]
        return [record for record in lines if record.get("event") == "live"]

    before = len(live_records())
    (laptop / "lib" / "start.js").write_text("throw new TypeError('nope');\n")
    wait_for(lambda: len(live_records()) > before, what=f"a live record:\n{sync.log()}")
    record = live_records()[-1]
    assert record["outcome"] == "crashed" and record["level"] == "error"
    assert any("TypeError: nope" in line for line in record["lines"])  # type: ignore[attr-defined]


LOGGING_SERVER_JS = """\
const http = require('http');
const version = require('./version.js');
console.log('serving ' + version + ' from ' + process.pid);
console.error('a warning on stderr');
http.createServer((req, res) => res.end(version)).listen(Number(process.env.PORT), '127.0.0.1');
"""


def test_logs_brings_the_apps_own_output_to_the_laptop_and_the_pods_logs_keep_it(
    run_reloadd, laptop: Path, pod: Path
) -> None:
    (laptop / "server.js").write_text(LOGGING_SERVER_JS)
    sync = start_sync(run_reloadd, laptop, pod, "--logs")
    app, port = app_in(run_reloadd, pod)
    time.sleep(LOG_RESCAN + QUIET)  # the agent looks for a supervisor that started after it this often
    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    wait_for(lambda: served(port) == "v2", what=app.log())
    where = str(pod)
    wait_for(lambda: f"{where} | serving v2 from " in sync.out(), what=f"the app's line on the laptop:\n{sync.out()}")
    assert f"{where} | a warning on stderr" in sync.out()
    assert "serving v2 from " in app.out() and "a warning on stderr" in app.log()  # still in the pod's own logs


def test_without_logs_the_apps_output_stays_in_the_pod(run_reloadd, laptop: Path, pod: Path) -> None:
    (laptop / "server.js").write_text(LOGGING_SERVER_JS)
    sync = start_sync(run_reloadd, laptop, pod)
    app, port = app_in(run_reloadd, pod)
    seen = settled(sync)
    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    next_outcome(sync, seen)
    assert "serving" not in sync.out() and "serving v2" in app.out()
