"""When a warm process may run the app, and what it may preload: the pure decisions of reloadd/host/warm/manager.py."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Optional

import pytest

from reloadd.host.warm.launch import BOOTSTRAP, GATE, Launch, launch_difference, launch_for, preload_env
from reloadd.host.warm.preload import package_of, preload_list, stale_reason
from reloadd.setup.cli import parse_args
from reloadd.setup.command import build_command
from reloadd.setup.config import validate
from reloadd.setup.environment import env_options
from reloadd.setup.sources import merge

NM = "/app/node_modules"


def launch(tmp_path: Path, argv: list[str], env: Optional[dict[str, str]] = None, config: Any = None) -> Any:
    (tmp_path / "server.js").write_text("")
    cli = parse_args(argv, base=tmp_path)
    command = build_command(validate(merge([config or {}, cli.options]), "test"), cli, tmp_path)
    return launch_for(command, env or {"PATH": "/usr/bin"}, tmp_path, stdin_pipe=True)


def test_node_running_a_script_can_start_warm(tmp_path: Path) -> None:
    found = launch(tmp_path, ["--enable-source-maps", "server.js", "a"])
    assert isinstance(found, Launch)
    assert found.flags == ("--enable-source-maps",) and found.script == "server.js" and found.args == ("a",)


@pytest.mark.parametrize(
    ("argv", "config", "why"),
    [
        (["--", "sh", "-c", "node server.js"], None, "is not node running a script"),
        (["--exec", "python3", "server.js"], None, "is not node running a script"),
        (["--", "node", "-e", "1"], None, "node runs no script file"),
        (["--inspect-brk", "server.js"], None, "node flag --inspect-brk"),
        (["-r", "dotenv/config", "server.js"], None, "node flag -r"),
        (["--import", "tsx", "server.js"], None, "node flag --import"),
        (["--env-file=.env", "server.js"], None, "node flag --env-file"),
        (["server.js"], {"exec": "npm start"}, "is not node running a script"),
    ],
)
def test_commands_that_start_cold(tmp_path: Path, argv: list[str], config: Any, why: str) -> None:
    found = launch(tmp_path, argv, config=config)
    assert isinstance(found, str) and why in found


def test_reloadds_inspect_brk_starts_cold(tmp_path: Path) -> None:
    found = launch(tmp_path, ["--inspect-brk=127.0.0.1:9230", "server.js"])
    assert isinstance(found, str) and "--inspect-brk" in found


@pytest.mark.parametrize("options", ["--inspect", "-r ./hook.js", "--require=x", "--inspect-brk=0"])
def test_node_options_that_start_cold(tmp_path: Path, options: str) -> None:
    found = launch(tmp_path, ["server.js"], env={"NODE_OPTIONS": f"--max-old-space-size=100 {options}"})
    assert isinstance(found, str) and "NODE_OPTIONS" in found


@pytest.mark.parametrize(
    ("argv", "index"),
    [
        (["--trace-warnings", "--inspect=127.0.0.1:9333", "server.js"], 0),  # reloadd's flag goes right after node
        (["--", "node", "--trace-warnings", "--inspect=127.0.0.1:9333", "server.js"], 1),  # node's own stays put
    ],
)
def test_the_inspector_flag_is_held_back_until_go(tmp_path: Path, argv: list[str], index: int) -> None:
    found = launch(tmp_path, argv)
    assert isinstance(found, Launch)
    assert found.flags == ("--trace-warnings",)  # the warm process must not bind the port
    assert (found.inspect_flag, found.inspect_index) == ("--inspect=127.0.0.1:9333", index)
    assert found.inspect == ("127.0.0.1", 9333)


def test_a_changed_node_options_is_a_different_launch(tmp_path: Path) -> None:
    before = launch(tmp_path, ["server.js"], env={"NODE_OPTIONS": "--max-old-space-size=100"})
    after = launch(tmp_path, ["server.js"], env={"NODE_OPTIONS": "--max-old-space-size=200"})
    assert launch_difference(before, before) is None
    assert launch_difference(before, after) == "the environment changed (NODE_OPTIONS)"
    flags = launch(tmp_path, ["--trace-warnings", "server.js"], env={"NODE_OPTIONS": "--max-old-space-size=100"})
    assert launch_difference(before, flags) == "the command or node flags changed"


@pytest.mark.parametrize(
    ("changed", "stale"),
    [
        (["/app/src/a.js"], False),
        (["/app/package.json"], True),
        (["/app/package-lock.json"], True),
        (["/app/yarn.lock"], True),
        (["/app/node_modules/express/index.js"], True),
        (["/app/src/a.js", "/app/pnpm-lock.yaml"], True),
    ],
)
def test_changes_that_make_preloaded_packages_stale(changed: list[str], stale: bool) -> None:
    assert (stale_reason(changed) is not None) is stale


def test_package_of_a_file() -> None:
    assert package_of(f"{NM}/express/lib/express.js") == ("express", f"{NM}/express")
    assert package_of(f"{NM}/@scope/pkg/index.js") == ("@scope/pkg", f"{NM}/@scope/pkg")
    assert package_of(f"{NM}/a/node_modules/b/index.js") == ("b", f"{NM}/a/node_modules/b")
    assert package_of("/app/src/index.js") is None


def test_the_preload_list_keeps_order_and_stops_at_a_package_that_hooks_loading() -> None:
    loaded = [f"{NM}/express/index.js", f"{NM}/dd-trace/index.js", f"{NM}/pg/lib/index.js"]
    assert preload_list(loaded, {}) == [f"{NM}/express/index.js"]  # pg must load after dd-trace's hooks


def test_the_preload_list_stops_at_a_package_found_unsafe() -> None:
    loaded = [f"{NM}/express/index.js", f"{NM}/config/lib/config.js", f"{NM}/pg/lib/index.js"]
    assert preload_list(loaded, {"config": "read /app/config/default.json"}) == [f"{NM}/express/index.js"]


@pytest.mark.parametrize(("value", "warm"), [("0", False), ("false", False), ("1", True)])
def test_reloadd_warm_variable(value: str, warm: bool) -> None:
    assert env_options({"RELOADD_WARM": value}) == {"warm": warm}


def test_no_warm_flag_and_config_key() -> None:
    assert parse_args(["--no-warm", "server.js"], base=Path("/")).options == {"warm": False}
    assert validate({"warm": False}, "test").warm is False
    assert validate({}, "test").warm is True


def test_the_node_side_scripts_ship_with_the_package() -> None:
    root = Path(__file__).parents[2]
    pyproject = (root / "pyproject.toml").read_text()
    assert BOOTSTRAP.is_file() and GATE.is_file()
    # package data: a wheel without the bootstrap starts cold, one without the gate builds no ES module wrappers
    package = ".".join(BOOTSTRAP.parent.relative_to(root).parts)
    assert f'"{package}" = ["{BOOTSTRAP.name}", "{GATE.name}"]' in pyproject


def test_the_gate_is_added_after_the_apps_own_node_options_and_only_when_asked() -> None:
    env = {"NODE_OPTIONS": "--max-old-space-size=512"}
    plain = shlex.split(preload_env(env)["NODE_OPTIONS"])
    assert plain == ["--max-old-space-size=512", "--require", str(BOOTSTRAP)]
    gated = shlex.split(preload_env(env, gate=True)["NODE_OPTIONS"])
    assert gated == [*plain, "--import", GATE.as_uri()]  # a file URL: a path with spaces or % stays one specifier
    assert env == {"NODE_OPTIONS": "--max-old-space-size=512"}  # the app's own environment is untouched
