# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""The sync link's heartbeat without kubectl (``--transport env``): a silent laptop ends the agent,
a stopped agent is noticed within the window and replaced. The same through the real kubectl is in
tests/system/test_sync_network.py."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from support import DEADLINE, make_app, reloadd_argv, wait_for
from sync_support import agents_of, control_env, start_sync, tree

from reloadd.sync.pod.agent import EXIT_LINK_DEAD
from reloadd.sync.shared.heartbeat import ping

WINDOW = 1.5  # seconds: short, so the tests are quick; the default is documented and unit-tested


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    return make_app(tmp_path / "laptop")


def test_an_agent_whose_laptop_goes_silent_ends_itself_within_the_window(pod: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NODE_ENV"}
    env.update(control_env(pod.parent))
    agent = subprocess.Popen(
        reloadd_argv() + ["agent", str(pod)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert agent.stdin is not None and agent.stdout is not None
    agent.stdin.write(ping(WINDOW))  # the laptop's window; then nothing more, stdin left open
    agent.stdin.flush()
    began = time.monotonic()
    assert agent.wait(DEADLINE) == EXIT_LINK_DEAD
    assert time.monotonic() - began < WINDOW + 3
    agent.stdin.close()
    agent.stdout.close()


def test_a_stopped_agent_is_noticed_within_the_window_and_replaced(run_reloadd, laptop: Path, pod: Path) -> None:
    sync = start_sync(run_reloadd, laptop, pod, "--heartbeat", str(WINDOW))
    (agent,) = wait_for(lambda: agents_of(sync), what="the agent process")
    agent.send_signal(signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        (laptop / "version.js").write_text("module.exports = 'while stopped';\n")
        sync.wait_log(f"no answer for {WINDOW:g} s — reconnecting")
        assert time.monotonic() - stopped_at < WINDOW + 5
        sync.wait_log("reconnected to")
        wait_for(lambda: tree(pod) == tree(laptop), what=f"the resync:\n{sync.log()}")
    finally:
        try:
            agent.send_signal(signal.SIGCONT)
        except psutil.NoSuchProcess:
            pass  # here the agent is the transport process itself, so the laptop's kill ended it
    wait_for(lambda: not agent.is_running() or agent.status() == "zombie", what="the stopped agent to end")
    assert len(agents_of(sync)) == 1
