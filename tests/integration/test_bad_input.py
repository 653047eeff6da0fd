"""Bad input at startup and at a config reload: exit 2 with one line naming file and key at
startup; at a reload the error is reported and the running app and config stay."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import pytest
from fs_support import needs_setpriv
from support import Reloadd, free_port, greeting, reloadd_argv, starts, wait_for

RunReloadd = Callable[..., Reloadd]

GREETING_APP = """\
const http = require('http');
require('fs').appendFileSync(__dirname + '/starts.log', process.pid + '\\n');
http.createServer((q, s) => s.end(String(process.env.GREETING))).listen(Number(process.env.PORT), '127.0.0.1');
"""

DEEP = "[" * 100_000 + "]" * 100_000
# (the nodemon.json content, text the one error line must contain)
BAD_EDITS = [
    ('{"ignore": ["logs/[z-a]*"]}', "nodemon.json: key 'ignore.0': invalid glob 'logs/[z-a]*'"),
    ('{"env": ' + DEEP + "}", "nodemon.json: objects or lists nested far more than"),
    ('{"env": {"A=B": "1"}}', "nodemon.json: key 'env.A=B'"),
    ('{"env": {"GREETING": "x\\u0000"}}', "nodemon.json: key 'env.GREETING': contains a NUL byte"),
    ('{"exec": "no-such-program-here"}', '"no-such-program-here" exec not found'),
]


def greeting_app(root: Path, port: int) -> Callable[[str], None]:
    root.mkdir()
    (root / "server.js").write_text(GREETING_APP)

    def write(value: str) -> None:
        (root / "nodemon.json").write_text(json.dumps({"env": {"GREETING": value, "PORT": port}}))

    write("one")
    return write


@pytest.mark.parametrize(("content", "named"), BAD_EDITS, ids=[named for _, named in BAD_EDITS])
def test_a_bad_config_edit_keeps_the_running_app_and_config(
    tmp_path: Path, run_reloadd: RunReloadd, content: str, named: str
) -> None:
    app, port = tmp_path / "app", free_port()
    write = greeting_app(app, port)
    runner = run_reloadd(["server.js"], app)
    wait_for(lambda: greeting(port) == "one", what=f"the app; log:\n{runner.log()}")
    pid = starts(app)[-1]
    (app / "nodemon.json").write_text(content)
    log = runner.wait_log("config not reloaded")
    (line,) = [line for line in log.splitlines() if "config not reloaded" in line]
    assert named in line and "keeping the running config" in line, log
    assert "internal error" not in log and runner.proc.poll() is None, log
    assert starts(app) == [pid] and greeting(port) == "one", log  # the same process still serves
    write("two")
    wait_for(lambda: greeting(port) == "two", what=f"the valid edit applied; log:\n{runner.log()}")
    assert starts(app)[-1] != pid


def run_once(args: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1")
    done: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
        [*reloadd_argv(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30, **kwargs
    )
    return done


@pytest.mark.parametrize(("content", "named"), BAD_EDITS, ids=[named for _, named in BAD_EDITS])
def test_the_same_bad_config_at_startup_is_exit_2_or_127_in_one_line(tmp_path: Path, content: str, named: str) -> None:
    (tmp_path / "server.js").write_text(GREETING_APP)
    (tmp_path / "nodemon.json").write_text(content)
    done = run_once(["server.js"], tmp_path)
    assert done.returncode == (127 if "exec not found" in named else 2), done.stderr
    assert done.stderr.count("\n") == 1 and named in done.stderr and "Traceback" not in done.stderr, done.stderr


@needs_setpriv
def test_an_unreadable_cwd_is_a_usage_error(nobody_reloadd: list[str]) -> None:
    with tempfile.TemporaryDirectory() as name:  # pytest's tmp_path sits in a directory only root may search
        base = Path(name)
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir()
        (locked / "server.js").write_text("")
        locked.chmod(0o700)  # root's: the unprivileged user reloadd runs as cannot read it
        (base / "s.js").write_text("")
        env = dict(os.environ, NO_COLOR="1", HOME=str(base))
        for args, named in ((["--cwd", "locked", "server.js"], "--cwd:"), (["s.js"], "nodemon.json: key 'cwd':")):
            if named.startswith("nodemon.json"):
                (base / "nodemon.json").write_text('{"cwd": "locked"}')
            done = subprocess.run(
                [*nobody_reloadd, *args], cwd=base, env=env, capture_output=True, text=True, timeout=30
            )
            assert done.returncode == 2, done.stderr
            assert done.stderr.startswith(f"[reloadd] {named} directory 'locked' cannot be read"), done.stderr
            assert done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize("flag", ["--help", "--version", "--dump"])
def test_a_stdout_that_cannot_be_written_is_one_error_line(tmp_path: Path, flag: str) -> None:
    (tmp_path / "server.js").write_text("")
    env = dict(os.environ, NO_COLOR="1")
    with open("/dev/full", "w") as full:  # every write fails with ENOSPC
        done = subprocess.run(
            [*reloadd_argv(), flag, "server.js"], cwd=tmp_path, env=env, stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert done.returncode == 74 and done.stderr == "[reloadd] cannot write to stdout: No space left on device\n"
