"""What a new user meets in the first hour, outside reloadd's own loop: npm scripts, python -m."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from support import DEADLINE

REPO = Path(__file__).resolve().parents[2]
EXPRESS = REPO / "examples" / "express"


def test_npm_run_dev_without_reloadd_on_path_says_how_to_get_it(tmp_path: Path) -> None:
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("npm is not installed")
    shutil.copy(EXPRESS / "package.json", tmp_path / "package.json")
    path = os.pathsep.join(dict.fromkeys([str(Path(node).parent), str(Path(npm).parent), "/usr/bin", "/bin"]))
    if shutil.which("reloadd", path=path):
        pytest.skip("reloadd is installed system-wide here")
    done = subprocess.run(
        ["npm", "run", "--silent", "dev"],
        cwd=tmp_path,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=DEADLINE * 3,
        check=False,
    )
    assert done.returncode != 0
    assert "reloadd is not on PATH" in done.stderr and ". .venv/bin/activate" in done.stderr, done.stderr
    assert "not found" not in done.stderr, done.stderr  # the shell's bare `reloadd: not found` is what it replaces


def test_the_dev_script_is_reloadd_where_nodemon_was() -> None:
    """The example shows the drop-in: reloadd where nodemon was (``exec`` so that signals reach it)."""
    assert json.loads((EXPRESS / "package.json").read_text())["scripts"]["dev"] in ("reloadd", "exec reloadd")


def test_a_sigterm_to_npm_run_dev_stops_reloadd_and_the_app(tmp_path: Path) -> None:
    """npm hands SIGTERM to the script's shell only; the example's script must get it to reloadd."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    shutil.copy(EXPRESS / "package.json", tmp_path / "package.json")
    (tmp_path / "server.js").write_text("console.log('up'); setInterval(() => {}, 1000);\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    argv = ["npm", "run", "dev"]
    with subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as npm:
        tree: list[psutil.Process] = []
        try:
            assert npm.stdout is not None
            for line in npm.stdout:  # the app's own line: reloadd runs it
                if line.strip() == b"up":
                    break
            tree = psutil.Process(npm.pid).children(recursive=True)
            npm.terminate()
            npm.wait(DEADLINE)
            _, alive = psutil.wait_procs(tree, timeout=5)
            assert not alive, f"left running after npm was stopped: {alive}"
        finally:
            for process in [*tree, psutil.Process(npm.pid)] if npm.poll() is None else tree:
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass


def test_python_dash_m_works_next_to_a_checkout_named_reloadd(tmp_path: Path) -> None:
    """`python -m reloadd` from the folder that holds a clone called reloadd (no __init__.py at its top)."""
    checkout = tmp_path / "reloadd"
    (checkout / "docs").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\nname = 'reloadd'\n")
    done = subprocess.run(
        [sys.executable, "-m", "reloadd", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() and "Error" not in done.stderr, done.stderr
