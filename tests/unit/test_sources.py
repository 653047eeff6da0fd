"""Config sources: which files are read, how layers merge, environment variables, and every bad input's message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from reloadd.errors import ConfigError
from reloadd.setup.cli import CliArgs, parse_args
from reloadd.setup.settings import DEFAULT_EXEC_MAP, DEFAULT_IGNORE_ROOT, DEFAULT_STOP_TIMEOUT
from reloadd.setup.sources import Loaded, load_settings, merge

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project directory, made the current directory."""
    path = tmp_path / "proj"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def load(argv: Optional[list[str]] = None, env: Optional[dict[str, str]] = None, home: Optional[Path] = None) -> Loaded:
    environ = dict(env or {})
    if home is not None:
        environ.setdefault("HOME", str(home))
    return load_settings(parse_args(argv or []), env=environ)


def config_error(argv: Optional[list[str]] = None, env: Optional[dict[str, str]] = None, **kw: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load(argv, env, **kw)
    assert caught.value.exit_code == 2
    return caught.value.message


# -- no config ------------------------------------------------------------------------------------------------
def test_no_config_anywhere_gives_the_defaults(proj: Path, home: Path) -> None:
    loaded = load(home=home)
    settings = loaded.settings
    assert loaded.cwd == proj and loaded.files == [] and loaded.warnings == [] and loaded.notices == []
    assert settings.watch == ["*.*"] and settings.ignore == [] and settings.ignore_root == DEFAULT_IGNORE_ROOT
    assert settings.exec_map == DEFAULT_EXEC_MAP and settings.stop_timeout == DEFAULT_STOP_TIMEOUT
    assert settings.legacy_watch is None and settings.signal == "SIGUSR2" and settings.delay == 0
    assert settings.cwd == str(proj)


def test_without_home_there_is_no_global_config(proj: Path) -> None:
    assert load(env={}).files == []


# -- which local file ---------------------------------------------------------------------------------------------
def test_global_and_local_files_are_both_read_and_reported(proj: Path, home: Path) -> None:
    write_json(home / "nodemon.json", {"verbose": True, "delay": 100})
    write_json(proj / "nodemon.json", {"delay": 200})
    loaded = load(home=home)
    assert loaded.files == [home / "nodemon.json", proj / "nodemon.json"]
    assert loaded.settings.verbose is True and loaded.settings.delay == 200


def test_in_home_itself_the_global_file_is_read_once(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(home)
    write_json(home / "nodemon.json", {"delay": 5})
    assert load(home=home).files == [home / "nodemon.json"]


@pytest.mark.parametrize(
    ("present", "used", "shadowed"),
    [
        (["reloadd.toml", "nodemon.json"], "reloadd.toml", ["nodemon.json"]),
        (["reloadd.toml", "pyproject", "nodemon.json", "package"], "reloadd.toml",
         ["pyproject.toml [tool.reloadd]", "nodemon.json", "package.json nodemonConfig"]),
        (["pyproject", "nodemon.json"], "pyproject.toml", ["nodemon.json"]),
        (["pyproject-other", "nodemon.json"], "nodemon.json", []),  # a pyproject without [tool.reloadd]
        (["nodemon.json", "package"], "nodemon.json", ["package.json nodemonConfig"]),
        (["package"], "package.json", []),
        (["reloadd.toml"], "reloadd.toml", []),
    ],
)  # fmt: skip
def test_local_config_priority(proj: Path, home: Path, present: list[str], used: str, shadowed: list[str]) -> None:
    """reloadd.toml > [tool.reloadd] > nodemon.json > package.json nodemonConfig; a warning names what is ignored."""
    delays = {"reloadd.toml": 1, "pyproject": 2, "nodemon.json": 3, "package": 4}
    for name in present:
        if name == "reloadd.toml":
            (proj / name).write_text(f"delay = {delays[name]}\n")
        elif name == "pyproject":
            (proj / "pyproject.toml").write_text(f"[project]\nname = 'x'\n\n[tool.reloadd]\ndelay = {delays[name]}\n")
        elif name == "pyproject-other":
            (proj / "pyproject.toml").write_text("[tool.black]\nline-length = 100\n")
        elif name == "nodemon.json":
            write_json(proj / name, {"delay": delays[name]})
        else:
            write_json(proj / "package.json", {"main": "x.js", "nodemonConfig": {"delay": delays[name]}})
    loaded = load(home=home)
    assert loaded.files == [proj / used]
    assert loaded.settings.delay == {"reloadd.toml": 1, "pyproject.toml": 2, "nodemon.json": 3, "package.json": 4}[used]
    if shadowed:
        (warning,) = loaded.warnings
        assert "is the config in use; ignoring " + " and ".join(shadowed) in warning
    else:
        assert loaded.warnings == []


def test_package_json_without_nodemon_config_is_not_a_config_file(proj: Path, home: Path) -> None:
    write_json(proj / "package.json", {"main": "server.js"})
    assert load(home=home).files == []


def test_a_broken_pyproject_that_is_not_ours_is_ignored(proj: Path, home: Path) -> None:
    (proj / "pyproject.toml").write_text("[project\n")
    write_json(proj / "nodemon.json", {"delay": 3})
    assert load(home=home).settings.delay == 3


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("custom.json", '{"delay": 7, "ext": "ts"}'),
        ("custom.toml", 'delay = 7\next = "ts"\n'),
        ("conf/dev.json", '{"delay": 7, "ext": "ts"}'),
        ("pyproject.toml", '[tool.reloadd]\ndelay = 7\next = "ts"\n'),
        ("package.json", '{"nodemonConfig": {"delay": 7, "ext": "ts"}}'),
    ],
)
def test_config_flag_reads_json_or_toml(proj: Path, home: Path, name: str, text: str) -> None:
    (proj / name).parent.mkdir(exist_ok=True)
    (proj / name).write_text(text)
    write_json(proj / "nodemon.json", {"delay": 1, "verbose": True})  # not read: --config replaces it
    loaded = load(["--config", name], home=home)
    assert (loaded.settings.delay, loaded.settings.ext, loaded.settings.verbose) == (7, "ts", False)
    assert loaded.files == [proj / name] and loaded.warnings == []


