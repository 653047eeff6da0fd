"""The command to run: discovery, execMap, exec strings, substitutions, extensions, the exact form, the
inspector, and the child's environment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import pytest

from reloadd.errors import ConfigError
from reloadd.setup.child_env import child_env, env_value
from reloadd.setup.cli import parse_args
from reloadd.setup.command import Command, build_command
from reloadd.setup.config import validate
from reloadd.setup.inspector import INSPECT_NOT_NODE
from reloadd.setup.script import NO_SCRIPT, extensions
from reloadd.setup.sources import merge


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    for name in ("server.js", "app.py", "app.ts", "tool.coffee", "my file.js", "hello.py", "a;touch x;.js"):
        (tmp_path / name).write_text("")
    return tmp_path


def command(cwd: Path, argv: list[str], config: Optional[dict[str, Any]] = None) -> Command:
    """build_command with the flags merged over ``config``, as load_settings merges them."""
    cli = parse_args(argv, base=cwd)
    return build_command(validate(merge([config or {}, cli.options]), "test"), cli, cwd)


def error(cwd: Path, argv: list[str], config: Optional[dict[str, Any]] = None) -> str:
    with pytest.raises(ConfigError) as caught:
        command(cwd, argv, config)
    return caught.value.message


def write_package(cwd: Path, **package: Any) -> None:
    (cwd / "package.json").write_text(json.dumps(package))


# -- nodemon form: argv ----------------------------------------------------------------------------------------
ARGVS = [
    # argv, config, expected argv
    (["server.js"], {}, ["node", "server.js"]),
    (["server.js", "80", "--port", "1"], {}, ["node", "server.js", "80", "--port", "1"]),
    (["server"], {}, ["node", "server.js"]),  # <arg>.js
    (["--trace-warnings", "-r", "dotenv/config", "server.js", "x"], {},
     ["node", "--trace-warnings", "-r", "dotenv/config", "server.js", "x"]),
    (["app.py", "-v"], {}, ["python", "app.py"]),  # -v is reloadd's --version, as in nodemon
    (["app.py", "--", "-v"], {}, ["python", "app.py", "-v"]),
    (["app.ts"], {}, ["ts-node", "app.ts"]),
    (["app.ts"], {"execMap": {"ts": "tsx"}}, ["tsx", "app.ts"]),
    (["tool.coffee"], {"execMap": {"coffee": "coffee --nodejs"}}, ["coffee", "--nodejs", "tool.coffee"]),
    (["-x", "tsx watch-free", "app.ts"], {}, ["tsx", "watch-free", "app.ts"]),  # exec beats execMap
    (["-x", "node --title 'my app'", "server.js"], {}, ["node", "--title", "my app", "server.js"]),
    (["server.js"], {"exec": ["node", "--no-warnings"]}, ["node", "--no-warnings", "server.js"]),
    (["-x", "python -u {{filename}} --x", "app.py", "a"], {}, ["python", "-u", "app.py", "--x", "a"]),
    (["my file.js"], {"exec": "node {{filename}}"}, ["node", "my file.js"]),  # one word, however it is spelt
    (["server.js"], {"exec": ["node", "{{filename}}", "--flag"]}, ["node", "server.js", "--flag"]),
    (["server.js"], {"execArgs": ["--a"], "nodeArgs": ["--b"]}, ["node", "--a", "--b", "server.js"]),
    (["--c", "server.js"], {"exec": "node", "execArgs": ["--a"], "nodeArgs": ["--b"]},
     ["node", "--a", "--b", "--c", "server.js"]),
    (["app.py"], {"execArgs": ["-u"], "nodeArgs": ["--b"]}, ["python", "-u", "app.py"]),  # nodeArgs: node only
    (["-x", "/usr/bin/node", "server.js"], {"nodeArgs": ["--b"]}, ["/usr/bin/node", "--b", "server.js"]),
    ([], {"script": "server.js", "args": ["--port", "1"]}, ["node", "server.js", "--port", "1"]),
    (["server.js", "2"], {"args": ["1"]}, ["node", "server.js", "2"]),  # CLI args replace config args
    (["server.js"], {"script": "other.js"}, ["node", "server.js"]),  # CLI script beats config script
    (["-x", "python -m http.server"], {}, ["python", "-m", "http.server"]),  # exec and no script
    (["-x", "python -m http.server", "8000"], {}, ["python", "-m", "http.server", "8000"]),
    # CoffeeScript runs with `coffee`, as nodemon's default; node flags go in one --nodejs argument
    (["tool.coffee", "x"], {}, ["coffee", "tool.coffee", "x"]),
    (["--trace-warnings", "--no-deprecation", "tool.coffee"], {"nodeArgs": ["--b"]},
     ["coffee", "--nodejs", "--b --trace-warnings --no-deprecation", "tool.coffee"]),
    (["tool.coffee"], {"execMap": {"coffee": "node -r coffeescript/register"}},
     ["node", "-r", "coffeescript/register", "tool.coffee"]),
    (["-x", "node", "tool.coffee"], {}, ["node", "tool.coffee"]),  # an explicit exec wins, as in nodemon
    (["--inspect=9230", "tool.coffee"], {}, ["coffee", "--nodejs", "--inspect=127.0.0.1:9230", "tool.coffee"]),
    # a name that is not a file is completed with the first extension of `ext`, as nodemon does
    (["hello", "--ext", "py", "a"], {}, ["python", "hello.py", "a"]),
    (["hello", "a"], {"ext": "py,json"}, ["python", "hello.py", "a"]),
    (["hello"], {"ext": "json,py", "script": "server.js"}, ["node", "server.js", "hello"]),
    # a shell's command string gets the script name quoted; a name with `;` must not run anything
    (["-x", 'sh -c "node {{filename}}"', "a;touch x;.js"], {}, ["sh", "-c", "node 'a;touch x;.js'"]),
    (["a;touch x;.js"], {"exec": ["bash", "-lc", "node {{filename}} && echo ok"]},
     ["bash", "-lc", "node 'a;touch x;.js' && echo ok"]),
    (["my file.js"], {"exec": "node --title={{filename}}"}, ["node", "--title=my file.js"]),  # argv: as is
]  # fmt: skip


@pytest.mark.parametrize(("argv", "config", "expected"), ARGVS, ids=lambda v: repr(v))
def test_nodemon_form(cwd: Path, argv: list[str], config: dict[str, Any], expected: list[str]) -> None:
    result = command(cwd, argv, config)
    assert result.argv == expected and result.shell is False


def test_pwd_substitution(cwd: Path) -> None:
    assert command(cwd, ["server.js"], {"exec": "node --cwd-is={{pwd}}"}).argv == [
        "node",
        f"--cwd-is={cwd}",
        "server.js",
    ]


def test_node_command_details(cwd: Path) -> None:
    result = command(cwd, ["server.js", "80"])
    assert result.script == "server.js" and result.is_node and result.display == "node server.js 80"
    assert result.inspect is None and result.extensions == ["js", "mjs", "cjs", "json"]


def test_non_node_command_details(cwd: Path) -> None:
    result = command(cwd, ["app.py"])
    assert result.script == "app.py" and not result.is_node and result.extensions == ["py", "json"]


# -- shell strings -------------------------------------------------------------------------------------------------
SHELLS = [
    ({"exec": "node server.js | pino-pretty"}, [], "node server.js | pino-pretty"),
    ({"exec": "node {{filename}} | cat"}, ["server.js", "a b"], "node server.js | cat 'a b'"),
    ({"exec": "node {{filename}} > out.log"}, ["my file.js"], "node 'my file.js' > out.log"),
    ({"exec": "NODE_ENV=dev node"}, ["server.js"], "NODE_ENV=dev node server.js"),
    ({"exec": "npm run build && node"}, ["server.js", "--x"], "npm run build && node server.js --x"),
    ({"exec": "node $FLAGS"}, ["server.js"], "node $FLAGS server.js"),
    ({"exec": 'node --title "$NAME"'}, ["server.js"], 'node --title "$NAME" server.js'),
    ({"exec": "cd {{pwd}} && node"}, ["server.js"], "cd {pwd} && node server.js"),
]


@pytest.mark.parametrize(("config", "argv", "string"), SHELLS, ids=lambda v: repr(v))
def test_exec_with_shell_syntax_runs_through_sh(
    cwd: Path, config: dict[str, Any], argv: list[str], string: str
) -> None:
    result = command(cwd, argv, config)
    expected = string.replace("{pwd}", str(cwd))
    assert result.argv == ["sh", "-c", expected] and result.shell and result.display == expected


@pytest.mark.parametrize(
    "exec_value", ["node server.js", "node --title 'a|b' server.js", 'node --title "a;b" server.js', "ts-node -T"]
)
def test_exec_without_shell_syntax_is_split_into_words(cwd: Path, exec_value: str) -> None:
    assert command(cwd, [], {"exec": exec_value}).shell is False


def test_exec_with_unbalanced_quotes(cwd: Path) -> None:
    assert error(cwd, ["server.js"], {"exec": "node 'oops"}).startswith('exec: cannot split "node \'oops" into words')


# -- discovery -----------------------------------------------------------------------------------------------------
def test_package_main(tmp_path: Path) -> None:
    write_package(tmp_path, main="lib/start.js", scripts={"start": "node other.js"})
    (tmp_path / "index.js").write_text("")
    result = command(tmp_path, [])
    assert result.argv == ["node", "lib/start.js"] and result.script == "lib/start.js"


def test_index_js_when_package_has_no_main(tmp_path: Path) -> None:
    write_package(tmp_path, scripts={"start": "node other.js"})
    (tmp_path / "index.js").write_text("")
    assert command(tmp_path, ["--trace-warnings"]).argv == ["node", "--trace-warnings", "index.js"]


def test_index_js_without_package(tmp_path: Path) -> None:
    (tmp_path / "index.js").write_text("")
    assert command(tmp_path, []).argv == ["node", "index.js"]


def test_words_that_are_not_files_go_to_the_discovered_script(tmp_path: Path) -> None:
    (tmp_path / "index.js").write_text("")
    assert command(tmp_path, ["serve", "8080"]).argv == ["node", "index.js", "serve", "8080"]


def test_scripts_start_runs_through_the_shell(tmp_path: Path) -> None:
    write_package(tmp_path, scripts={"start": "node --enable-source-maps dist/main.js"})
    result = command(tmp_path, [])
    assert result.argv == ["sh", "-c", "node --enable-source-maps dist/main.js"] and result.shell
    assert result.script is None and result.extensions == ["js", "mjs", "cjs", "json"]


@pytest.mark.parametrize("start", ["nodemon server.js", "reloadd -- node server.js", "npx nodemon"])
def test_a_start_script_that_runs_a_watcher_is_skipped(tmp_path: Path, start: str) -> None:
    write_package(tmp_path, scripts={"start": start})
    assert error(tmp_path, []) == NO_SCRIPT


def test_nothing_to_run(tmp_path: Path) -> None:
    message = error(tmp_path, [])
    assert message == NO_SCRIPT and "reloadd server.js" in message and "reloadd -- node server.js" in message


def test_config_script_relative_to_a_config_cwd_is_found_at_build_time(tmp_path: Path) -> None:
    """parse_args looked in the starting directory; the script lives in the config's cwd."""
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "main.js").write_text("")
    cli = parse_args(["main", "1"], base=tmp_path)
    assert not cli.script_found
    result = build_command(validate({}, "test"), cli, tmp_path / "api")
    assert result.argv == ["node", "main.js", "1"]


