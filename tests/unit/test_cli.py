"""The command line: nodemon's splitting, every flag, units, and each usage error's message."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest
from support import DEADLINE, reloadd_argv

from reloadd.errors import ConfigError
from reloadd.setup.cli import CliArgs, parse_args
from reloadd.setup.flags import FLAGS, HELP
from reloadd.setup.values import parse_duration_ms, parse_seconds


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with a script, a module that is only found as `<name>.js`, and a subdirectory."""
    (tmp_path / "server.js").write_text("")
    (tmp_path / "worker.js").write_text("")
    (tmp_path / "src").mkdir()
    return tmp_path


def parse(argv: list[str], base: Path) -> CliArgs:
    return parse_args(argv, base=base)


# -- splitting: script, node flags, script args, exact form ------------------------------------------------
SPLITS = [
    # argv, positional, node_flags, exact
    (["server.js"], ["server.js"], [], None),
    (["server.js", "80", "localhost"], ["server.js", "80", "localhost"], [], None),
    (["--trace-warnings", "server.js", "80"], ["server.js", "80"], ["--trace-warnings"], None),
    (["-r", "dotenv/config", "server.js"], ["server.js"], ["-r", "dotenv/config"], None),
    (["--require", "src", "server.js"], ["server.js"], ["--require", "src"], None),  # value exists, still a value
    (["--max-old-space-size=512", "server.js"], ["server.js"], ["--max-old-space-size=512"], None),
    (["worker", "x"], ["worker", "x"], [], None),  # worker.js exists
    (["."], ["."], [], None),
    (["src"], ["src"], [], None),  # a directory that exists
    (["later.js", "--port", "1"], ["later.js", "--port", "1"], [], None),  # not synced yet, but looks like a script
    (["server.js", "--port", "80"], ["server.js", "--port", "80"], [], None),  # unknown flags after: the script's
    (["server.js", "--", "-w", "x"], ["server.js", "-w", "x"], [], None),  # nodemon: after -- belongs to the script
    (["--", "node", "server.js"], [], [], ["node", "server.js"]),
    (["--", "node", "--inspect", "x.js", "-w"], [], [], ["node", "--inspect", "x.js", "-w"]),
    (["-w", "src", "--", "npm", "start"], [], [], ["npm", "start"]),
    (["--"], [], [], []),
    ([], [], [], None),
    (["--trace-warnings"], [], ["--trace-warnings"], None),  # no script: discovered later
    (["missing", "arg"], ["missing", "arg"], [], None),  # no script on disk: words for the discovered one
    (["--title", "x", "missing"], ["missing"], ["--title", "x"], None),
]


@pytest.mark.parametrize(("argv", "positional", "node_flags", "exact"), SPLITS, ids=lambda v: repr(v))
def test_splitting(project: Path, argv: list[str], positional: list[str], node_flags: list[str], exact: Any) -> None:
    cli = parse(argv, project)
    assert (cli.positional, cli.node_flags, cli.exact) == (positional, node_flags, exact)


@pytest.mark.parametrize(
    ("argv", "found"),
    [(["server.js"], True), (["worker"], True), (["missing", "x"], False), ([], False), (["--", "node"], False)],
)
def test_script_found_says_whether_positional_starts_with_the_script(
    project: Path, argv: list[str], found: bool
) -> None:
    assert parse(argv, project).script_found is found


def test_names_the_os_rejects_are_not_scripts(project: Path) -> None:
    cli = parse(["x" * 5000, "a\0b", "server.js"], project)
    assert cli.positional == ["server.js"] and cli.node_flags == ["x" * 5000, "a\0b"]


def test_reloadd_flags_after_the_script_are_still_reloadds(project: Path) -> None:
    """nodemon recognises its own flags anywhere before `--`: `nodemon app.js -e js,html` is common."""
    cli = parse(["server.js", "-e", "js,html", "--port", "80", "-w", "src"], project)
    assert cli.options == {"ext": "js,html", "watch": ["src"]}
    assert cli.positional == ["server.js", "--port", "80"]


