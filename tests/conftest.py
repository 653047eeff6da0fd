"""Fixtures shared by every layer, and the layer markers.

Layers are folders: ``unit/`` (logic with fakes, no reloadd process), ``integration/`` (the
installed ``reloadd`` on real node apps in ``tmp_path``) and ``system/`` (reloadd as PID 1 in a
PID namespace, FUSE-mounted dev pods), plus ``engine/`` (real containers: ``.ci/engine``). Each
test gets its folder's marker, so ``pytest -m unit``
and ``scripts/check --fast`` pick the fast layer. Shared helpers live in ``support.py`` and
``fs_support.py`` beside this file.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import Reloadd, make_app
from unprivileged import CopyFailed, unprivileged_reloadd

LAYERS = ("unit", "integration", "system", "engine")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A fresh copy of the small HTTP app in its own directory."""
    return make_app(tmp_path / "app")


@pytest.fixture
def pod(tmp_path: Path) -> Path:
    """The folder that plays a pod's app directory in the sync tests (the agent writes there)."""
    directory = tmp_path / "pod"
    directory.mkdir()
    return directory


@pytest.fixture
def run_reloadd() -> Iterator[Callable[..., Reloadd]]:
    """Start reloadd with ``run_reloadd(args, cwd, env=...)``; everything it started is ended after the test."""
    started: list[Reloadd] = []

    def start(args: list[str], cwd: Path, **kwargs: object) -> Reloadd:
        runner = Reloadd(args, cwd, **kwargs)  # type: ignore[arg-type]
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()


@pytest.fixture(scope="session")
def nobody_reloadd() -> Iterator[list[str]]:
    """The argv that runs a copy of reloadd as nobody (see unprivileged.py), built once per session.

    Skips, saying why, when no such copy can be made here: that says nothing about reloadd."""
    try:
        argv, copy = unprivileged_reloadd()
    except CopyFailed as exc:
        pytest.skip(f"cannot run reloadd as an unprivileged user here: {exc}")
    yield argv
    shutil.rmtree(copy, ignore_errors=True)