def test_broken_package_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text("{")
    assert error(tmp_path, []).startswith("package.json: cannot read it to find the script")


# -- extensions ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ext", "script", "expected"),
    [
        (None, "server.js", ["js", "mjs", "cjs", "json"]),
        (None, "server.mjs", ["js", "mjs", "cjs", "json"]),
        (None, "server.cjs", ["js", "mjs", "cjs", "json"]),
        (None, None, ["js", "mjs", "cjs", "json"]),
        (None, ".", ["js", "mjs", "cjs", "json"]),
        (None, "app.ts", ["ts", "json"]),
        (None, "app.py", ["py", "json"]),
        (None, "tool.coffee", ["coffee", "litcoffee", "json"]),
        (None, "notes.litcoffee", ["litcoffee", "coffee", "json"]),
        ("js,json", "app.ts", ["js", "json"]),
        ("js json", None, ["js", "json"]),
        (".js, .ts", None, ["js", "ts"]),
        ("*.js,*.html", None, ["js", "html"]),
        ("js,js", None, ["js"]),
        ("*", None, ["*"]),
        ("*.*", None, ["*"]),
        ("", "app.py", ["*"]),  # nodemon: an empty ext means every extension, not the script's defaults
        (" ", None, ["*"]),
    ],
)
def test_extensions(ext: Optional[str], script: Optional[str], expected: list[str]) -> None:
    assert extensions(ext, script) == expected