def test_config_flag_is_relative_to_cwd_flag(proj: Path, home: Path) -> None:
    (proj / "app").mkdir()
    write_json(proj / "app" / "dev.json", {"delay": 9})
    loaded = load(["--cwd", "app", "--config", "dev.json"], home=home)
    assert loaded.settings.delay == 9 and loaded.cwd == proj / "app"


def test_local_files_are_looked_up_in_the_cwd_flag_directory(proj: Path, home: Path) -> None:
    (proj / "app").mkdir()
    write_json(proj / "app" / "nodemon.json", {"delay": 4})
    write_json(proj / "nodemon.json", {"delay": 1})
    loaded = load(["--cwd", "app"], home=home)
    assert loaded.settings.delay == 4 and loaded.files == [proj / "app" / "nodemon.json"]


# -- merging -----------------------------------------------------------------------------------------------------
def test_objects_deep_merge_across_layers_and_arrays_replace(proj: Path, home: Path) -> None:
    write_json(
        home / "nodemon.json",
        {"env": {"A": "g", "B": "g"}, "execMap": {"rb": "jruby", "pde": "processing"}, "ignore": ["g/*"],
         "events": {"start": "echo g", "quit": "echo bye"}, "watchOptions": {"usePolling": False, "x": {"a": 1}}},
    )  # fmt: skip
    write_json(
        proj / "nodemon.json",
        {"env": {"B": "l", "C": 1}, "execMap": {"py": "python3"}, "ignore": ["l/*"], "events": {"start": "echo l"},
         "watchOptions": {"x": {"b": 2}}},
    )  # fmt: skip
    settings = load(["-i", "cli/*"], home=home).settings
    assert settings.env == {"A": "g", "B": "l", "C": 1}
    assert settings.exec_map == {"py": "python3", "rb": "jruby", "ts": "ts-node", "pde": "processing"}
    assert settings.events == {"start": "echo l", "quit": "echo bye"}
    assert settings.watch_options == {"usePolling": False, "x": {"a": 1, "b": 2}}
    assert settings.ignore == ["cli/*"]  # arrays replace: the CLI's -i wins outright


def test_ignore_root_and_ignore_are_both_kept(proj: Path, home: Path) -> None:
    write_json(proj / "nodemon.json", {"ignoreRoot": ["**/dist/**"], "ignore": "tmp/*"})
    settings = load(home=home).settings
    assert settings.ignore_root == ["**/dist/**"] and settings.ignore == ["tmp/*"]


