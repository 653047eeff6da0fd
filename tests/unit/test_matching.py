"""The matching rules, table by table: pure logic on a small project tree, no processes.

Each table row is (configuration, path inside the project, expected answer). The project
lives under pytest's tmp_path, which is itself under /tmp: that is on purpose, see the
`tmp/*` rows (docs/behaviour.md "Deliberate differences").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import pytest

from reloadd.errors import ConfigError
from reloadd.setup.config import validate
from reloadd.setup.globs import expand_braces, literal_needle, split_glob
from reloadd.setup.globset import GlobSet
from reloadd.setup.matching import Rules, is_temp_file
from reloadd.setup.settings import Settings

JS_DEFAULT = ["js", "mjs", "cjs", "json"]  # nodemon's list for a .js script (or none)
ALL = ["*"]

# Files and directories of the project every table row looks at.
TREE = [
    "server.js",
    "version.js",
    "package.json",
    "README",
    "Makefile",
    "notes.txt",
    "src/app.js",
    "src/app.mjs",
    "src/style.css",
    "src/util/helpers.js",
    "src/util/deep/er/most.cjs",
    "src/.cache/hit.js",
    "src/routes/users.js",
    "lib/index.js",
    "lib/vendor/jquery.min.js",
    "config/app.json",
    "config/app.yaml",
    ".config/settings.json",
    ".env",
    ".env.local",
    "pages/[id].js",
    "node_modules/pkg/index.js",
    "bower_components/x/x.js",
    "coverage/lcov.js",
    "tmp/scratch.js",
    "scratch/notes.js",
    "build/out.js",
    "test/a.test.js",
    "test/a.js",
    "bin/cli",
]
EMPTY_DIRS = ["dist", "logs", ".git/objects", ".vscode"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name in TREE:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    for name in EMPTY_DIRS:
        (root / name).mkdir(parents=True)
    return root


def make_rules(project: Path, config: dict[str, Any]) -> Rules:
    """Rules from a table row: nodemon keys plus `script` and `ext` (a list, as the caller passes it)."""
    raw = dict(config)
    script: Optional[str] = raw.pop("script", "server.js")
    script = script.replace("{project}", str(project)) if script else None
    extensions: list[str] = raw.pop("ext", JS_DEFAULT)
    for key in ("watch", "ignore", "ignoreRoot"):
        if isinstance(raw.get(key), list):
            raw[key] = [item.replace("{project}", str(project)) for item in raw[key]]
    return Rules(validate(raw, "test"), cwd=project, script=script, extensions=extensions)


def case(name: str, config: dict[str, Any], path: str, expected: bool) -> Any:
    return pytest.param(config, path, expected, id=name)


# ---------------------------------------------------------------- matches(file)

DEFAULTS = [
    case("script", {}, "server.js", True),
    case("js at top", {}, "version.js", True),
    case("json at top", {}, "package.json", True),
    case("js deep", {}, "src/util/helpers.js", True),
    case("mjs", {}, "src/app.mjs", True),
    case("cjs deep", {}, "src/util/deep/er/most.cjs", True),
    case("css not in ext", {}, "src/style.css", False),
    case("yaml not in ext", {}, "config/app.yaml", False),
    case("no extension", {}, "README", False),
    case("txt not in ext", {}, "notes.txt", False),
    case("new file not on disk yet", {}, "src/new/later.js", True),
]

IGNORE_ROOT = [
    case("node_modules", {}, "node_modules/pkg/index.js", False),
    case("nested node_modules", {}, "src/node_modules/pkg/index.js", False),
    case("bower_components", {}, "bower_components/x/x.js", False),
    case("coverage", {}, "coverage/lcov.js", False),
    # dot-dirs are out anyway unless named, so these rows name them: ignoreRoot must still win
    case(".git", {"watch": [".git"]}, ".git/hooks/pre-commit.js", False),
    case(".git with ignoreRoot []", {"watch": [".git"], "ignoreRoot": []}, ".git/hooks/pre-commit.js", True),
    case(".nyc_output", {"watch": [".nyc_output"]}, ".nyc_output/out.json", False),
    case(".sass-cache", {"watch": ["src/.sass-cache"]}, "src/.sass-cache/a.json", False),
    case("a file merely named like one", {}, "src/coverage.js", True),
    case("name as a prefix only", {}, "node_modules_backup/a.js", True),
    case("ignoreRoot [] lets node_modules in", {"ignoreRoot": []}, "node_modules/pkg/index.js", True),
    case("ignoreRoot [] lets coverage in", {"ignoreRoot": []}, "coverage/lcov.js", True),
    case("user ignoreRoot replaces the list", {"ignoreRoot": ["**/coverage/**"]}, "node_modules/pkg/index.js", True),
    case("user ignoreRoot applies", {"ignoreRoot": ["**/coverage/**"]}, "coverage/lcov.js", False),
    case("user ignore adds to ignoreRoot", {"ignore": ["dist"]}, "node_modules/pkg/index.js", False),
    case("ignoreRoot [] keeps user ignore", {"ignoreRoot": [], "ignore": ["lib"]}, "lib/index.js", False),
]

IGNORE = [
    case("plain name: file", {"ignore": ["version.js"]}, "version.js", False),
    case("plain name: at any depth", {"ignore": ["helpers.js"]}, "src/util/helpers.js", False),
    case("plain name: others still match", {"ignore": ["helpers.js"]}, "src/app.js", True),
    case("directory name: everything below", {"ignore": ["util"]}, "src/util/deep/er/most.cjs", False),
    case("directory with slash", {"ignore": ["lib/"]}, "lib/index.js", False),
    case("directory/** ", {"ignore": ["lib/**"]}, "lib/vendor/jquery.min.js", False),
    case("missing directory still ignored", {"ignore": ["dist"]}, "dist/bundle.js", False),
    case("dir-only pattern spares a file of that name", {"ignore": ["version.js/"]}, "version.js", True),
    case("extension glob", {"ignore": ["*.test.js"]}, "test/a.test.js", False),
    case("extension glob spares others", {"ignore": ["*.test.js"]}, "test/a.js", True),
    case("ignore wins over watch", {"watch": ["src"], "ignore": ["src/routes"]}, "src/routes/users.js", False),
    case("ignore wins over the script", {"ignore": ["server.js"]}, "server.js", False),
    case("ignore wins over an exact watch", {"watch": ["Makefile"], "ignore": ["Makefile"]}, "Makefile", False),
    case("relative dir/* at top", {"ignore": ["scratch/*"]}, "scratch/notes.js", False),
    case("relative dir/* at any depth", {"ignore": ["scratch/*"]}, "src/scratch/notes.js", False),
    case("dir/* covers subdirectories", {"ignore": ["scratch/*"]}, "scratch/a/b.js", False),
    case("dir/* does not touch the sibling", {"ignore": ["scratch/*"]}, "src/app.js", True),
    case("./ anchors to the project", {"ignore": ["./test"]}, "test/a.js", False),
    case("./ does not reach deeper", {"ignore": ["./test"]}, "src/test/a.js", True),
    case("** in the middle", {"ignore": ["src/**/deep"]}, "src/util/deep/er/most.cjs", False),
    case("** matches zero dirs", {"ignore": ["src/**/helpers.js"]}, "src/helpers.js", False),
    case("absolute pattern", {"ignore": ["{project}/lib"]}, "lib/index.js", False),
    case("absolute pattern is anchored", {"ignore": ["{project}/lib"]}, "src/lib/x.js", True),
    case("absolute glob", {"ignore": ["{project}/src/*.js"]}, "src/app.js", False),
    case("comment is not a rule", {"ignore": ["# server.js"]}, "server.js", True),
    case("comment next to rules", {"ignore": ["#lib", "src"]}, "lib/index.js", True),
    case("? matches one char", {"ignore": ["a?p.js"]}, "src/app.js", False),
    case("? needs exactly one", {"ignore": ["a?.js"]}, "src/app.js", True),
    case("* stays within a segment", {"ignore": ["src*js"]}, "src/app.js", True),
]

TMP_DIFFERENCE = [
    # nodemon matches `**/tmp/*` against the absolute path, so a project under /tmp is ignored whole.
    case("tmp/* spares a project under /tmp", {"ignore": ["tmp/*"]}, "server.js", True),
    case("tmp/* spares deep files", {"ignore": ["tmp/*"]}, "src/util/helpers.js", True),
    case("tmp/* ignores the project's own tmp", {"ignore": ["tmp/*"]}, "tmp/scratch.js", False),
    case("tmp/** likewise", {"ignore": ["tmp/**"]}, "src/app.js", True),
    case("**/tmp/** likewise", {"ignore": ["**/tmp/**"]}, "version.js", True),
    case("pytest-of-* likewise", {"ignore": ["pytest-of-*"]}, "version.js", True),
    case("the project's own name is not inside it", {"ignore": ["project"]}, "server.js", True),
]

BRACES_AND_CLASSES = [
    case("braces: first", {"ignore": ["{lib,build}"]}, "lib/index.js", False),
    case("braces: second", {"ignore": ["{lib,build}"]}, "build/out.js", False),
    case("braces: neither", {"ignore": ["{lib,build}"]}, "src/app.js", True),
    case("braces in a segment", {"ignore": ["*.{mjs,cjs}"]}, "src/app.mjs", False),
    case("braces in a segment spare others", {"ignore": ["*.{mjs,cjs}"]}, "src/app.js", True),
    case("nested braces", {"ignore": ["src/{util/{deep,x},routes}"]}, "src/util/deep/er/most.cjs", False),
    case("numeric range", {"ignore": ["v{1..3}.js"]}, "v2.js", False),
    case("numeric range bounds", {"ignore": ["v{1..3}.js"]}, "v4.js", True),
    case("single alternative is literal", {"ignore": ["{lib}"]}, "lib/index.js", True),
    case("char class", {"ignore": ["[lb]ib"]}, "lib/index.js", False),
    case("char class range", {"ignore": ["[a-m]ib"]}, "lib/index.js", False),
    case("char class miss", {"ignore": ["[m-z]ib"]}, "lib/index.js", True),
    case("negated class with !", {"ignore": ["[!l]ib"]}, "lib/index.js", True),
    case("negated class with ^", {"ignore": ["[^x]ib"]}, "lib/index.js", False),
    case("posix class", {"ignore": ["v[[:digit:]].js"]}, "v7.js", False),
    case("unclosed [ is literal", {"ignore": ["a[b"], "ext": ALL}, "a[b", False),
    case("unclosed [ is literal: others", {"ignore": ["a[b"], "ext": ALL}, "ab", True),
    case("escaped star is literal", {"ignore": ["\\*.js"]}, "src/app.js", True),
]

DOTFILES = [
    case("dotfile not watched by default", {"ext": ALL}, ".env.local", False),
    case("dotfile named by a glob (ext still applies)", {"watch": [".env*"], "ext": ["local"]}, ".env.local", True),
    case("dot-dir not watched by default", {}, "src/.cache/hit.js", False),
    case("dot-dir at top not watched", {}, ".config/settings.json", False),
    case("dotfile named exactly", {"watch": [".env"]}, ".env", True),
    case("dot-dir named as a watch dir", {"watch": [".config"]}, ".config/settings.json", True),
    case("dot glob names dotfiles", {"watch": ["**/.cache/*.js"]}, "src/.cache/hit.js", True),
    case("naming one dot-dir does not open others", {"watch": [".config", "src"]}, "src/.cache/hit.js", False),
    case("ignore patterns see dotfiles", {"watch": [".config"], "ignore": ["*.json"]}, ".config/settings.json", False),
]

WATCH = [
    case("watch dir: inside", {"watch": ["src"]}, "src/util/helpers.js", True),
    case("watch dir: outside", {"watch": ["src"]}, "lib/index.js", False),
    case("watch dir: ext still applies", {"watch": ["src"]}, "src/style.css", False),
    case("watch dir with slash", {"watch": ["lib/"]}, "lib/vendor/jquery.min.js", True),
    case("watch dir anchored to the project", {"watch": ["util"]}, "src/util/helpers.js", False),
    case("watch missing dir", {"watch": ["later"]}, "later/late.js", True),
    case("watch absolute dir", {"watch": ["{project}/lib"]}, "lib/index.js", True),
    case("watch glob", {"watch": ["src/*.js"]}, "src/app.js", True),
    case("watch glob filters", {"watch": ["src/*.js"]}, "src/app.mjs", False),
    case("watch ** glob", {"watch": ["src/**/*.cjs"]}, "src/util/deep/er/most.cjs", True),
    case("watch glob is relative at any depth", {"watch": ["*.js"]}, "src/util/helpers.js", True),
    case("watch glob: ext still applies", {"watch": ["config/*"]}, "config/app.yaml", False),
    case("watch glob with braces", {"watch": ["{lib,config}"]}, "config/app.json", True),
    case("watch glob with braces: others", {"watch": ["{lib,config}"]}, "src/app.js", False),
    case("watch dir/*.* bypasses ext (nodemon)", {"watch": ["config/*.*"]}, "config/app.yaml", True),
    case("default *.* does not bypass ext", {"watch": ["*.*"]}, "config/app.yaml", False),
    case("'.' is the whole project", {"watch": ["."]}, "src/util/helpers.js", True),
    case("empty watch list = default", {"watch": []}, "src/app.js", True),
    case("only comments = default", {"watch": ["# nothing"]}, "src/app.js", True),
    case("watch false: files do not match", {"watch": False}, "src/app.js", False),
    case("watch false: the script still does", {"watch": False}, "server.js", True),
]

EXACT_AND_EXT = [
    case("exact file bypasses ext", {"watch": ["Makefile"]}, "Makefile", True),
    case("exact file yaml", {"watch": ["config/app.yaml"]}, "config/app.yaml", True),
    case("exact file is only that file", {"watch": ["config/app.yaml"]}, "config/app.json", False),
    case("exact file at another depth does not match", {"watch": ["app.js"]}, "src/app.js", False),
    case("exact file with glob characters in its name", {"watch": ["pages/[id].js"]}, "pages/[id].js", True),
    case("exact missing file", {"watch": ["nodemon.json"]}, "nodemon.json", True),
    case("ext *: no extension", {"ext": ALL}, "README", True),
    case("ext *: css", {"ext": ALL}, "src/style.css", True),
    case("ext *: ignore still wins", {"ext": ALL}, "node_modules/pkg/index.js", False),
    case("ext *: dotfiles still out", {"ext": ALL}, ".env", False),
    case("no extensions at all = everything", {"ext": []}, "notes.txt", True),
    case("ext list", {"ext": ["css", "yaml"]}, "src/style.css", True),
    case("ext list excludes js", {"ext": ["css", "yaml"]}, "src/app.js", False),
    case("ext list with dots", {"ext": [".css"]}, "src/style.css", True),
    case("compound extension", {"ext": ["min.js"]}, "lib/vendor/jquery.min.js", True),
    case("compound extension excludes plain", {"ext": ["min.js"]}, "lib/index.js", False),
    case("ts default", {"ext": ["ts", "json"], "script": "src/app.ts"}, "src/types.d.ts", True),
    case("ts default excludes js", {"ext": ["ts", "json"], "script": "src/app.ts"}, "src/app.js", False),
    case("coffee default", {"ext": ["coffee", "litcoffee", "json"], "script": "app.coffee"}, "a.litcoffee", True),
    case("extension is case-sensitive", {}, "src/APP.JS", False),
]

SCRIPT = [
    case("script outside ext", {"script": "bin/cli"}, "bin/cli", True),
    case("script outside the watch list", {"watch": ["lib"], "script": "server.js"}, "server.js", True),
    case("script as ./path", {"script": "./server.js"}, "server.js", True),
    case("script absolute", {"script": "{project}/bin/cli"}, "bin/cli", True),
    case("script in a dot-dir", {"script": ".config/run.js"}, ".config/run.js", True),
    case("no script", {"script": None}, "bin/cli", False),
    case("a file with the script's name elsewhere", {"watch": ["lib"]}, "src/server.js", False),
]

TEMP_VIA_RULES = [
    case("swap file with ext *", {"ext": ALL}, "src/app.js.swp", False),
    case("hidden swap file in a named dot-dir", {"watch": [".config"], "ext": ALL}, ".config/.a.json.swo", False),
    case("backup file with ext *", {"ext": ALL}, "src/app.js~", False),
    case("vim probe with ext *", {"ext": ALL}, "4913", False),
    case("syncthing temp with ext *", {"ext": ALL}, "~syncthing~app.js.tmp", False),
    case("temp files lose even to exact watch", {"watch": ["4913"]}, "4913", False),
    case("a plain .tmp file is not a temp file", {"ext": ["tmp"]}, "cache.tmp", True),
]


@pytest.mark.parametrize(
    ("config", "path", "expected"),
    DEFAULTS
    + IGNORE_ROOT
    + IGNORE
    + TMP_DIFFERENCE
    + BRACES_AND_CLASSES
    + DOTFILES
    + WATCH
    + EXACT_AND_EXT
    + SCRIPT
    + TEMP_VIA_RULES,
)
def test_matches(project: Path, config: dict[str, Any], path: str, expected: bool) -> None:
    rules = make_rules(project, config)
    assert rules.matches(str(project / path)) is expected


def test_absolute_script_matches(project: Path) -> None:
    rules = Rules(Settings(), cwd=project, script=str(project / "bin" / "cli"), extensions=JS_DEFAULT)
    assert rules.matches(str(project / "bin" / "cli"))


def test_a_project_literally_at_tmp_x() -> None:
    """The brief's example verbatim: nothing on disk is needed for ignore rules."""
    rules = Rules(Settings(ignore=["tmp/*"]), cwd=Path("/tmp/x"), script="server.js", extensions=JS_DEFAULT)
    assert rules.matches("/tmp/x/server.js")
    assert rules.matches("/tmp/x/src/app.js")
    assert not rules.matches("/tmp/x/tmp/cache.js")
    assert not rules.prune("/tmp/x/src")