def test_ext_list_from_config_wins(cwd: Path) -> None:
    assert command(cwd, ["server.js"], {"ext": ["ts", "tsx"]}).extensions == ["ts", "tsx"]


# -- exact form ----------------------------------------------------------------------------------------------------
EXACTS = [
    (["node", "server.js"], "server.js"),
    (["node", "--enable-source-maps", "dist/server.js", "80"], "dist/server.js"),
    (["node", "-r", "dotenv/config", "server.js"], "server.js"),
    (["node", "--require=x", "server.js"], "server.js"),
    (["/usr/local/bin/node", "server.js"], "server.js"),
    (["nodejs", "server.js"], "server.js"),
    (["node", "--", "server.js"], "server.js"),
    (["node", "-e", "setInterval(() => {}, 1000)"], None),
    (["node"], None),
    (["npm", "run", "dev"], None),
    (["python", "app.py"], None),
]


@pytest.mark.parametrize(("argv", "script"), EXACTS, ids=lambda v: repr(v))
def test_exact_form_runs_argv_as_given(cwd: Path, argv: list[str], script: Optional[str]) -> None:
    config = {"exec": "ts-node", "execArgs": ["--x"], "nodeArgs": ["--y"], "script": "other.js", "args": ["z"]}
    result = command(cwd, ["--", *argv], config)
    assert result.argv == argv and result.script == script and result.shell is False


