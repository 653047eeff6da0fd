"""What a new user meets in the first hour, outside reloadd's own loop: npm scripts, python -m."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_the_dev_script_is_still_plain_reloadd() -> None:
    """The example shows the drop-in: `"dev": "reloadd"` where nodemon was."""
    assert json.loads((EXPRESS / "package.json").read_text())["scripts"]["dev"] == "reloadd"


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