def test_paths_outside_the_project_match_relative_to_their_root(tmp_path: Path) -> None:
    project, shared = tmp_path / "app", tmp_path / "shared"
    (project / "src").mkdir(parents=True)
    (shared / "lib").mkdir(parents=True)
    settings = Settings(watch=["src", "../shared"], ignore=["lib/*"])
    rules = Rules(settings, cwd=project, script=None, extensions=JS_DEFAULT)
    assert rules.roots == [project / "src", shared]
    assert rules.matches(str(shared / "util.js"))
    assert not rules.matches(str(shared / "lib" / "util.js"))  # `lib/*` relative to the shared root
    assert not rules.matches(str(shared / "node_modules" / "x.js"))
    assert rules.prune(str(shared / "node_modules"))


def test_matching_is_fast_enough_for_the_hot_path(project: Path) -> None:
    """Compiled once: a few microseconds per call, so 20,000 calls stay far below a second."""
    import time

    rules = make_rules(project, {"ignore": ["dist", "*.test.js", "{a,b,c}/**"], "watch": ["src", "lib", "*.json"]})
    paths = [str(project / "src" / "util" / "deep" / f"file{i}.js") for i in range(100)]
    start = time.perf_counter()
    for _ in range(100):
        for path in paths:
            rules.matches(path)
            rules.prune(path)
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------- prune(directory)

