"""``reloadd sync``'s command line and the transport command it builds: pure logic."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from reloadd.errors import ConfigError, ReloaddError
from reloadd.setup.cli import parse_args
from reloadd.setup.forwards import check_loops, parse_forwards
from reloadd.setup.production import refusal
from reloadd.sync.laptop.options import (
    Destination,
    destination_where,
    parse_sync_args,
    whole_repository_warning,
    with_config,
)
from reloadd.sync.laptop.progress import human_duration
from reloadd.sync.laptop.transport import Where, check_engine, exec_argv


def argv_for(*args: str) -> list[str]:
    options = parse_sync_args(list(args))
    assert options is not None
    where = known(options.where)
    return exec_argv(where, where.target)


def known(where: Optional[Where]) -> Where:
    assert where is not None  # the command line named a destination
    return where


def test_the_default_transport_is_kubectl_exec_with_the_agent_appended(tmp_path: Path) -> None:
    assert argv_for(str(tmp_path), "--to", "deploy/api:/app", "-n", "dev", "-c", "app", "--context", "kind") == [
        "kubectl", "exec", "-i", "-n", "dev", "--context", "kind", "-c", "app", "deploy/api", "--",
        "reloadd", "agent", "/app",
    ]  # fmt: skip


def test_a_custom_transport_is_shell_split_and_replaces_everything_before_the_agent(tmp_path: Path) -> None:
    argv = argv_for(str(tmp_path), "--transport", "ssh -p 2222 'dev box'", "--to", "/srv/app")
    assert argv == ["ssh", "-p", "2222", "dev box", "reloadd", "agent", "/srv/app"]
    assert argv_for(str(tmp_path), "--transport", "docker exec -i box") == [
        "docker",
        "exec",
        "-i",
        "box",
        "reloadd",
        "agent",
    ]


@pytest.mark.parametrize("to", [[], ["--to", ""], ["--to", ":"]])
def test_transport_env_must_say_where_or_it_would_write_where_the_command_ran(tmp_path: Path, to: list[str]) -> None:
    with pytest.raises(ConfigError, match="--transport env runs the pod side on this machine: say where"):
        parse_sync_args([str(tmp_path), "--transport", "env", *to])


def test_transport_keeps_the_config_files_directory() -> None:
    merged, _ = with_config(Destination(transport="ssh box"), Destination(to="deploy/api:/app"))
    assert destination_where(merged).remote_dir == "/app"
    merged, _ = with_config(Destination(transport="ssh box"), Destination(to="deploy/api"))
    assert destination_where(merged).remote_dir is None


def test_a_forward_to_its_own_port_on_this_machine_is_refused(tmp_path: Path) -> None:
    forwards = parse_forwards(["3000", "13001:3001"], "sync: -p")
    with pytest.raises(ConfigError, match=r"sync: -p: 3000: with --transport env .* \(-p 13000:3000\)"):
        check_loops(forwards, same_host=True, source="sync: -p")
    check_loops(forwards, same_host=False, source="sync: -p")  # a pod has its own 127.0.0.1
    check_loops(forwards[1:], same_host=True, source="sync: -p")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", ":/app"], "expected TARGET"),
        (["--transport", "env", "-l", "app=x"], "cannot be used together"),
        (["--to", "pod/x", "--bogus"], "unrecognized arguments"),
        (["--to", "pod/x", "--log-format", "xml"], "expected text or json"),
        (["/no/such/dir", "--to", "pod/x"], "'/no/such/dir' does not exist"),
        (["/etc/passwd", "--to", "pod/x"], "'/etc/passwd' is not a directory"),
        (["--to", "pod/x", "--include", "dist"], "--include: 'dist' is not a protected name"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_sync_args(args)


def test_protected_names_can_be_included_and_the_mass_delete_halt_turned_off(tmp_path: Path) -> None:
    options = parse_sync_args([str(tmp_path), "--to", "pod/x", "--include", "node_modules", "--allow-mass-delete"])
    assert options is not None
    assert options.includes == ["node_modules"] and options.allow_mass_delete
    defaults = parse_sync_args([str(tmp_path), "--to", "pod/x"])
    assert defaults is not None and defaults.includes == [] and not defaults.allow_mass_delete


def test_help_is_not_an_error() -> None:
    assert parse_sync_args(["--help"]) is None


def test_a_script_named_like_the_subcommand_is_still_a_script(tmp_path: Path) -> None:
    (tmp_path / "sync.js").write_text("")
    assert parse_args(["sync.js"], base=tmp_path).positional == ["sync.js"]
    assert parse_args(["server.js", "sync"], base=tmp_path).positional == ["server.js", "sync"]


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({}, False),
        ({"NODE_ENV": "production"}, True),
        ({"NODE_ENV": "production", "RELOADD_WATCH": "1"}, False),
        ({"NODE_ENV": "production", "RELOADD_SYNC": "true"}, False),
        ({"RELOADD_SYNC": "0"}, True),
        ({"NODE_ENV": " production "}, True),
    ],
)
def test_the_production_rule(env: dict[str, str], refused: bool) -> None:
    assert (refusal(env) is not None) is refused


@pytest.mark.parametrize(
    ("to", "argv", "name"),
    [
        ("docker://box", ["docker", "exec", "-i", "box", "reloadd", "agent"], "docker://box"),
        ("docker://box:/app", ["docker", "exec", "-i", "box", "reloadd", "agent", "/app"], "docker://box"),
        (
            "compose://api:/srv/app",
            ["docker", "compose", "exec", "-T", "api", "reloadd", "agent", "/srv/app"],
            "compose://api",
        ),
        ("compose://web", ["docker", "compose", "exec", "-T", "web", "reloadd", "agent"], "compose://web"),
    ],
)
def test_docker_and_compose_targets_are_the_docker_transport(
    tmp_path: Path, to: str, argv: list[str], name: str
) -> None:
    options = parse_sync_args([str(tmp_path), "--to", to])
    assert options is not None
    assert exec_argv(known(options.where), known(options.where).target) == argv
    assert known(options.where).target == name  # what the sync's lines and errors call it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "docker://"], "expected docker://NAME"),
        (["--to", "docker://:/app"], "expected docker://NAME"),
        (["--to", "compose://a/b"], "expected compose://NAME"),
        (["--to", "docker://box", "--transport", "env"], "--transport cannot be used with --to docker://box"),
        (["--to", "docker://box", "-n", "dev"], "-n cannot be used"),
        (["--to", "docker://box", "-c", "app"], "-c is for kubectl"),
        (["--to", "compose://api", "--context", "kind"], "--context is for kubectl"),
        (["/no/such/dir", "--to", "docker://box"], "does not exist"),
    ],
)
def test_docker_target_usage_errors_are_one_line(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        parse_sync_args(args)


def test_a_container_name_with_odd_characters_is_passed_as_one_argument(tmp_path: Path) -> None:
    options = parse_sync_args([str(tmp_path), "--to", "docker://my box;rm -rf:/app"])
    assert options is not None
    assert exec_argv(known(options.where), None)[:4] == ["docker", "exec", "-i", "my box;rm -rf"]


def test_a_whole_repository_without_package_json_is_warned_about(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    for app in ("examples/express", "web", "node_modules/dep", ".hidden/app", "a/b/too-deep"):
        (tmp_path / app).mkdir(parents=True)
        (tmp_path / app / "package.json").write_text("{}")
    warning = whole_repository_warning(str(tmp_path))
    assert warning is not None and "a whole git repository with no package.json" in warning
    assert "did you mean examples/express or web (reloadd sync examples/express --to ...)" in warning


@pytest.mark.parametrize("layout", ["app", "plain folder", "repository of one app"])
def test_an_app_folder_is_not_warned_about(tmp_path: Path, layout: str) -> None:
    if layout != "plain folder":
        (tmp_path / "package.json").write_text("{}")
    if layout == "repository of one app":
        (tmp_path / ".git").mkdir()
    assert whole_repository_warning(str(tmp_path)) is None


LONG_SYNCS = [(0, "0 ms"), (41, "41 ms"), (999, "999 ms"), (1000, "1.0 s"), (8074, "8.1 s")]


@pytest.mark.parametrize(("ms", "said"), LONG_SYNCS)
def test_a_long_sync_says_seconds(ms: int, said: str) -> None:
    assert human_duration(ms) == said


def stub_docker(folder: Path, compose_works: bool) -> None:
    """A docker CLI whose compose plugin is there or not (the one thing check_engine asks it)."""
    folder.mkdir(exist_ok=True)
    script = folder / "docker"
    script.write_text(f'#!/bin/sh\n[ "$1" = compose ] && exit {0 if compose_works else 1}\nexit 0\n')
    script.chmod(0o755)


def test_compose_without_the_compose_plugin_is_one_line_naming_the_ways_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_docker(tmp_path / "bin", compose_works=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    options = parse_sync_args([str(tmp_path), "--to", "compose://api:/app"])
    assert options is not None
    with pytest.raises(ReloaddError, match=r"not installed; use .*docker://NAME.*docker-compose exec -T api"):
        check_engine(known(options.where))
    stub_docker(tmp_path / "bin", compose_works=True)
    check_engine(known(options.where))


def test_docker_target_without_docker_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    options = parse_sync_args([str(tmp_path), "--to", "docker://box"])
    assert options is not None
    with pytest.raises(ReloaddError, match="docker not found on PATH") as raised:
        check_engine(known(options.where))
    assert raised.value.exit_code == 127
    kubectl = parse_sync_args([str(tmp_path), "--to", "deploy/api"])
    assert kubectl is not None
    check_engine(known(kubectl.where))  # not a docker target: nothing to check here


def test_without_a_destination_on_the_command_line_the_config_files_is_used(tmp_path: Path) -> None:
    options = parse_sync_args([str(tmp_path)])
    assert options is not None and options.where is None
    with pytest.raises(ConfigError, match=r"say where to: .*sync.*to"):
        destination_where(*with_config(options.destination, Destination()))
    config = Destination(to="deploy/api:/app", namespace="dev", container="app")
    where = destination_where(*with_config(options.destination, config))
    assert exec_argv(where, where.target) == [
        "kubectl", "exec", "-i", "-n", "dev", "-c", "app", "deploy/api", "--", "reloadd", "agent", "/app",
    ]  # fmt: skip


def test_the_command_line_wins_key_by_key_over_the_config_file(tmp_path: Path) -> None:
    config = Destination(to="deploy/api:/app", namespace="dev", container="app", selector=None)
    cli = parse_sync_args([str(tmp_path), "-l", "app=web", "-n", "staging"])
    assert cli is not None
    merged, _ = with_config(cli.destination, config)
    assert (merged.to, merged.selector, merged.namespace, merged.container) == (None, "app=web", "staging", "app")
    with pytest.raises(ConfigError, match="sync.to ':/app': expected TARGET"):
        destination_where(*with_config(Destination(), Destination(to=":/app")))


def test_the_readme_dev_session_config_selects_by_label_into_the_apps_directory(tmp_path: Path) -> None:
    cli = parse_sync_args([str(tmp_path)])
    assert cli is not None
    config = Destination(to=":/app", namespace="dev", container="app", selector="app=api")
    where = destination_where(*with_config(cli.destination, config))
    assert (where.selector, where.remote_dir, where.namespace, where.container) == ("app=api", "/app", "dev", "app")
    assert exec_argv(where, "pod/api-7d9f") == [
        "kubectl", "exec", "-i", "-n", "dev", "-c", "app", "pod/api-7d9f", "--", "reloadd", "agent", "/app",
    ]  # fmt: skip