def test_exact_form_uses_the_scripts_extensions(cwd: Path) -> None:
    assert command(cwd, ["--", "node", "--import", "tsx", "app.ts"]).extensions == ["ts", "json"]
    assert command(cwd, ["-e", "js", "--", "node", "app.ts"]).extensions == ["js"]


def test_exact_form_needs_a_command(cwd: Path) -> None:
    assert error(cwd, ["--"]).startswith("--: expected the command to run after --")


def test_exact_form_display_quotes_like_a_shell(cwd: Path) -> None:
    assert command(cwd, ["--", "node", "my file.js"]).display == "node 'my file.js'"


# -- inspector -----------------------------------------------------------------------------------------------------
INSPECTS = [
    (["--inspect", "--", "node", "server.js"], ["node", "--inspect=127.0.0.1:9229", "server.js"], ("127.0.0.1", 9229)),
    (["--inspect=0.0.0.0:9229", "--", "/usr/bin/node", "-r", "x", "s.js"],
     ["/usr/bin/node", "--inspect=0.0.0.0:9229", "-r", "x", "s.js"], ("0.0.0.0", 9229)),
    (["--inspect-brk=9300", "--", "node", "s.js"], ["node", "--inspect-brk=127.0.0.1:9300", "s.js"],
     ("127.0.0.1", 9300)),
    (["--inspect=[::1]:9229", "--", "node", "s.js"], ["node", "--inspect=[::1]:9229", "s.js"], ("::1", 9229)),
    (["--inspect", "server.js"], ["node", "--inspect=127.0.0.1:9229", "server.js"], ("127.0.0.1", 9229)),
    (["--inspect=9230", "--trace-warnings", "server.js", "1"],
     ["node", "--inspect=127.0.0.1:9230", "--trace-warnings", "server.js", "1"], ("127.0.0.1", 9230)),
    (["--", "node", "--inspect", "server.js"], ["node", "--inspect", "server.js"], ("127.0.0.1", 9229)),
    (["--", "node", "--inspect-brk=0.0.0.0:9333", "s.js"], ["node", "--inspect-brk=0.0.0.0:9333", "s.js"],
     ("0.0.0.0", 9333)),
    (["--", "node", "s.js", "--inspect"], ["node", "s.js", "--inspect"], None),  # the script's flag, not node's
    (["--inspect-wait", "server.js"], ["node", "--inspect-wait", "server.js"], ("127.0.0.1", 9229)),  # node's own
]  # fmt: skip