PRUNE = [
    case("node_modules", {}, "node_modules", True),
    case("nested node_modules", {}, "src/node_modules", True),
    case("inside node_modules", {}, "node_modules/pkg", True),
    case(".git", {}, ".git", True),
    case("coverage", {}, "coverage", True),
    case("bower_components", {}, "bower_components", True),
    case("ordinary dir", {}, "src", False),
    case("deep ordinary dir", {}, "src/util/deep/er", False),
    case("dot-dir", {}, ".vscode", True),
    case("nested dot-dir", {}, "src/.cache", True),
    case("ignore dist", {"ignore": ["dist"]}, "dist", True),
    case("ignore dist/", {"ignore": ["dist/"]}, "dist", True),
    case("ignore dist/**", {"ignore": ["dist/**"]}, "dist", True),
    case("ignore **/dist/**", {"ignore": ["**/dist/**"]}, "src/dist", True),
    case("ignore dist leaves dists", {"ignore": ["dist"]}, "distant", False),
    case("ignore ./logs", {"ignore": ["./logs"]}, "logs", True),
    case("ignore *.js spares plain dirs", {"ignore": ["*.js"]}, "src", False),
    case("ignore tmp/* keeps tmp itself", {"ignore": ["tmp/*"]}, "tmp", False),
    case("ignore tmp/* prunes below it", {"ignore": ["tmp/*"]}, "tmp/sub", True),
    case("ignoreRoot []: node_modules walked", {"ignoreRoot": []}, "node_modules", False),
    case("dot-dir named by a watch entry", {"watch": [".config"]}, ".config", False),
    case("dot glob opens that dot-dir", {"watch": ["**/.cache/*.js"]}, "src/.cache", False),
    case("dot glob keeps other dot-dirs out", {"watch": ["**/.cache/*.js"]}, ".vscode", True),
    case("watch dir: on the way", {"watch": ["src/util/deep"]}, "src", False),
    case("watch dir: on the way, deeper", {"watch": ["src/util/deep"]}, "src/util", False),
    case("watch dir: below it", {"watch": ["src/util/deep"]}, "src/util/deep/er", False),
    case("watch dir: a sibling is irrelevant", {"watch": ["src/util/deep", "server.js"]}, "src/routes", True),
    case("watch dir: an unrelated dir", {"watch": ["lib", "server.js"]}, "config", True),
    case("exact file: its directory", {"watch": ["config/app.yaml", "server.js"]}, "config", False),
    case("exact file: other dirs", {"watch": ["config/app.yaml", "server.js"]}, "src", True),
    case("script's dir stays", {"watch": ["lib"], "script": "src/app.js"}, "src", False),
    case("glob prefix on the way", {"watch": ["{project}/src/util/*.js", "lib"]}, "src/util", False),
    case("relative glob: any dir", {"watch": ["lib/*.js", "server.js"]}, "src/util", False),
    case("a watch root itself is never pruned", {"watch": ["node_modules/pkg"]}, "node_modules/pkg", False),
    case("a dot root itself is never pruned", {"watch": [".vscode/"]}, ".vscode", False),
    case("missing watch dir: on the way", {"watch": ["later/sub", "server.js"]}, "later", False),
]