def test_empty_ignore_root_removes_the_defaults(proj: Path, home: Path) -> None:
    write_json(proj / "nodemon.json", {"ignoreRoot": []})
    assert load(home=home).settings.ignore_root == []


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        (["global"], 1.0),
        (["global", "local"], 2.0),
        (["global", "local", "env"], 3.0),
        (["global", "local", "env", "cli"], 4.0),
        (["global", "env"], 3.0),
        (["local", "cli"], 4.0),
        (["global", "cli"], 4.0),
        ([], DEFAULT_STOP_TIMEOUT),
    ],
)
def test_precedence_cli_env_local_global_defaults(proj: Path, home: Path, layers: list[str], expected: float) -> None:
    if "global" in layers:
        write_json(home / "nodemon.json", {"stopTimeout": 1})
    if "local" in layers:
        write_json(proj / "nodemon.json", {"stopTimeout": 2})
    env = {"RELOADD_STOP_TIMEOUT": "3"} if "env" in layers else {}
    argv = ["--stop-timeout", "4"] if "cli" in layers else []
    assert load(argv, env, home=home).settings.stop_timeout == expected


def test_null_means_not_set(proj: Path, home: Path) -> None:
    write_json(home / "nodemon.json", {"legacyWatch": True, "delay": 10})
    write_json(proj / "nodemon.json", {"legacyWatch": None, "delay": None})
    settings = load(home=home).settings
    assert settings.legacy_watch is True and settings.delay == 10


def test_exit_crash_spellings(proj: Path, home: Path) -> None:
    write_json(proj / "nodemon.json", {"exitCrash": True})
    loaded = load(home=home)
    assert loaded.settings.exitcrash is True and loaded.warnings == []


def test_merge_does_not_modify_its_layers() -> None:
    lower, upper = {"env": {"A": "1"}}, {"env": {"B": "2"}}
    assert merge([lower, upper]) == {"env": {"A": "1", "B": "2"}}
    assert lower == {"env": {"A": "1"}} and upper == {"env": {"B": "2"}}


# -- shipped examples ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("example", ["nodemon.json.example", "examples/express/nodemon.json"])
def test_the_shipped_examples_load_without_warnings(proj: Path, home: Path, example: str) -> None:
    (proj / "nodemon.json").write_text((REPO / example).read_text())
    loaded = load(home=home)
    assert loaded.warnings == [] and loaded.files == [proj / "nodemon.json"]


# -- file problems ------------------------------------------------------------------------------------------------
def test_a_utf8_bom_is_stripped(proj: Path, home: Path) -> None:
    (proj / "nodemon.json").write_bytes(b"\xef\xbb\xbf" + b'{"delay": 12}')
    (home / "nodemon.json").write_bytes(b"\xef\xbb\xbf" + b'{"verbose": true}')
    settings = load(home=home).settings
    assert settings.delay == 12 and settings.verbose is True


def test_a_utf8_bom_is_stripped_from_toml(proj: Path, home: Path) -> None:
    (proj / "reloadd.toml").write_bytes(b"\xef\xbb\xbf" + b"delay = 12\n")
    assert load(home=home).settings.delay == 12