def test_existence_is_checked_in_the_cwd_given_with_cwd(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    cli = parse_args(["--cwd", str(project), "worker", "x"])
    assert cli.script_found and cli.positional == ["worker", "x"] and cli.cwd == str(project)
    cli = parse_args([f"--cwd={project}", "worker"])
    assert cli.script_found
    assert not parse_args(["worker"]).script_found  # not here


# -- every flag -----------------------------------------------------------------------------------------------
FLAG_CASES = [
    (["-w", "src", "--watch", "lib", "--watch=test"], {"watch": ["src", "lib", "test"]}),
    (["-i", "a", "--ignore", "b", "--ignore=c/*"], {"ignore": ["a", "b", "c/*"]}),
    (["-e", "js,ts"], {"ext": "js,ts"}),
    (["--ext=js json"], {"ext": "js json"}),
    (["-x", "ts-node --fast"], {"exec": "ts-node --fast"}),
    (["--exec=python -u"], {"exec": "python -u"}),
    (["-d", "2.5"], {"delay": 2500}),
    (["--delay", "2500ms"], {"delay": 2500}),
    (["--delay=5s"], {"delay": 5000}),
    (["-d", "1"], {"delay": 1000}),
    (["-L"], {"legacyWatch": True}),
    (["--legacy-watch"], {"legacyWatch": True}),
    (["-P", "500"], {"pollingInterval": 500}),
    (["--polling-interval=250ms"], {"pollingInterval": 250}),
    (["-s", "SIGTERM"], {"signal": "SIGTERM"}),
    (["--signal", "usr1"], {"signal": "SIGUSR1"}),
    (["--signal=15"], {"signal": "SIGTERM"}),
    (["-I"], {"stdin": False}),
    (["--no-stdin"], {"stdin": False}),
    (["-C"], {"runOnChangeOnly": True}),
    (["--on-change-only"], {"runOnChangeOnly": True}),
    (["--exitcrash"], {"exitcrash": True}),
    (["--spawn"], {"spawn": True}),
    (["-V"], {"verbose": True}),
    (["--verbose"], {"verbose": True}),
    (["-q"], {"quiet": True}),
    (["--quiet"], {"quiet": True}),
    (["--no-colours"], {"colours": False}),
    (["--no-colors"], {"colours": False}),
    (["--stop-timeout", "10"], {"stopTimeout": 10.0}),
    (["--stop-timeout=0"], {"stopTimeout": 0.0}),
    (["--stop-timeout", "1500ms"], {"stopTimeout": 1.5}),
    (["--event-timeout", "2.5"], {"eventTimeout": 2.5}),
    (["--no-watch"], {"watch": False}),
    (["--restart-on-crash"], {"restartOnCrash": True}),
    (["--log-format", "json"], {"logFormat": "json"}),
    (["--log-format=TEXT"], {"logFormat": "text"}),
    (["--inspect"], {"inspect": "127.0.0.1:9229"}),
    (["--inspect=9230"], {"inspect": "127.0.0.1:9230"}),
    (["--inspect=0.0.0.0:9229"], {"inspect": "0.0.0.0:9229"}),
    (["--inspect=127.0.0.1:0"], {"inspect": "127.0.0.1:0"}),  # node picks a free port
    (["--inspect=[::1]:9229"], {"inspect": "[::1]:9229"}),
    (["--inspect-brk"], {"inspect": "brk:127.0.0.1:9229"}),
    (["--inspect-brk=localhost:1234"], {"inspect": "brk:localhost:1234"}),
    (["--no-update-notifier"], {}),
    (["--dump", "--config", "x.json", "--cwd", "."], {}),
]


@pytest.mark.parametrize(("argv", "options"), FLAG_CASES, ids=lambda v: repr(v))
def test_flag_sets_its_config_key(project: Path, argv: list[str], options: dict[str, Any]) -> None:
    cli = parse(argv, project)
    assert cli.options == options
    assert cli.positional == [] and cli.node_flags == []


def test_inspect_written_before_the_script_is_reloadds_not_nodes(project: Path) -> None:
    cli = parse(["--inspect=0.0.0.0:9229", "server.js"], project)
    assert cli.options == {"inspect": "0.0.0.0:9229"} and cli.node_flags == [] and cli.positional == ["server.js"]


def test_the_last_of_a_repeated_scalar_flag_wins(project: Path) -> None:
    assert parse(["-d", "1", "-d", "2"], project).options == {"delay": 2000}


@pytest.mark.parametrize(
    ("argv", "attribute", "value"),
    [
        (["--config", "x.toml"], "config_file", "x.toml"),
        (["--config=x.json"], "config_file", "x.json"),
        (["--cwd", "app"], "cwd", "app"),
        (["--dump"], "dump", True),
        (["-v"], "version", True),
        (["--version"], "version", True),
        (["-h"], "help", True),
        (["--help"], "help", True),
        (["-V"], "verbose", True),
        (["server.js", "-v"], "version", True),  # as nodemon: -v anywhere before `--` is ours
        (["--", "node", "-v"], "version", False),
        (["--", "node", "--verbose"], "verbose", False),
    ],
)
def test_flags_for_main(project: Path, argv: list[str], attribute: str, value: Any) -> None:
    assert getattr(parse(argv, project), attribute) == value


def test_exact_form_leaves_everything_after_the_mark_alone(project: Path) -> None:
    cli = parse(["--inspect", "--", "node", "-w", "--inspect", "--", "x"], project)
    assert cli.exact == ["node", "-w", "--inspect", "--", "x"] and cli.options == {"inspect": "127.0.0.1:9229"}


# -- units -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "ms"),
    [("2.5", 2500), ("2500ms", 2500), ("5s", 5000), ("0", 0), (".5", 500), ("10", 10000), ("1MS", 1), (" 3 ", 3000)],
)
def test_delay_units(text: str, ms: float) -> None:
    assert parse_duration_ms("--delay", text) == ms


