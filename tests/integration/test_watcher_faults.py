"""The watcher under hostile file systems: directories that vanish or cannot be read are not the
inotify limit, names that are not UTF-8 do not lose the changes next to them."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from fs_support import needs_setpriv
from support import Reloadd, make_app, starts, touch, wait_for

RunReloadd = Callable[..., Reloadd]

CHURN_SECONDS = 3.0  # of `rm -rf src; mkdir -p src/sub` in a loop: hundreds of walk/watch races
LIMIT_WORDS = "max_user_watches"


def wait_starts(runner: Reloadd, app: Path, count: int) -> None:
    wait_for(lambda: len(starts(app)) >= count, what=f"{count} app start(s); log:\n{runner.log()}")


def test_directories_vanishing_between_walk_and_watch_are_not_the_inotify_limit(
    app: Path, run_reloadd: RunReloadd
) -> None:
    runner = run_reloadd(["server.js"], app)
    wait_starts(runner, app, 1)
    end = time.monotonic() + CHURN_SECONDS
    while time.monotonic() < end:
        shutil.rmtree(app / "src", ignore_errors=True)
        (app / "src" / "sub").mkdir(parents=True, exist_ok=True)
    touch(app / "src" / "sub" / "mod.js")
    wait_starts(runner, app, 2)
    log = runner.log()
    assert LIMIT_WORDS not in log and "polling" not in log, log
    assert runner.proc.poll() is None


@needs_setpriv
def test_an_unreadable_directory_is_named_not_taken_for_the_inotify_limit(nobody_reloadd: list[str]) -> None:
    """As root every directory can be watched: reloadd runs as an unprivileged user here."""
    with tempfile.TemporaryDirectory() as name:  # pytest's tmp_path sits in a directory only root may search
        base = Path(name)
        base.chmod(0o755)
        app = make_app(base / "app")
        (app / "secret").mkdir(mode=0o700)  # root's: listed by the walk, but the user may not watch it
        for path in (app, app / "server.js", app / "version.js"):
            os.chown(path, 65534, 65534)
        runner = Reloadd(["server.js"], app, command=nobody_reloadd)
        try:
            wait_starts(runner, app, 1)
            log = runner.wait_log("secret")
            assert LIMIT_WORDS not in log and "polling" not in log, log
            (line,) = [line for line in log.splitlines() if "secret" in line]
            assert "cannot be read" in line, log
            touch(app / "version.js")
            wait_starts(runner, app, 2)
        finally:
            runner.stop()


BAD_NAME = b"bad\xff\xfe.js"  # not UTF-8: watchfiles cannot hand it over as text


def test_a_file_name_that_is_not_utf8_does_not_lose_the_change_next_to_it(app: Path, run_reloadd: RunReloadd) -> None:
    runner = run_reloadd(["-V", "server.js"], app)
    wait_starts(runner, app, 1)
    with open(os.path.join(os.fsencode(app), BAD_NAME), "w") as bad:  # in the same batch as the real change
        bad.write("x")
    touch(app / "version.js", "module.exports = 'v2';\n")
    wait_starts(runner, app, 2)
    log = runner.wait_log("restarting due to changes")
    assert "changed: version.js" in log, log
    assert runner.proc.poll() is None


def test_a_directory_whose_name_is_not_utf8_is_watched_and_the_watcher_goes_on(
    app: Path, run_reloadd: RunReloadd
) -> None:
    runner = run_reloadd(["server.js"], app)
    wait_starts(runner, app, 1)
    odd = os.path.join(os.fsencode(app), b"dir\xff")
    os.mkdir(odd)
    touch(app / "version.js", "module.exports = 'v2';\n")
    wait_starts(runner, app, 2)
    with open(os.path.join(odd, b"mod.js"), "w") as inside:
        inside.write("x")
    wait_starts(runner, app, 3)
    assert runner.proc.poll() is None and "watcher failed" not in runner.log(), runner.log()