FILE_ERRORS = [
    ("nodemon.json", '{\n  "delay": 1,\n    "ext" "js"\n}', "nodemon.json: invalid JSON at line 3 column 11:"),
    ("nodemon.json", "", "nodemon.json: invalid JSON at line 1 column 1: expected a value"),
    ("nodemon.json", '["src"]', "nodemon.json: expected an object of settings"),
    ("nodemon.json", '{"env": "PORT=1"}', "nodemon.json: key 'env': expected an object of environment values"),
    ("nodemon.json", '{"delay": "soon"}', "nodemon.json: key 'delay': expected a number of milliseconds from 0 to"),
    ("nodemon.json", '{"signal": "SIGFOO"}', "nodemon.json: key 'signal': unknown signal name 'SIGFOO'"),
    ("nodemon.json", '{"ext": "js",', "nodemon.json: invalid JSON at the end of the file: the settings end too early"),
    ("nodemon.json", '{"watch": ["src"', "nodemon.json: invalid JSON at the end of the file: the settings end"),
    ("nodemon.json", '{"logFormat": "xml"}', "nodemon.json: key 'logFormat': expected \"text\" or \"json\""),
    ("nodemon.json", '{"pollingInterval": 0}', "nodemon.json: key 'pollingInterval': expected a whole number"),
    ("nodemon.json", '{"inspect": "nope"}', "nodemon.json: key 'inspect': expected [HOST:]PORT"),
    ("nodemon.json", b'{"a": "\xff"}', "nodemon.json: not UTF-8 text"),
    ("reloadd.toml", "delay = 1\next = \n", "reloadd.toml: invalid TOML at line 2 column 7: Invalid value"),
    ("reloadd.toml", 'delay = "x"\n', "reloadd.toml: key 'delay': expected a number of milliseconds from 0 to"),
    ("pyproject.toml", "[tool.reloadd]\ndelay = [\n", "pyproject.toml: invalid TOML at the end of the file: Invalid"),
    ("pyproject.toml", '[tool.reloadd]\nstopTimeout = -1\n', "pyproject.toml [tool.reloadd]: key 'stopTimeout'"),
    ("package.json", '{"nodemonConfig": {"watch": 3}}', "package.json nodemonConfig: key 'watch': expected a path"),
    ("package.json", '{"nodemonConfig": "x"}', "package.json nodemonConfig: expected an object of settings"),
    ("package.json", '{"main": "x.js",}', "package.json: invalid JSON at line 1 column 16: a comma before the"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "message"), FILE_ERRORS, ids=lambda v: repr(v)[:40])
def test_bad_config_files_name_the_file_and_key(proj: Path, home: Path, name: str, text: Any, message: str) -> None:
    path = proj / name
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    assert config_error(home=home).startswith(message)


def test_a_message_that_names_the_value_does_not_repeat_it(proj: Path, home: Path) -> None:
    (proj / "nodemon.json").write_text('{"signal": "SIGFOO"}')
    assert config_error(home=home) == "nodemon.json: key 'signal': unknown signal name 'SIGFOO'"


# Each JSON mistake in reloadd's own words, at the same line and column on every Python: the json
# module's messages and positions change between versions (a trailing comma, on 3.13).
JSON_MISTAKES = [
    ('{"watch": ["src"],}', "line 1 column 18: a comma before the closing bracket (JSON allows no trailing comma)"),
    ('{"watch": ["src",\n  ]}', "line 1 column 17: a comma before the closing bracket"),
    ('{"delay" 1}', "line 1 column 10: expected a colon after a key"),
    ('{"delay": 1 "ext": "js"}', "line 1 column 13: expected a comma between two items"),
    ("{delay: 1}", "line 1 column 2: expected a key in double quotes"),
    ('{"delay": }', "line 1 column 11: expected a value"),
    ('{"delay": 1} x', "line 1 column 14: more text after the end of the settings"),
    ('{"ext": "js', "line 1 column 9: a string that is never closed"),
    ('{"ext": "\tjs"}', "line 1 column 10: a raw control character"),
    ('{"ext": "\\q"}', "line 1 column 10: a bad backslash escape"),
    ('{"ext": "\\u12"}', "line 1 column 11: a bad \\uXXXX escape"),
]


@pytest.mark.parametrize(("text", "message"), JSON_MISTAKES, ids=lambda v: repr(v)[:30])
def test_json_mistakes_are_described_the_same_on_every_python(proj: Path, home: Path, text: str, message: str) -> None:
    (proj / "nodemon.json").write_text(text)
    assert config_error(home=home).startswith(f"nodemon.json: invalid JSON at {message}")


