from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Reloadd, make_app


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A fresh copy of the small HTTP app in its own directory."""
    return make_app(tmp_path / "app")


@pytest.fixture
def run_reloadd() -> Iterator:
    """Start reloadd with ``run_reloadd(args, cwd, env=...)``; everything it started is ended after the test."""
    started: list[Reloadd] = []

    def start(args: list[str], cwd: Path, **kwargs: object) -> Reloadd:
        runner = Reloadd(args, cwd, **kwargs)  # type: ignore[arg-type]
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()
