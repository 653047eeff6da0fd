"""Helpers for tests that run the bundled Express example (examples/express): installing its
dependencies once per lockfile, copying it, and asking it over HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest
from support import wait_for

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "express"
NPM_TIMEOUT = 100.0  # seconds for `npm ci`: 71 small packages; stays under pytest's 120 s per-test timeout
REQUEST_TIMEOUT = 10.0  # seconds for one HTTP request; generous, a slow route takes up to 3 s here

Response = tuple[int, Any]


def express_node_modules(cache_root: Path) -> Path:
    """node_modules for the example, installed with ``npm ci`` once per lockfile and reused after.

    Installed into a temporary directory and renamed into place, so concurrent test runs never
    see a half-installed tree.
    """
    lock = (EXAMPLE / "package-lock.json").read_bytes() + (EXAMPLE / "package.json").read_bytes()
    target = cache_root / f"express-{hashlib.sha256(lock).hexdigest()[:16]}"
    if (target / "node_modules" / "express" / "package.json").exists():
        return target / "node_modules"
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="express-install-", dir=cache_root))
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(EXAMPLE / name, staging / name)
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=staging,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    try:
        staging.rename(target)
    except OSError:  # another run got there first; its install is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
    return target / "node_modules"


def copy_example(dest: Path, node_modules: Path) -> Path:
    """The example's sources in ``dest`` with node_modules linked to the shared install."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("node_modules"))
    (dest / "node_modules").symlink_to(node_modules, target_is_directory=True)
    return dest


def install_cache(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pytest's cache directory (kept between runs), or this session's temp dir without the cache plugin."""
    cache = getattr(config, "cache", None)
    return Path(cache.mkdir("reloadd-examples")) if cache is not None else tmp_path_factory.mktemp("npm")


def http_get(port: int, path: str, timeout: float = REQUEST_TIMEOUT) -> Optional[Response]:
    """(status, body) of GET ``path``, the body decoded as JSON when it is; None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, decoded(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, decoded(error.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException):
        return None


def decoded(raw: bytes) -> Any:
    """JSON, or the text itself (Express answers an unknown route with an HTML page)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def body(port: int, path: str = "/") -> dict[str, Any]:
    """The JSON body of a successful GET, or {} when the app does not answer (yet)."""
    got = http_get(port, path)
    return got[1] if got and got[0] == 200 and isinstance(got[1], dict) else {}


def served(port: int, what: str, key: str = "message", path: str = "/", timeout: float = 10.0) -> dict[str, Any]:
    """Wait until GET ``path`` answers with ``key`` == ``what``; return that body."""
    seen: dict[str, Any] = {}

    def matches() -> bool:
        seen.clear()
        seen.update(body(port, path))
        return seen.get(key) == what

    wait_for(matches, timeout, what=f"GET {path} to answer {key}={what!r} (last answer: {seen})")
    return dict(seen)