DEEP_JSON = "[" * 100_000 + "]" * 100_000  # Python's parser gives up (RecursionError) near 1,000 levels
HOSTILE_VALUES = [
    ("nodemon.json", '{"env": ' + DEEP_JSON + "}", "nodemon.json: objects or lists nested far more than 32 levels"),
    ("package.json", '{"nodemonConfig": {}, "x": ' + DEEP_JSON + "}", "package.json: objects or lists nested far"),
    ("reloadd.toml", "delay = " + DEEP_JSON, "reloadd.toml: objects or lists nested far more than 32 levels"),
    ("nodemon.json", '{"watchOptions": ' + "[" * 40 + "]" * 40 + "}",
     "nodemon.json: key 'watchOptions': nested more than 32 levels deep"),
    ("nodemon.json", '{"env": {"A=B": "1"}}', "nodemon.json: key 'env.A=B': an environment variable name cannot"),
    ("nodemon.json", '{"env": {"": "1"}}', "nodemon.json: key 'env': an environment variable name must not be empty"),
    ("nodemon.json", '{"env": {"A\\u0000B": "1"}}', "nodemon.json: key 'env.A\\x00B': contains a NUL byte"),
    ("nodemon.json", '{"env": {"A": "x\\u0000"}}', "nodemon.json: key 'env.A': contains a NUL byte"),
    ("nodemon.json", '{"env": {"A\\ud800": "1"}}', "nodemon.json: key 'env.A\\ud800': is not valid text"),
    ("nodemon.json", '{"env": {"A": "\\ud800"}}', "nodemon.json: key 'env.A': is not valid text"),
    ("nodemon.json", '{"exec": "node\\u0000x"}', "nodemon.json: key 'exec': contains a NUL byte"),
    ("nodemon.json", '{"watch": ["src", "a\\u0000"]}', "nodemon.json: key 'watch.1': contains a NUL byte"),
    ("nodemon.json", '{"events": {"start": "\\udfff"}}', "nodemon.json: key 'events.start': is not valid text"),
    ("nodemon.json", '{"ignore": ["logs/[z-a]*"]}',
     "nodemon.json: key 'ignore.0': invalid glob 'logs/[z-a]*': bad character range z-a"),
    ("nodemon.json", '{"watch": ["src", "src/[9-0].js"]}', "nodemon.json: key 'watch.1': invalid glob"),
    ("nodemon.json", '{"ignoreRoot": ["[b-a]"]}', "nodemon.json: key 'ignoreRoot.0': invalid glob"),
    ("nodemon.json", '{"hot": {"paths": ["routes/[z-a]"]}}', "nodemon.json: key 'hot.paths.0': invalid glob"),
    ("nodemon.json", '{"ignore": "{1..5000}"}', "nodemon.json: key 'ignore.0': pattern range {1..5000} expands"),
    ("nodemon.json", '{"delay": -5}', "nodemon.json: key 'delay': expected a number of milliseconds from 0"),
    ("nodemon.json", '{"delay": NaN}', "nodemon.json: key 'delay': expected a number of milliseconds from 0"),
    ("nodemon.json", '{"delay": Infinity}', "nodemon.json: key 'delay': expected a number of milliseconds from 0"),
    ("nodemon.json", '{"delay": true}', "nodemon.json: key 'delay': expected a number, not true/false"),
    ("nodemon.json", '{"stopTimeout": Infinity}', "nodemon.json: key 'stopTimeout': expected a number of seconds"),
    ("nodemon.json", '{"eventTimeout": Infinity}',
     "nodemon.json: key 'eventTimeout': expected a number of seconds above 0 to 3600 (an hour)"),
    ("nodemon.json", '{"pollingInterval": 99999999999999999999}',
     "nodemon.json: key 'pollingInterval': expected a whole number of milliseconds from 1 to 3600000"),
    ("nodemon.json", '{"pollingInterval": true}', "nodemon.json: key 'pollingInterval': expected a whole number"),
    ("reloadd.toml", "stopTimeout = inf\n", "reloadd.toml: key 'stopTimeout': expected a number of seconds"),
    ("reloadd.toml", "delay = nan\n", "reloadd.toml: key 'delay': expected a number of milliseconds"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "message"), HOSTILE_VALUES, ids=lambda v: repr(v)[:50])
def test_hostile_values_are_config_errors_naming_file_and_key(
    proj: Path, home: Path, name: str, text: str, message: str
) -> None:
    """Each of these got past validation and failed later: at spawn, while compiling a glob, or
    as a RecursionError, i.e. an internal error (exit 70), or was taken silently."""
    (proj / name).write_text(text)
    error = config_error(home=home)
    assert error.startswith(message) and "\n" not in error and len(error) < 300, error


def test_a_bad_value_is_shown_shortened(proj: Path, home: Path) -> None:
    write_json(proj / "nodemon.json", {"restartable": ["x" * 1000]})
    error = config_error(home=home)
    assert error.startswith("nodemon.json: key 'restartable'") and len(error) < 250, error