@pytest.mark.parametrize(("config", "path", "expected"), PRUNE)
def test_prune(project: Path, config: dict[str, Any], path: str, expected: bool) -> None:
    rules = make_rules(project, config)
    assert rules.prune(str(project / path)) is expected


# ---------------------------------------------------------------- roots

ROOTS = [
    pytest.param({}, ["."], id="default: the project"),
    pytest.param({"watch": ["*.*"]}, ["."], id="*.*"),
    pytest.param({"watch": ["src", "lib"]}, ["src", "lib"], id="two dirs"),
    pytest.param({"watch": ["src", "src/util"]}, ["src"], id="nested dir dropped"),
    pytest.param({"watch": ["src/util", "src"]}, ["src"], id="nested dir dropped, either order"),
    pytest.param({"watch": ["src", "src"]}, ["src"], id="duplicates dropped"),
    pytest.param({"watch": ["src", "*.*"]}, ["."], id="everything inside the project"),
    pytest.param({"watch": ["config/app.yaml"]}, ["config"], id="exact file: its directory"),
    pytest.param({"watch": ["Makefile", "lib"]}, ["."], id="file at top covers lib"),
    pytest.param({"watch": ["src/**/*.js"]}, ["src"], id="glob: literal prefix"),
    pytest.param({"watch": ["src/util/*.js"]}, ["src/util"], id="glob: deeper prefix"),
    pytest.param({"watch": ["*.js"]}, ["."], id="glob without prefix"),
    pytest.param({"watch": ["{src,lib}/*.js"]}, ["src", "lib"], id="braces give one root each"),
    pytest.param({"watch": ["later"]}, ["later"], id="missing dir: itself"),
    pytest.param({"watch": ["later/"]}, ["later"], id="missing dir with slash: itself"),
    pytest.param({"watch": ["later/app.js"]}, ["later"], id="missing file: its directory"),
    pytest.param({"watch": ["./lib/../src"]}, ["src"], id="normalised"),
    pytest.param({"watch": ["../shared"]}, ["../shared"], id="outside the project"),
    pytest.param({"watch": ["# src", "lib"]}, ["lib"], id="comments skipped"),
    pytest.param({"watch": False}, [], id="watch false: nothing"),
]