@pytest.mark.parametrize(("text", "seconds"), [("5", 5.0), ("2.5", 2.5), ("500ms", 0.5), ("3s", 3.0), ("0", 0.0)])
def test_seconds_units(text: str, seconds: float) -> None:
    assert parse_seconds("--stop-timeout", text) == seconds


# -- usage errors --------------------------------------------------------------------------------------------------
ERRORS = [
    (["--delay", "x"], "--delay: expected a duration like 2.5, 2500ms or 5s (at most an hour)"),
    (["-d", "-1"], "-d: expected a duration like 2.5, 2500ms or 5s (at most an hour), got '-1'"),
    (["--delay=2m"], "--delay: expected a duration like 2.5, 2500ms or 5s (at most an hour), got '2m'"),
    (["--delay"], "--delay: missing value (TIME)"),
    (["-w"], "-w: missing value (PATH)"),
    (["--watch", "--", "node"], "--watch: missing value (PATH)"),
    (["-x"], "-x: missing value (CMD)"),
    (["--config"], "--config: missing value (FILE)"),
    (["--cwd"], "--cwd: missing value (DIR)"),
    (["--log-format", "yaml"], "--log-format: expected text or json, got 'yaml'"),
    (["--log-format"], "--log-format: missing value (FORMAT)"),
    (["-P", "0"], "-P: expected a whole number of milliseconds like 100 (1 to 3600000, an hour), got '0'"),
    (["--polling-interval", "1.5"], "--polling-interval: expected a whole number of milliseconds like 100"),
    (
        ["--stop-timeout", "soon"],
        "--stop-timeout: expected a number of seconds like 5, 2.5 or 500ms (at most an hour), got 'soon'",
    ),
    (
        ["--event-timeout", "0"],
        "--event-timeout: expected a positive number of seconds like 5, 2.5 or 500ms (at most an hour), got '0'",
    ),
    (["-s", "SIGFOO"], "-s: unknown signal 'SIGFOO'; use a name such as SIGTERM or SIGUSR2"),
    (["--inspect=x"], "--inspect: expected [HOST:]PORT such as 9229 or 127.0.0.1:9229, got 'x'"),
    (["--inspect=99999"], "--inspect: expected [HOST:]PORT such as 9229 or 127.0.0.1:9229, got '99999'"),
    (["--inspect-brk=host:"], "--inspect-brk: expected [HOST:]PORT such as 9229 or 127.0.0.1:9229, got 'host:'"),
    (["--spawn=yes"], "--spawn: takes no value, got '--spawn=yes'"),
    (["--no-watch=1"], "--no-watch: takes no value, got '--no-watch=1'"),
    (["--trace-warnings", "--", "node", "x.js"], "unknown option '--trace-warnings'; with `--`, flags for node go in"),
    (["stray", "--", "node", "x.js"], "unexpected argument 'stray' before `--`"),
]