# The same value, given as a flag and as a config key, is accepted by both or rejected by both.
PARITY = [
    (["-d", "1" + "0" * 400], "delay", float("inf"), False),  # the flag's digits overflow to infinity
    (["-d", "0"], "delay", 0, True),
    (["-P", "0"], "pollingInterval", 0, False),
    (["-P", "3600000"], "pollingInterval", 3600000, True),
    (["-P", "3600001"], "pollingInterval", 3600001, False),
    (["-P", "99999999999999999999"], "pollingInterval", 99999999999999999999, False),
    (["--stop-timeout", "0"], "stopTimeout", 0, True),
    (["--stop-timeout", "1" + "0" * 400], "stopTimeout", float("inf"), False),
    (["--event-timeout", "0"], "eventTimeout", 0, False),
    (["--event-timeout", "0.5"], "eventTimeout", 0.5, True),
]


@pytest.mark.parametrize(("argv", "key", "value", "valid"), PARITY, ids=lambda v: repr(v)[:30])
def test_flags_and_config_files_accept_the_same_values(
    proj: Path, home: Path, argv: list[str], key: str, value: Any, valid: bool
) -> None:
    outcomes = []
    attempts: tuple[Callable[[], object], ...] = (
        lambda: load(argv, home=home),
        lambda: write_json(proj / "nodemon.json", {key: value}) and load(home=home),
    )
    for attempt in attempts:
        try:
            attempt()
            outcomes.append(True)
        except ConfigError:
            outcomes.append(False)
    assert outcomes == [valid, valid]


def test_an_overlong_watch_name_is_a_path_that_does_not_exist_yet(proj: Path, home: Path) -> None:
    """ENAMETOOLONG from looking the path up is no reason to stop: the watcher waits for it like any missing root."""
    from reloadd.setup.matching import Rules

    write_json(proj / "nodemon.json", {"watch": ["a" * 5000]})
    loaded = load(home=home)
    rules = Rules(loaded.settings, cwd=loaded.cwd, script=None, extensions=["js"])
    assert rules.roots == [proj / ("a" * 5000)]


def test_an_unsearchable_home_is_no_global_config(proj: Path, tmp_path: Path) -> None:
    """Looking up $HOME/nodemon.json must not raise when $HOME cannot be searched (or the name is absurd)."""
    assert load(env={"HOME": str(tmp_path / ("x" * 5000))}).files == []


def test_a_bad_global_file_is_named_by_its_path(proj: Path, home: Path) -> None:
    write_json(home / "nodemon.json", {"quiet": "very"})
    assert config_error(home=home).startswith(f"{home / 'nodemon.json'}: key 'quiet'")


def test_a_missing_config_file_is_an_error(proj: Path, home: Path) -> None:
    assert config_error(["--config", "nope.json"], home=home) == "--config: file 'nope.json' does not exist"


def test_an_unreadable_config_file_is_an_error(proj: Path, home: Path) -> None:
    (proj / "nodemon.json").mkdir()  # a directory where a file should be: not a file, so not a config
    (proj / "dir.json").mkdir()
    assert config_error(["--config", "dir.json"], home=home) == "--config: file 'dir.json' does not exist"


def test_unknown_keys_and_events_are_warnings(proj: Path, home: Path) -> None:
    write_json(proj / "nodemon.json", {"wach": ["src"], "events": {"start": "echo", "boot": "echo"}})
    (home / "nodemon.json").write_text('{"colors": false}')
    warnings = load(home=home).warnings
    assert f"{home / 'nodemon.json'}: unknown key 'colors' ignored" in warnings
    assert "nodemon.json: unknown key 'wach' ignored" in warnings
    assert any(w.startswith("nodemon.json: unknown event 'boot' ignored (known: start,") for w in warnings)
    assert len(warnings) == 3