@pytest.mark.parametrize(("argv", "expected", "target"), INSPECTS, ids=lambda v: repr(v))
def test_inspector(cwd: Path, argv: list[str], expected: list[str], target: Any) -> None:
    result = command(cwd, argv)
    assert result.argv == expected and result.inspect == target


def test_inspector_from_config(cwd: Path) -> None:
    result = command(cwd, ["server.js"], {"inspect": True, "nodeArgs": ["--b"]})
    assert result.argv == ["node", "--inspect=127.0.0.1:9229", "--b", "server.js"]


def test_inspector_in_a_node_shell_command(cwd: Path) -> None:
    result = command(cwd, ["--inspect", "server.js"], {"exec": "NODE_ENV=dev node {{filename}} | cat"})
    assert result.argv == ["sh", "-c", "NODE_ENV=dev node --inspect=127.0.0.1:9229 server.js | cat"]
    assert result.inspect == ("127.0.0.1", 9229) and result.is_node


@pytest.mark.parametrize(
    ("argv", "config"),
    [
        (["--inspect", "--", "npm", "run", "dev"], {}),
        (["--inspect", "app.py"], {}),
        (["--inspect", "server.js"], {"exec": "ts-node"}),
        (["--inspect", "server.js"], {"exec": "npm run build && node"}),
        (["server.js"], {"exec": "python", "inspect": 9229}),
    ],
)
def test_inspector_needs_node(cwd: Path, argv: list[str], config: dict[str, Any]) -> None:
    message = error(cwd, argv, config)
    assert message == INSPECT_NOT_NODE
    assert "put --inspect in your command instead, e.g. NODE_OPTIONS=--inspect=127.0.0.1:9229" in message


# -- child environment -----------------------------------------------------------------------------------------------
def test_child_env_uses_config_env_as_defaults(tmp_path: Path) -> None:
    settings = validate({"env": {"PORT": 3000, "DEBUG": "app:*", "FLAG": True, "RATIO": 1.5, "WHOLE": 8.0}}, "t")
    env = child_env(settings, {"PORT": "8080", "PATH": "/usr/bin:/bin"}, tmp_path)
    assert env["PORT"] == "8080"  # the caller's environment wins (docs/behaviour.md, nodemon #2209)
    assert (env["DEBUG"], env["FLAG"], env["RATIO"], env["WHOLE"]) == ("app:*", "true", "1.5", "8")


def test_child_env_puts_local_bin_first_on_path(tmp_path: Path) -> None:
    env = child_env(validate({}, "t"), {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert env["PATH"] == f"{tmp_path / 'node_modules' / '.bin'}:/usr/bin:/bin"


def test_child_env_does_not_repeat_local_bin(tmp_path: Path) -> None:
    local = str(tmp_path / "node_modules" / ".bin")
    env = child_env(validate({}, "t"), {"PATH": f"/bin:{local}"}, tmp_path)
    assert env["PATH"] == f"{local}:/bin"


def test_child_env_without_path(tmp_path: Path) -> None:
    env = child_env(validate({}, "t"), {}, tmp_path)
    assert env["PATH"] == os.pathsep.join([str(tmp_path / "node_modules" / ".bin"), os.defpath])


def test_child_env_does_not_modify_its_inputs(tmp_path: Path) -> None:
    base = {"PATH": "/bin"}
    settings = validate({"env": {"A": 1}}, "t")
    child_env(settings, base, tmp_path)
    assert base == {"PATH": "/bin"} and settings.env == {"A": 1}


@pytest.mark.parametrize(("value", "text"), [(True, "true"), (False, "false"), (0, "0"), (2.0, "2"), ("x", "x")])
def test_env_values_are_stringified_as_javascript_does(value: Any, text: str) -> None:
    assert env_value(value) == text
