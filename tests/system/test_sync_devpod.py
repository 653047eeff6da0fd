# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""``reloadd sync`` into the simulated dev pod: reloadd as PID 1 of a PID namespace, running the app
from a bindfs (FUSE) mount, where inotify sees nothing and reloadd polls. The agent writes through
the mount, as it would inside the container, and tells PID 1 when each batch is in."""

from __future__ import annotations

import time
from pathlib import Path

from fs_support import DEVPOD_MARKS, bindfs_mount
from support import Reloadd, free_port, make_app, starts, wait_for
from sync_support import COUNTING_SERVER_JS, control_env, served, start_sync

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--mount", "--kill-child"]
SETTLE = 1.0 + 1.5  # the FUSE attribute cache (notifier_choice.REMOTE_SETTLE) plus room for a second restart

pytestmark = DEVPOD_MARKS


def test_each_synced_batch_restarts_pid_1_once_through_the_channel(run_reloadd, tmp_path: Path) -> None:
    laptop = make_app(tmp_path / "laptop", server_js=COUNTING_SERVER_JS)
    volume = tmp_path / "volume"
    volume.mkdir()
    with bindfs_mount(volume, tmp_path / "mnt") as mount:
        start_sync(run_reloadd, laptop, mount)
        port = free_port()
        env = {"PORT": str(port), **control_env(tmp_path)}
        pod = Reloadd(["-V", "server.js"], mount, env=env, prefix=UNSHARE)
        try:
            wait_for(lambda: served(port).startswith("v1 "), what=f"the app in the pod:\n{pod.log()}")
            assert "polling" in pod.log()  # FUSE: reloadd's own watcher would only see changes by polling
            for number in (2, 3):
                (laptop / "version.js").write_text(f"module.exports = 'v{number}';\n")
                expected = f"v{number} "
                wait_for(lambda: served(port).startswith(expected), what=f"{expected}served:\n{pod.log()}")  # noqa: B023
                time.sleep(SETTLE)
                assert len(starts(volume)) == number, pod.log()
            assert pod.log().count("sync batch committed") == 2
        finally:
            pod.stop()