# -- environment variables ------------------------------------------------------------------------------------------
ENV_CASES = [
    ({"RELOADD_STOP_TIMEOUT": "12"}, "stop_timeout", 12.0),
    ({"RELOADD_STOP_TIMEOUT": "250ms"}, "stop_timeout", 0.25),
    ({"RELOADD_POLL": "1"}, "legacy_watch", True),
    ({"RELOADD_POLL": "0"}, "legacy_watch", False),
    ({"RELOADD_POLL": "true"}, "legacy_watch", True),
    ({"RELOADD_POLL": ""}, "legacy_watch", None),
    ({"CHOKIDAR_USEPOLLING": "1"}, "legacy_watch", True),
    ({"CHOKIDAR_USEPOLLING": "true"}, "legacy_watch", True),
    ({"CHOKIDAR_USEPOLLING": "yes please"}, "legacy_watch", True),
    ({"CHOKIDAR_USEPOLLING": "0"}, "legacy_watch", None),
    ({"CHOKIDAR_USEPOLLING": "false"}, "legacy_watch", None),
    ({"CHOKIDAR_USEPOLLING": "1", "RELOADD_POLL": "0"}, "legacy_watch", False),  # ours wins
    ({"RELOADD_POLL_INTERVAL": "500"}, "polling_interval", 500),
    ({"RELOADD_LOG_FORMAT": "json"}, "log_format", "json"),
    ({"RELOADD_WATCH": "0"}, "watch", False),
    ({"RELOADD_WATCH": "1"}, "watch", ["*.*"]),
    ({"NODE_ENV": "development"}, "watch", ["*.*"]),
    ({"NODE_ENV": "production"}, "watch", False),
    ({"NODE_ENV": " Production "}, "watch", False),  # any case, trimmed, as the sync agent's guard
    ({"NODE_ENV": "production", "RELOADD_WATCH": "1"}, "watch", ["*.*"]),
]


@pytest.mark.parametrize(("env", "attribute", "value"), ENV_CASES, ids=lambda v: repr(v))
def test_environment_variables(proj: Path, home: Path, env: dict[str, str], attribute: str, value: Any) -> None:
    assert getattr(load(env=env, home=home).settings, attribute) == value


def test_production_says_why_it_does_not_watch(proj: Path, home: Path) -> None:
    (notice,) = load(env={"NODE_ENV": "production"}, home=home).notices
    assert notice.startswith("NODE_ENV=production: running as an init, not watching")
    assert "RELOADD_WATCH=1" in notice


def test_production_wins_over_watch_flags_so_the_same_image_is_safe(proj: Path, home: Path) -> None:
    write_json(proj / "nodemon.json", {"watch": ["src"]})
    loaded = load(["-w", "lib"], env={"NODE_ENV": "production"}, home=home)
    assert loaded.settings.watch is False and len(loaded.notices) == 1


def test_no_production_notice_when_not_watching_anyway(proj: Path, home: Path) -> None:
    assert load(["--no-watch"], env={"NODE_ENV": "production"}, home=home).notices == []


def test_flags_beat_the_environment(proj: Path, home: Path) -> None:
    env = {"RELOADD_POLL_INTERVAL": "500", "RELOADD_LOG_FORMAT": "json"}
    settings = load(["-P", "50", "--log-format", "text"], env, home=home).settings
    assert settings.polling_interval == 50 and settings.log_format == "text"


def test_the_environment_beats_config_files(proj: Path, home: Path) -> None:
    write_json(proj / "nodemon.json", {"legacyWatch": True, "pollingInterval": 300})
    settings = load(env={"RELOADD_POLL": "0", "RELOADD_POLL_INTERVAL": "700"}, home=home).settings
    assert settings.legacy_watch is False and settings.polling_interval == 700


ENV_ERRORS = [
    ({"RELOADD_STOP_TIMEOUT": "forever"}, "RELOADD_STOP_TIMEOUT: expected a number of seconds like 5, 2.5 or 500ms"),
    ({"RELOADD_POLL": "maybe"}, "RELOADD_POLL: expected 1 or 0 (true or false), got 'maybe'"),
    ({"RELOADD_POLL_INTERVAL": "fast"}, "RELOADD_POLL_INTERVAL: expected a whole number of milliseconds like 100"),
    ({"RELOADD_POLL_INTERVAL": "0"}, "RELOADD_POLL_INTERVAL: expected a whole number of milliseconds"),
    ({"RELOADD_LOG_FORMAT": "xml"}, "RELOADD_LOG_FORMAT: expected text or json, got 'xml'"),
    ({"RELOADD_WATCH": "sometimes"}, "RELOADD_WATCH: expected 1 or 0 (true or false), got 'sometimes'"),
    ({"RELOADD_WATCH": "sometimes", "NODE_ENV": "production"}, "RELOADD_WATCH: expected 1 or 0"),
]


@pytest.mark.parametrize(("env", "message"), ENV_ERRORS, ids=lambda v: repr(v))
def test_bad_environment_values_name_the_variable(proj: Path, home: Path, env: dict[str, str], message: str) -> None:
    assert config_error(env=env, home=home).startswith(message)