@pytest.mark.parametrize(("argv", "message"), ERRORS, ids=lambda v: repr(v))
def test_usage_errors_name_the_flag(project: Path, argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(argv, project)
    assert caught.value.message.startswith(message)
    assert caught.value.exit_code == 2


# -- help ----------------------------------------------------------------------------------------------------
def test_help_lists_every_flag_with_its_config_key_and_environment_variable() -> None:
    for flag in FLAGS:
        for name in flag.names:
            assert name in HELP, name
        if flag.key:
            assert f"config: {flag.key}" in HELP, flag.key
        if flag.env:
            assert flag.env in HELP, flag.env
    for variable in (
        "RELOADD_STOP_TIMEOUT",
        "RELOADD_POLL",
        "RELOADD_POLL_INTERVAL",
        "RELOADD_LOG_FORMAT",
        "RELOADD_WATCH",
        "CHOKIDAR_USEPOLLING",
        "NO_COLOR",
        "NODE_ENV",
    ):
        assert variable in HELP, variable


def test_help_covers_every_flag_named_in_the_reference() -> None:
    reference = ["-w", "--watch", "-i", "--ignore", "-e", "--ext", "-x", "--exec", "-d", "--delay", "-L",
                 "--legacy-watch", "-P", "--polling-interval", "-s", "--signal", "-I", "--no-stdin", "-C",
                 "--on-change-only", "--exitcrash", "--spawn", "--cwd", "--config", "--dump", "-V", "--verbose",
                 "-q", "--quiet", "--no-colours", "--no-colors", "-v", "--version", "-h", "--help",
                 "--stop-timeout", "--inspect", "--inspect-brk", "--no-watch", "--restart-on-crash",
                 "--log-format", "--event-timeout"]  # fmt: skip
    names = {name for flag in FLAGS for name in flag.names}
    assert set(reference) <= names


def test_help_lines_fit_a_terminal() -> None:
    assert max(len(line) for line in HELP.splitlines()) <= 120


# -- the installed command: --dump, --help, and usage errors end-to-end ------------------------------------------
def run(args: list[str], cwd: Path, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
    """Run the installed reloadd to completion (only for invocations that exit by themselves)."""
    full_env = {key: value for key, value in os.environ.items() if not key.startswith(("RELOADD_", "CHOKIDAR_"))}
    full_env.pop("NODE_ENV", None)
    full_env.update({"NO_COLOR": "1", "HOME": str(cwd)})
    full_env.update(env or {})
    return subprocess.run(
        reloadd_argv() + args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=DEADLINE, check=False
    )


def dump(args: list[str], cwd: Path, env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    result = run(["--dump", *args], cwd, env)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_dump_shows_the_config_and_the_command(app: Path) -> None:
    data = dump(["--inspect", "-w", "src", "-d", "2.5", "server.js", "80"], app)
    assert data["command"] == ["node", "--inspect=127.0.0.1:9229", "server.js", "80"]
    config = data["config"]
    assert config["watch"] == ["src"] and config["delay"] == 2500 and config["inspect"] == "127.0.0.1:9229"
    assert config["signal"] == "SIGUSR2" and config["execMap"]["ts"] == "ts-node" and config["cwd"] == str(app)


def test_dump_merges_files_environment_and_flags(app: Path) -> None:
    (app / "nodemon.json").write_text(json.dumps({"ext": "js,json", "stopTimeout": 1, "env": {"PORT": 3000}}))
    data = dump(["--", "node", "server.js"], app, env={"RELOADD_STOP_TIMEOUT": "7", "RELOADD_POLL": "1"})
    config = data["config"]
    assert data["command"] == ["node", "server.js"]
    assert (config["ext"], config["stopTimeout"], config["legacyWatch"], config["env"]) == (
        "js,json",
        7,
        True,
        {"PORT": 3000},
    )


def test_dump_in_production_does_not_watch(app: Path) -> None:
    assert dump(["server.js"], app, env={"NODE_ENV": "production"})["config"]["watch"] is False


# (arguments, nodemon.json or None, the command --dump shows, the program the stderr line names or None)
DUMP_WITHOUT_THE_PROGRAM = [
    (["--", "coffee", "x.coffee"], None, ["coffee", "x.coffee"], "coffee"),
    (["x.coffee"], None, ["coffee", "x.coffee"], "coffee"),
    (["--exec", "foo", "server.js"], None, ["foo", "server.js"], "foo"),
    (["page.pug"], {"execMap": {"pug": "pug"}}, ["pug", "page.pug"], "pug"),
    (["server.js"], {"exec": "/path to node"}, ["/path", "to", "node", "server.js"], "/path"),
    (["server.js"], None, ["node", "server.js"], None),
]


@pytest.mark.parametrize(("args", "config", "command", "missing"), DUMP_WITHOUT_THE_PROGRAM, ids=lambda v: repr(v))
def test_dump_answers_even_when_the_program_cannot_be_found(
    app: Path, args: list[str], config: Optional[dict[str, Any]], command: list[str], missing: Optional[str]
) -> None:
    for name in ("x.coffee", "page.pug"):
        (app / name).write_text("")
    if config is not None:
        (app / "nodemon.json").write_text(json.dumps(config))
    result = run(["--dump", *args], app, env={"PATH": os.path.dirname(shutil.which("node") or "/usr/bin/node")})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["command"] == command, data
    assert data["cwd"] == str(app) and "execMap" in data["config"]
    if missing is None:
        assert result.stderr == "", result.stderr
    else:
        (line,) = result.stderr.splitlines()
        assert f'"{missing}"' in line and "exit 127" in line and "Traceback" not in result.stderr, line
        assert ("on PATH" in line) == ("/" not in missing), line


def test_help_and_version_exit_zero(app: Path) -> None:
    result = run(["--help"], app)
    assert result.returncode == 0 and "--legacy-watch" in result.stdout and "Usage:" in result.stdout
    result = run(["-v"], app)
    assert result.returncode == 0 and result.stdout.strip()[0].isdigit()


BAD_INVOCATIONS = [
    (["--delay", "x", "server.js"], {}, {}, "--delay: expected a duration like 2.5, 2500ms or 5s (at most an hour)"),
    (["--log-format", "xml", "server.js"], {}, {}, "--log-format: expected text or json, got 'xml'"),
    (["--cwd", "nowhere", "server.js"], {}, {}, "--cwd: directory 'nowhere' does not exist"),
    (["--config", "nope.json"], {}, {}, "--config: file 'nope.json' does not exist"),
    (["server.js"], {"nodemon.json": '{\n  "delay": 1,\n  "ext" "js"\n}'}, {},
     "nodemon.json: invalid JSON at line 3 column 9"),
    (["server.js"], {"reloadd.toml": "stopTimeout = 'soon'\n"}, {}, "reloadd.toml: key 'stopTimeout'"),
    (["server.js"], {}, {"RELOADD_POLL_INTERVAL": "fast"}, "RELOADD_POLL_INTERVAL: expected a whole number"),
    (["server.js"], {"nodemon.json": '{"delay": 1e308}'}, {}, "nodemon.json: key 'delay': expected a number of"),
    (["server.js"], {"package.json": '{"nodemonConfig": {"stopTimeout": 1e308}}'}, {},
     "package.json nodemonConfig: key 'stopTimeout': expected a number of seconds from 0 to 3600"),
    (["--inspect", "--", "npm", "start"], {}, {}, "--inspect needs node as the program"),
    (["--"], {}, {}, "--: expected the command to run after --"),
    (["nothing-here"], {"server.js": None}, {}, "no script to run"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "files", "env", "message"), BAD_INVOCATIONS, ids=lambda v: repr(v)[:50])
def test_bad_invocations_exit_2_with_one_line_and_no_traceback(
    app: Path, args: list[str], files: dict[str, Optional[str]], env: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        if text is None:
            (app / name).unlink()
        else:
            (app / name).write_text(text)
    result = run(args, app, env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_verbose_does_not_bury_a_usage_error_under_a_traceback(app: Path) -> None:
    result = run(["--verbose", "--delay", "x", "server.js"], app)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "--delay: expected" in line


def test_dash_capital_v_alone_is_one_line_that_points_at_the_version_flag(tmp_path: Path) -> None:
    """nodemon's -V is --verbose; typed alone it is mostly a question for the version."""
    result = run(["-V"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "no script to run" in line and "the version is -v" in line


def test_help_into_a_pipe_closed_early_is_not_an_error() -> None:
    done = subprocess.run(
        ["sh", "-c", f"'{reloadd_argv()[0]}' --help | head -1"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "internal error" not in done.stderr, done.stderr