@pytest.mark.parametrize(("config", "expected"), ROOTS)
def test_roots(project: Path, config: dict[str, Any], expected: list[str]) -> None:
    rules = make_rules(project, config)
    assert rules.roots == [Path(os.path.normpath(project / name)) for name in expected]
    assert all(root.is_absolute() for root in rules.roots)


def test_absolute_glob_root(project: Path) -> None:
    rules = make_rules(project, {"watch": ["{project}/src/util/**/*.cjs"]})
    assert rules.roots == [project / "src" / "util"]
    assert rules.matches(str(project / "src" / "util" / "deep" / "er" / "most.cjs"))
    assert not rules.matches(str(project / "src" / "app.js"))


# ---------------------------------------------------------------- what the log shows

DESCRIBE = [
    pytest.param({}, JS_DEFAULT, ["*.*"], "js,mjs,cjs,json", id="defaults"),
    pytest.param({"watch": ["src", "lib/*.js"]}, ["js"], ["src", "lib/*.js"], "js", id="as given"),
    pytest.param({"watch": ["src", "# note"]}, ["js"], ["src"], "js", id="comments hidden"),
    pytest.param({}, ALL, ["*.*"], "*.*", id="ext *"),
    pytest.param({}, ["ts", "json"], ["*.*"], "ts,json", id="ts"),
    pytest.param({}, [".ts", " json", ""], ["*.*"], "ts,json", id="cleaned"),
    pytest.param({"watch": False}, JS_DEFAULT, [], "js,mjs,cjs,json", id="watch false"),
]


