"""Config sources merged: the defaults, the config files (config_files.py), the environment
(environment.py) and the flags (cli.py), into one validated Settings and the working directory.

Precedence (nodemon's, plus the environment): command line > environment variables > local
config > global ``$HOME/nodemon.json`` > defaults. Objects in ``DEEP_MERGED_KEYS`` merge key by
key; everything else replaces.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError
from .cli import CliArgs
from .config import DEEP_MERGED_KEYS, validate
from .config_files import Layer, candidates, file_layers
from .environment import env_options, production_rule
from .paths import current_dir
from .settings import DEFAULT_EXEC_MAP, Settings


@dataclass
class Loaded:
    """The effective configuration and where it came from."""

    settings: Settings  # effective merged config, validated
    cwd: Path  # absolute working dir (from --cwd / config cwd / os.getcwd())
    files: list[Path] = field(default_factory=list)  # config files in use, global + local: editing one reloads
    warnings: list[str] = field(default_factory=list)  # one line each
    notices: list[str] = field(default_factory=list)  # informational lines
    candidates: list[Path] = field(default_factory=list)  # local config files not in use that would be read


def load_settings(cli: CliArgs, env: Mapping[str, str]) -> Loaded:
    """Read every config source and merge them.

    Args:
        cli: the parsed command line.
        env: the environment (reloadd's own), for HOME and the RELOADD_* variables.

    Returns:
        The validated settings, the working directory and the files in use. Changes no directory.
    """
    base = _base_dir(cli)
    warnings: list[str] = []
    files = file_layers(base, cli.config_file, env, warnings)
    layers = [Layer("defaults", {"execMap": dict(DEFAULT_EXEC_MAP)}), *files]
    layers += [Layer("environment", env_options(env)), Layer("command line", dict(cli.options))]
    for layer in layers:
        validate(layer.values, layer.name)
    merged = merge([layer.values for layer in layers])
    warnings += _ignored_options(cli, files, merged)
    warnings += _drop_regex_rules(merged)
    notices = production_rule(merged, env)
    cwd = _working_dir(base, cli, layers)
    merged["cwd"] = str(cwd)
    settings = validate(merged, "configuration")
    in_use = [layer.path for layer in files if layer.path]
    return Loaded(settings, cwd, in_use, warnings, notices, candidates(base, cli.config_file, in_use))


def project_settings(directory: Path, config_file: Optional[str], env: Mapping[str, str]) -> Loaded:
    """The settings a plain ``reloadd`` started in ``directory`` (with ``--config``, if given) would
    read: what ``reloadd sync`` honours on the laptop, where no command line of the supervisor's exists."""
    return load_settings(CliArgs(cwd=str(directory), config_file=config_file), env)


# -- working directory --------------------------------------------------------------------------------
def _base_dir(cli: CliArgs) -> Path:
    """Where config files are looked up: --cwd, else the current directory."""
    here = current_dir()
    if cli.cwd is None:
        return here
    path = (here / cli.cwd).resolve()
    problem = _directory_problem(path)
    if problem:
        raise ConfigError(f"--cwd: directory {cli.cwd!r} {problem}")
    return path


def _working_dir(base: Path, cli: CliArgs, layers: list[Layer]) -> Path:
    """--cwd wins; else the last config file that sets ``cwd`` (relative to the base directory)."""
    if cli.cwd is not None:
        return base
    setting = next((layer for layer in reversed(layers) if layer.values.get("cwd")), None)
    if setting is None:
        return base
    value = str(setting.values["cwd"])
    path = (base / value).resolve()
    problem = _directory_problem(path)
    if problem:
        raise ConfigError(f"{setting.name}: key 'cwd': directory {value!r} {problem}")
    return path


def _directory_problem(path: Path) -> Optional[str]:
    """Why reloadd cannot work in ``path`` (read its config files, list it, run the app there), or None."""
    try:
        if not path.is_dir():
            return "does not exist"
    except OSError as exc:
        return f"cannot be looked at: {exc.strerror or exc}"
    if not os.access(path, os.R_OK | os.X_OK):
        return "cannot be read (permission denied)"
    return None


# Config keys that shape the command, which the exact form (`reloadd -- CMD`) does not use.
COMMAND_KEYS = ("exec", "script", "args", "execArgs", "nodeArgs")


def _ignored_options(cli: CliArgs, files: list[Layer], merged: dict[str, Any]) -> list[str]:
    """Say so when a setting has no effect, rather than leave the user wondering."""
    warnings = []
    if cli.exact is not None:
        for layer in files:
            unused = [key for key in COMMAND_KEYS if key in layer.values]
            if unused:
                keys = ", ".join(unused)
                warnings.append(f"{layer.name}: {keys} ignored: the command after `--` runs exactly as given")
    if merged.get("exitcrash") and merged.get("restartOnCrash"):
        warnings.append("exitcrash and restartOnCrash are both set: reloadd exits when the app crashes")
    return warnings


# Old nodemon configs wrote regular expressions as rules starting with ":" (`:(\d)*\.js`). nodemon 2 and
# later drop such a rule with an error; kept as a glob it would match nothing, silently.
REGEX_RULE_MARK = ":"
RULE_KEYS = ("watch", "ignore", "ignoreRoot")


def _drop_regex_rules(merged: dict[str, Any]) -> list[str]:
    """Remove old-style regular-expression rules from ``merged``; one warning each."""
    warnings = []
    for key in RULE_KEYS:
        value = merged.get(key)
        rules = [value] if isinstance(value, str) else value if isinstance(value, list) else None
        if rules is None:
            continue
        regexes = [rule for rule in rules if isinstance(rule, str) and rule.strip().startswith(REGEX_RULE_MARK)]
        if regexes:
            merged[key] = [rule for rule in rules if rule not in regexes]
        if regexes and key == "watch" and not merged[key]:
            del merged[key]  # nothing left to watch: the default (the working directory) applies
        warnings += [
            f"{key}: {rule!r} is a regular expression (old nodemon syntax), which neither reloadd nor nodemon "
            "reads any more: rule dropped; write it as a glob, e.g. **/*.test.js"
            for rule in regexes
        ]
    return warnings


# -- merging -----------------------------------------------------------------------------------------------
def merge(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge layers, later ones winning: objects in DEEP_MERGED_KEYS key by key, everything else replaced."""
    merged: dict[str, Any] = {}
    for values in layers:
        for key, value in values.items():
            if key in DEEP_MERGED_KEYS and isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = _deep_merge(merged[key], value)
            else:
                merged[key] = value
    return merged


def _deep_merge(lower: dict[str, Any], upper: dict[str, Any]) -> dict[str, Any]:
    result = dict(lower)
    for key, value in upper.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = value
    return result
