"""The Pythons the package claims are the ones CI tests: pyproject.toml and .ci/run stay in step."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.9/3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

REPO = Path(__file__).resolve().parents[2]
LINT_TOOLS = ("ruff", "mypy")  # pinned releases that need a newer Python than the oldest admitted


def project() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return data


def ci_python(name: str) -> str:
    match = re.search(rf"^{name}=(\S+)", (REPO / ".ci" / "run").read_text(), re.MULTILINE)
    assert match, f".ci/run sets no {name}"
    return match.group(1)


def claimed_versions() -> list[str]:
    prefix = "Programming Language :: Python :: "
    return [item[len(prefix) :] for item in project()["classifiers"] if re.fullmatch(r"\d+\.\d+", item[len(prefix) :])]


def test_ci_tests_the_oldest_python_requires_python_admits() -> None:
    assert project()["requires-python"] == f">={ci_python('OLDEST_PYTHON')}"
    assert claimed_versions()[0] == ci_python("OLDEST_PYTHON")


def test_ci_tests_the_newest_python_the_package_claims() -> None:
    assert claimed_versions()[-1] == ci_python("NEWEST_PYTHON")


def test_the_test_extra_installs_on_the_oldest_python() -> None:
    """The lint tools live in their own extra: in `test`, pip could not install it on Python 3.9."""
    test_extra = project()["optional-dependencies"]["test"]
    assert not [item for item in test_extra if re.match(rf"({'|'.join(LINT_TOOLS)})\b", item)], test_extra