@pytest.mark.parametrize(("config", "extensions", "watch", "ext"), DESCRIBE)
def test_describe(project: Path, config: dict[str, Any], extensions: list[str], watch: list[str], ext: str) -> None:
    rules = make_rules(project, {**config, "ext": extensions})
    assert rules.describe_watch() == watch
    assert rules.describe_ext() == ext


# ---------------------------------------------------------------- temporary files

TEMP_NAMES = [
    (".syncthing.app.js.tmp", True),
    ("~syncthing~app.js.tmp", True),
    (".reloadd-sync.1234.7.tmp", True),
    (".app.js.swp", True),
    (".app.js.swx", True),
    (".app.js.swo", True),
    ("app.js.swp", True),
    ("app.js~", True),
    ("~", True),
    (".#app.js", True),
    ("#app.js#", True),
    ("4913", True),
    ("app.js___jb_tmp___", True),
    ("app.js___jb_old___", True),
    ("app.js", False),
    ("49131", False),
    ("syncthing.tmp", False),
    ("cache.tmp", False),
    (".app.swift", False),
    ("app.swift", False),
    ("~app.js", False),
    ("#app.js", False),
    (".env", False),
]


@pytest.mark.parametrize(("name", "expected"), TEMP_NAMES, ids=[name for name, _ in TEMP_NAMES])
def test_is_temp_file(name: str, expected: bool) -> None:
    assert is_temp_file(name) is expected