# -- working directory ------------------------------------------------------------------------------------------
def test_cwd_flag_that_does_not_exist(proj: Path, home: Path) -> None:
    assert config_error(["--cwd", "nowhere"], home=home) == "--cwd: directory 'nowhere' does not exist"


def test_cwd_flag_that_is_a_file(proj: Path, home: Path) -> None:
    (proj / "file").write_text("")
    assert config_error(["--cwd", "file"], home=home) == "--cwd: directory 'file' does not exist"


def test_config_cwd_is_relative_to_the_project(proj: Path, home: Path) -> None:
    (proj / "packages" / "api").mkdir(parents=True)
    write_json(proj / "nodemon.json", {"cwd": "packages/api"})
    loaded = load(home=home)
    assert loaded.cwd == proj / "packages" / "api" and loaded.settings.cwd == str(proj / "packages" / "api")


def test_config_cwd_that_does_not_exist_names_the_file(proj: Path, home: Path) -> None:
    write_json(proj / "nodemon.json", {"cwd": "gone"})
    assert config_error(home=home) == "nodemon.json: key 'cwd': directory 'gone' does not exist"


def test_cwd_flag_beats_config_cwd(proj: Path, home: Path) -> None:
    (proj / "a").mkdir()
    write_json(proj / "a" / "nodemon.json", {"cwd": "gone"})
    assert load(["--cwd", "a"], home=home).cwd == proj / "a"


def test_load_settings_changes_no_directory(proj: Path, home: Path) -> None:
    (proj / "a").mkdir()
    load(["--cwd", "a"], home=home)
    assert Path.cwd() == proj


def test_cli_args_can_be_built_directly(proj: Path, home: Path) -> None:
    """The supervisor re-runs load_settings on config reload with the CliArgs it parsed once."""
    cli = CliArgs(options={"delay": 5}, positional=[], node_flags=[], exact=None, config_file=None, cwd=None)
    assert load_settings(cli, env={"HOME": str(home)}).settings.delay == 5


# -- settings that have no effect ------------------------------------------------------------------------------------
def test_exact_form_warns_about_command_keys_it_ignores(proj: Path, home: Path) -> None:
    write_json(proj / "nodemon.json", {"script": "server.js", "exec": "node", "nodeArgs": ["--x"], "delay": 1})
    (warning,) = load(["--", "node", "app.js"], home=home).warnings
    assert warning == "nodemon.json: exec, script, nodeArgs ignored: the command after `--` runs exactly as given"
    assert load(["app.js"], home=home).warnings == []


def test_exitcrash_with_restart_on_crash_warns(proj: Path, home: Path) -> None:
    write_json(proj / "nodemon.json", {"restartOnCrash": True})
    assert load(["--exitcrash"], home=home).warnings == [
        "exitcrash and restartOnCrash are both set: reloadd exits when the app crashes"
    ]


def test_old_regular_expression_rules_are_dropped_with_a_warning(proj: Path, home: Path) -> None:
    """nodemon 1 read `:(\\d)*\\.js` as a regular expression; nodemon now drops it with an error, and so do we."""
    write_json(proj / "nodemon.json", {"ignore": [":(\\d)*\\.js", "tmp/"], "watch": ":src/.*"})
    loaded = load(home=home)
    assert loaded.settings.ignore == ["tmp/"] and loaded.settings.watch == ["*.*"]
    assert sorted(w.split(" is ")[0] for w in loaded.warnings) == ["ignore: ':(\\\\d)*\\\\.js'", "watch: ':src/.*'"]
    assert all("rule dropped" in warning for warning in loaded.warnings)


def test_a_removed_current_directory_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(ConfigError) as caught:
        load_settings(parse_args(["server.js"]), env={})
    assert caught.value.message.startswith("the current directory cannot be used")


def test_the_local_config_files_not_in_use_are_watched_for_unless_config_names_one(proj: Path, home: Path) -> None:
    """A config file that appears later is read then (a sync delivering the project after the start)."""
    names = ["reloadd.toml", "pyproject.toml", "nodemon.json", "package.json"]
    assert [path.name for path in load(home=home).candidates] == names
    (proj / "nodemon.json").write_text('{"delay": 5}')
    loaded = load(home=home)
    assert loaded.files == [proj / "nodemon.json"]
    assert [path.name for path in loaded.candidates] == ["reloadd.toml", "pyproject.toml", "package.json"]
    assert load(["--config", "nodemon.json"], home=home).candidates == []
