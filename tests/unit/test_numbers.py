"""Every duration and count, from every source, is checked the same way: finite, not negative, at
most its documented maximum, or exit 2 with one line naming the source and the key."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

import pytest

from reloadd.app import main
from reloadd.output import out
from reloadd.setup.values import MAX_DURATION_MS, MAX_DURATION_SECONDS

# What each source can express. JSON has no inf/nan literals: 1e999 parses to infinity in Python,
# and Python's parser takes NaN (a value nodemon's JSON.parse would refuse: reloadd must too).
JSON_VALUES = {"1e308": "1e308", "inf": "1e999", "nan": "NaN", "-1": "-1", "abc": '"abc"'}
TOML_VALUES = {"1e308": "1e308", "inf": "inf", "nan": "nan", "-1": "-1", "abc": '"abc"'}
TEXT_VALUES = {"1e308": "1e308", "inf": "inf", "nan": "nan", "-1": "-1", "abc": "abc"}
KEYS = ("delay", "pollingInterval", "stopTimeout", "eventTimeout", "inspect")
FLAGS = {
    "delay": "--delay",
    "pollingInterval": "--polling-interval",
    "stopTimeout": "--stop-timeout",
    "eventTimeout": "--event-timeout",
    "inspect": "--inspect",
}
ENV_VARS = {"stopTimeout": "RELOADD_STOP_TIMEOUT", "pollingInterval": "RELOADD_POLL_INTERVAL"}


class Project:
    """A project directory (the current directory) and a home directory, for one run of ``main``."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir, self.home = root / "proj", root / "home"
        self.dir.mkdir()
        self.home.mkdir()
        (self.dir / "server.js").write_text("")
        monkeypatch.chdir(self.dir)
        for name in [name for name in os.environ if name.startswith(("RELOADD_", "CHOKIDAR_"))] + ["NODE_ENV"]:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", str(self.home))
        monkeypatch.setenv("NO_COLOR", "1")
        monkeypatch.setattr(out, "stream", sys.stderr)  # the one pytest captures now, not the one at import
        self.monkeypatch = monkeypatch
        self.argv: list[str] = []


# A source: (name, can it express the key, write the value; returns the text the error line must start with)
Writer = Callable[[Project, str, str], str]


def flag(project: Project, key: str, value: str) -> str:
    project.argv = [f"{FLAGS[key]}={value}"]
    return f"{FLAGS[key]}:"


def variable(project: Project, key: str, value: str) -> str:
    project.monkeypatch.setenv(ENV_VARS[key], TEXT_VALUES[value])
    return f"{ENV_VARS[key]}:"


def json_file(name: str, wrap: str = "{}") -> Writer:
    def write(project: Project, key: str, value: str) -> str:
        (project.dir / name).write_text(wrap.replace("{}", f'{{"{key}": {JSON_VALUES[value]}}}'))
        return f"{name}{' nodemonConfig' if name == 'package.json' else ''}: key '{key}':"

    return write


def toml_file(name: str, table: str = "") -> Writer:
    def write(project: Project, key: str, value: str) -> str:
        (project.dir / name).write_text(f"{table}{key} = {TOML_VALUES[value]}\n")
        return f"{name}{' [tool.reloadd]' if table else ''}: key '{key}':"

    return write


def home_file(project: Project, key: str, value: str) -> str:
    (project.home / "nodemon.json").write_text(f'{{"{key}": {JSON_VALUES[value]}}}')
    return f"{project.home / 'nodemon.json'}: key '{key}':"


SOURCES: dict[str, tuple[Writer, tuple[str, ...]]] = {
    "flag": (flag, KEYS),
    "environment": (variable, tuple(ENV_VARS)),
    "nodemon.json": (json_file("nodemon.json"), KEYS),
    "package.json": (json_file("package.json", '{"name": "app", "nodemonConfig": {}}'), KEYS),
    "reloadd.toml": (toml_file("reloadd.toml"), KEYS),
    "pyproject.toml": (toml_file("pyproject.toml", "[tool.reloadd]\n"), KEYS),
    "$HOME/nodemon.json": (home_file, KEYS),
}
TABLE = [
    (source, key, value)
    for source, (_, keys) in SOURCES.items()
    for key in keys
    for value in TEXT_VALUES
    if not (key == "inspect" and value == "abc" and source == "flag")  # a host name: checked below instead
]


def run_main(project: Project, capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``reloadd --dump ...`` in this process: a value that got through prints the dump and exits 0."""
    code = main(["--dump", *project.argv, "server.js"])
    return code, capfd.readouterr().err


@pytest.mark.parametrize(("source", "key", "value"), TABLE, ids=lambda v: str(v))
def test_an_absurd_number_is_exit_2_with_one_line_naming_source_and_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    source: str,
    key: str,
    value: str,
) -> None:
    project = Project(tmp_path, monkeypatch)
    named = SOURCES[source][0](project, key, value)
    code, err = run_main(project, capfd)
    assert code == 2, err
    (line,) = err.splitlines()
    assert line.startswith(f"[reloadd] {named}"), line
    assert "Traceback" not in err and "internal error" not in err, err


def test_an_inspect_flag_value_that_is_not_a_port_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    project = Project(tmp_path, monkeypatch)
    project.argv = ["--inspect=abc"]
    code, err = run_main(project, capfd)
    assert code == 2 and err.startswith("[reloadd] --inspect:") and err.count("\n") == 1, err


# (key, the largest value a file takes (in the key's unit), the same and one more as flag values)
MAXIMUMS = [
    ("delay", MAX_DURATION_MS, (f"{MAX_DURATION_MS}ms", f"{MAX_DURATION_MS + 1}ms")),
    ("pollingInterval", MAX_DURATION_MS, (f"{MAX_DURATION_MS}", f"{MAX_DURATION_MS + 1}")),
    ("stopTimeout", MAX_DURATION_SECONDS, (f"{MAX_DURATION_SECONDS}", f"{MAX_DURATION_SECONDS + 1}")),
    ("eventTimeout", MAX_DURATION_SECONDS, (f"{MAX_DURATION_SECONDS}", f"{MAX_DURATION_SECONDS + 1}")),
]


@pytest.mark.parametrize(("key", "largest", "flag_values"), MAXIMUMS, ids=lambda v: str(v))
@pytest.mark.parametrize("where", ["flag", "file"])
def test_the_documented_maximum_is_taken_and_one_more_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    key: str,
    largest: int,
    flag_values: tuple[str, str],
    where: str,
) -> None:
    project = Project(tmp_path, monkeypatch)
    outcomes = []
    for amount, text in zip((largest, largest + 1), flag_values):
        if where == "flag":
            project.argv = [FLAGS[key], text]
        else:
            (project.dir / "nodemon.json").write_text(json.dumps({key: amount}))
        outcomes.append(run_main(project, capfd)[0])
    assert outcomes == [0, 2]