# ---------------------------------------------------------------- GlobSet (hot.paths)

GLOBSET = [
    pytest.param(["routes/**"], "routes/users.js", True, id="dir/**"),
    pytest.param(["routes/**"], "src/routes/users.js", True, id="relative at any depth"),
    pytest.param(["routes/**"], "server.js", False, id="other file"),
    pytest.param(["routes"], "routes/admin/users.js", True, id="dir name: everything below"),
    pytest.param(["./routes"], "src/routes/users.js", False, id="./ anchored"),
    pytest.param(["*.hbs"], "views/index.hbs", True, id="extension at any depth"),
    pytest.param(["views/*.{hbs,ejs}"], "views/a.ejs", True, id="braces"),
    pytest.param([".well-known"], ".well-known/x.json", True, id="dotfiles included"),
    pytest.param([], "routes/users.js", False, id="empty set"),
    pytest.param(["# routes"], "routes/users.js", False, id="comment"),
    pytest.param(["tmp/*"], "server.js", False, id="base under /tmp is not matched"),
    pytest.param(["templates/"], "templates", False, id="trailing slash: directories only"),
    pytest.param(["templates/"], "templates/a.hbs", True, id="trailing slash: files below"),
]


@pytest.mark.parametrize(("patterns", "path", "expected"), GLOBSET)
def test_globset(tmp_path: Path, patterns: list[str], path: str, expected: bool) -> None:
    assert GlobSet(patterns, tmp_path).matches(str(tmp_path / path)) is expected


NEEDLES = [
    pytest.param("**/node_modules/**", "node_modules", id="a name at any depth"),
    pytest.param("*.test.js", ".test.js", id="an extension"),
    pytest.param("src/*.tmp", ".tmp", id="the longest run, across segments"),
    pytest.param("a\\*bc", "bc", id="an escaped star ends a run"),
    pytest.param("log[0-9]/x", "log", id="nothing inside or after a class"),
    pytest.param("*.*", "", id="*.* matches names without a dot too"),
    pytest.param("*", "", id="nothing plain"),
]


@pytest.mark.parametrize(("glob", "expected"), NEEDLES)
def test_literal_needle(glob: str, expected: str) -> None:
    assert literal_needle(split_glob(glob)[1]) == expected


NEEDLE_GLOBS = [["**/node_modules/**", ".git/"], ["*.test.js"], ["src/*.tmp", "./build"], ["a\\*bc"], ["log[0-9]/x"],
                ["*.*"], ["*", "x"], ["?", "tmp/"], ["{a,b}c/d"], ["coverage", "**"]]  # fmt: skip
NEEDLE_PATHS = ["node_modules", "x/node_modules/y.js", "node_modulesx/a", ".git", "a/.git/b", "b.test.js", "src/a.tmp",
                "x/src/a.tmp", "src/a/b.tmp", "build/x", "a*bc", "abc", "log1/x", "logs/x", "Makefile", "a", "tmp/x",
                "ac/d", "bc/d/e", "coverage/x", "plain.js"]  # fmt: skip


@pytest.mark.parametrize("patterns", NEEDLE_GLOBS, ids=[",".join(p) for p in NEEDLE_GLOBS])
def test_the_plain_text_test_never_changes_an_answer(tmp_path: Path, patterns: list[str]) -> None:
    """A path without any pattern's plain text skips the regex: the answers must be the regex's own."""
    fast = GlobSet(patterns, tmp_path)
    slow = GlobSet(patterns, tmp_path)
    for group in (slow._files, slow._dirs):
        group._needles = None  # every path goes to the regex
        group.compile()
    files, dirs = fast.matchers()
    for path in NEEDLE_PATHS:
        for directory in (False, True):
            located = (path, str(tmp_path / path), directory)
            assert fast.match_located(*located) is slow.match_located(*located), (path, directory)
            assert (dirs if directory else files)(path) is slow.match_located(*located), (path, directory)


