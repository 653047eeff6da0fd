"""The quick walk over a config and pydantic agree: the walk takes a config only when pydantic would
take it unchanged, and gives the same settings, value for value and type for type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reloadd.setup import shapes
from reloadd.setup.config import CHECKS
from reloadd.setup.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

# Configs as users write them: the walk must take each one (no pydantic at start) and agree.
PLAIN: list[dict[str, Any]] = [
    {},
    json.loads((ROOT / "nodemon.json.example").read_text()),
    {"watch": "src", "ext": "js,ts", "delay": 250, "ignore": ["*.test.js"], "execMap": {"ts": "ts-node"}},
    {"env": {"PORT": 8000, "DEBUG": True, "NAME": "web", "RATIO": 1.5}, "events": {"restart": "echo hi"}},
    {"legacyWatch": True, "pollingInterval": 500, "restartable": False, "signal": "SIGTERM", "stopTimeout": 2},
    {"watch": False, "ext": ["js", "ts"], "pollingInterval": 100.0, "delay": 1e3},
    {"inspect": True}, {"inspect": 9230}, {"inspect": "brk:0.0.0.0:9229"}, {"inspect": False},
    {"exec": ["node", "--inspect"], "args": "--flag", "nodeArgs": ["--trace-warnings"], "execArgs": []},
    {"ignore_root": ["tmp/**"], "unknownKey": 1, "logFormat": "json", "warm": False, "restartOnCrash": True},
    {"hot": {"paths": "routes/**"}}, {"hot": {"paths": ["a/**", "b/**"], "signal": "SIGUSR1"}},
    {"sync": {"to": "deploy/api:/app", "exclude": "*.log", "include": "node_modules", "delete": True}},
    {"sync": {"onChange": [{"paths": "package.json", "run": "npm ci", "timeout": 60}], "ports": [3000, "9229"]}},
    {"sync": {"onChange": [], "logs": True, "namespace": "dev", "selector": "app=api", "container": "app"}},
    {"watchOptions": {"usePolling": True, "interval": 300, "nested": {"a": [1, None]}}, "cwd": "src"},
]  # fmt: skip

# Values pydantic coerces: the walk leaves them to it.
COERCED: list[dict[str, Any]] = [
    {"delay": "100"}, {"pollingInterval": "200"}, {"stopTimeout": "3"}, {"verbose": "true"}, {"quiet": 1},
]  # fmt: skip

# Values nobody may give: both refuse (the walk by handing over, pydantic by the error).
WRONG: list[dict[str, Any]] = [
    {"delay": True}, {"delay": -1}, {"delay": 1e308}, {"watch": True}, {"signal": "SIGNOPE"},
    {"logFormat": "xml"}, {"env": {"A": None}}, {"env": {"A": [1]}}, {"ext": 3}, {"ignore": [1]},
    {"inspect": "nope"}, {"pollingInterval": 0}, {"pollingInterval": 1.5}, {"eventTimeout": 0},
    {"hot": {"paths": [], "bogus": 1}}, {"hot": "routes"}, {"sync": {"to": ""}}, {"sync": {"on_change": []}},
    {"sync": {"onChange": [{"paths": []}]}}, {"sync": {"onChange": [{"paths": ["a"], "run": "  "}]}},
    {"sync": {"onChange": [{"paths": ["a"], "run": "x", "timeout": 0}]}}, {"sync": {"ports": [True]}},
    {"sync": {"ports": ["nope"]}}, {"sync": {"delete": "yes please"}}, {"sync": []},
]  # fmt: skip


def shown(settings: Settings) -> str:
    """Every value with its type: 1 and 1.0 (and True) compare equal, but are not the same setting."""
    return repr(shapes.dump(settings))


@pytest.mark.parametrize("raw", PLAIN, ids=range(len(PLAIN)))
def test_the_walk_takes_plain_configs_and_agrees_with_pydantic(raw: dict[str, Any]) -> None:
    assert shown(shapes.walk(Settings, raw, CHECKS)) == shown(shapes.through_pydantic(Settings, raw, CHECKS))


@pytest.mark.parametrize("raw", COERCED, ids=range(len(COERCED)))
def test_what_only_pydantic_coerces_is_left_to_it(raw: dict[str, Any]) -> None:
    with pytest.raises((shapes.Unsure, ValueError)):
        shapes.walk(Settings, raw, CHECKS)
    assert shown(shapes.load(Settings, raw, CHECKS)) == shown(shapes.through_pydantic(Settings, raw, CHECKS))


@pytest.mark.parametrize("raw", WRONG, ids=range(len(WRONG)))
def test_wrong_values_are_refused_both_ways(raw: dict[str, Any]) -> None:
    with pytest.raises((shapes.Unsure, ValueError)):
        shapes.walk(Settings, raw, CHECKS)
    with pytest.raises(shapes.Invalid):
        shapes.through_pydantic(Settings, raw, CHECKS)


def test_defaults_are_fresh_for_every_settings() -> None:
    one, other = shapes.walk(Settings, {}, CHECKS), shapes.through_pydantic(Settings, {}, CHECKS)
    one.ignore_root.append("x")
    assert "x" not in other.ignore_root and "x" not in Settings().ignore_root


def test_dump_by_alias_uses_nodemons_names() -> None:
    dumped = shapes.dump(Settings(), by_alias=True)
    assert {"ignoreRoot", "execMap", "stopTimeout"} <= set(dumped) and "ignore_root" not in dumped
    assert "onChange" in dumped["sync"]