@pytest.mark.parametrize("anchored", ["{root}/build", "{root}/src/*.tmp", "./build", "/elsewhere/build"])
def test_a_walks_matchers_answer_as_the_set_does_for_anchored_patterns(tmp_path: Path, anchored: str) -> None:
    """The matchers build the absolute path themselves (only for absolute patterns): same answers."""
    globs = GlobSet([anchored.format(root=tmp_path), "node_modules/"], tmp_path)
    files, dirs = globs.matchers()
    for path in ["build", "build/x.js", "src/a.tmp", "src/b.js", "a/build", "node_modules", "x/node_modules/y", ""]:
        for directory in (False, True):
            expected = globs.match_located(path, str(tmp_path / path) if path else str(tmp_path), directory)
            assert (dirs if directory else files)(path) is expected, (path, directory)


def test_globset_matches_dirs(tmp_path: Path) -> None:
    globs = GlobSet(["dist/", "**/cache/**"], tmp_path)
    assert globs.matches_dir(str(tmp_path / "dist"))
    assert globs.matches_dir(str(tmp_path / "a" / "cache"))
    assert not globs.matches_dir(str(tmp_path / "src"))


def test_globset_absolute_patterns(tmp_path: Path) -> None:
    globs = GlobSet([str(tmp_path / "a" / "*.js")], Path("/"))
    assert globs.matches(str(tmp_path / "a" / "x.js"))
    assert not globs.matches(str(tmp_path / "b" / "x.js"))


def test_base_with_glob_characters_is_literal(tmp_path: Path) -> None:
    base = tmp_path / "odd[1]{a,b}"
    base.mkdir()
    assert GlobSet(["./src"], base).matches(str(base / "src" / "x.js"))
    assert not GlobSet(["./src"], base).matches(str(tmp_path / "odd1a" / "src" / "x.js"))
    (base / "src").mkdir()
    rules = Rules(Settings(watch=["src"]), cwd=base, script=None, extensions=JS_DEFAULT)
    assert rules.matches(str(base / "src" / "x.js"))
    assert not rules.prune(str(base / "src"))


# ---------------------------------------------------------------- brace expansion

BRACES = [
    pytest.param("a", ["a"], id="none"),
    pytest.param("{a,b}", ["a", "b"], id="two"),
    pytest.param("x{a,b}y", ["xay", "xby"], id="inside"),
    pytest.param("{a,b}{1,2}", ["a1", "a2", "b1", "b2"], id="product"),
    pytest.param("{a,{b,c}}", ["a", "b", "c"], id="nested"),
    pytest.param("{a,}", ["a", ""], id="empty alternative"),
    pytest.param("{1..3}", ["1", "2", "3"], id="range"),
    pytest.param("{3..1}", ["3", "2", "1"], id="descending"),
    pytest.param("{08..10}", ["08", "09", "10"], id="padded"),
    pytest.param("{a..c}", ["a", "b", "c"], id="letters"),
    pytest.param("{a}", ["{a}"], id="single is literal"),
    pytest.param("\\{a,b}", ["\\{a,b}"], id="escaped"),
    pytest.param("{a,b", ["{a,b"], id="unclosed"),
]


@pytest.mark.parametrize(("pattern", "expected"), BRACES)
def test_expand_braces(pattern: str, expected: list[str]) -> None:
    assert expand_braces(pattern) == expected


@pytest.mark.parametrize("pattern", ["{1..100000}", "{a,b}" * 11], ids=["range", "product"])
def test_runaway_brace_expansion_is_a_config_error(pattern: str) -> None:
    with pytest.raises(ConfigError, match="expands to more than"):
        expand_braces(pattern)


def test_skip_reason_says_why_a_change_restarts_nothing(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    rules = Rules(Settings(watch=["src"], ignore=["*.draft.js"]), cwd=tmp_path, script=None, extensions=JS_DEFAULT)
    assert rules.skip_reason(str(tmp_path / "src" / "a.js")) is None
    assert rules.skip_reason(str(tmp_path / "src" / "a.draft.js")) == "ignored"
    assert rules.skip_reason(str(tmp_path / "src" / "a.txt")) == "extension not in js,mjs,cjs,json"
    assert rules.skip_reason(str(tmp_path / "other.js")) == "outside the watched paths"
    assert rules.skip_reason(str(tmp_path / "src" / "a.js.swp")) == "an editor or sync temp file"
    assert rules.describe_ignore()[-1] == "*.draft.js"
