# mypy: disallow-untyped-defs=False, disallow-incomplete-defs=False, disallow-untyped-calls=False
"""``reloadd sync`` end to end: a laptop dir, ``--transport env`` (the agent on this machine, the same
code path as kubectl exec), a pod dir, and a real node app under reloadd in the pod dir."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest
from fs_support import hold
from support import DEADLINE, Reloadd, free_port, make_app, reloadd_argv, starts, wait_for
from sync_support import COUNTING_SERVER_JS, agents_of, control_env, served, start_sync, tree

from reloadd.sync.pod.agent import EXIT_WRITE_FAILED
from reloadd.sync.shared.protocol import MAX_FRAME, FrameReader, encode_data, encode_message
from reloadd.sync.shared.schema import EXIT_PROTOCOL

QUIET = 1.5  # seconds without another restart that count as "exactly one restart for this batch"
CHECKOUT_FILES = 1000
OLD_MTIME_NS = 1_000_000_000_000_000_000  # 2001: older than any file the test writes


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    return make_app(tmp_path / "laptop", server_js=COUNTING_SERVER_JS)


def start_app(run_reloadd: Callable[..., Reloadd], pod: Path) -> tuple[Reloadd, int]:
    port = free_port()
    app = run_reloadd(["server.js"], pod, env={"PORT": str(port), **control_env(pod.parent)})
    wait_for(lambda: served(port).startswith("v1"), what=f"the app in the pod:\n{app.log()}")
    return app, port


def test_initial_sync_sends_the_tree_with_modes_links_and_excludes(run_reloadd, laptop: Path, pod: Path) -> None:
    (laptop / "bin").mkdir()
    (laptop / "bin" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(laptop / "bin" / "run.sh", 0o755)
    (laptop / "empty.txt").write_text("")
    os.symlink("bin/run.sh", laptop / "run")  # relative, inside: kept as a symlink
    os.symlink("/etc/passwd", laptop / "passwd")  # absolute: skipped with a warning
    os.symlink("../../outside", laptop / "escape")  # leaves the tree: skipped
    (laptop / "node_modules" / "dep").mkdir(parents=True)
    (laptop / "node_modules" / "dep" / "index.js").write_text("dep")
    (laptop / ".gitignore").write_text("*.log\ndist/\n")
    (laptop / "debug.log").write_text("log")
    (laptop / "dist").mkdir()
    (laptop / "dist" / "bundle.js").write_text("bundle")
    (laptop / "notes.md").write_text("md")
    (laptop / ".env").write_text("A=1\n")
    (pod / "pod-only.txt").write_text("kept without --delete")
    sync = start_sync(run_reloadd, laptop, pod, "--exclude", "*.md")
    assert set(tree(pod)) == {
        "server.js", "version.js", "bin", "bin/run.sh", "empty.txt", "run", ".gitignore", ".env", "pod-only.txt"
    }  # fmt: skip
    assert tree(pod)["run"] == "-> bin/run.sh"
    assert stat.S_IMODE((pod / "bin" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((pod / "version.js").stat().st_mode) == 0o644
    log = sync.log()
    assert "skipping symlink 'passwd' -> '/etc/passwd': absolute target" in log
    assert "skipping symlink 'escape' -> '../../outside': points outside the synced directory" in log
    # The start's line says what was compared and the whole wait, from the command's start.
    assert re.search(r"synced 7 files \(\d+ B\) to \S+ \(7 files compared\) in \d+\.\d\d s", log), log


def test_live_edits_deletes_renames_and_directories_arrive(run_reloadd, laptop: Path, pod: Path) -> None:
    (laptop / "lib").mkdir()
    (laptop / "lib" / "a.js").write_text("a")
    (laptop / "old").mkdir()
    (laptop / "old" / "gone.js").write_text("gone")
    sync = start_sync(run_reloadd, laptop, pod)

    def new_deep_file() -> None:
        os.makedirs(laptop / "new" / "deep")
        (laptop / "new" / "deep" / "c.js").write_text("c")

    steps: list[Callable[[], object]] = [
        lambda: (laptop / "version.js").write_text("module.exports = 'v2';\n"),
        lambda: (laptop / "lib" / "a.js").rename(laptop / "lib" / "b.js"),
        lambda: shutil.rmtree(laptop / "old"),
        lambda: (laptop / "lib").rename(laptop / "src"),
        new_deep_file,
        lambda: os.makedirs(laptop / "empty" / "nested"),  # directories alone arrive too
        lambda: os.rmdir(laptop / "empty" / "nested"),
        lambda: (laptop / "tool.sh").write_text("#!/bin/sh\n"),
        lambda: os.chmod(laptop / "tool.sh", 0o755),
    ]
    for step in steps:
        step()
        wait_for(lambda: tree(pod) == tree(laptop), what=f"the pod to match the laptop:\n{tree(pod)}\n{sync.log()}")
    wait_for(lambda: stat.S_IMODE((pod / "tool.sh").stat().st_mode) == 0o755, what="the executable bit alone")
    # A last echo of the chmod may still be staging: its temporary name goes when it commits.
    wait_for(lambda: not [n for n in os.listdir(pod) if n.startswith(".reloadd-sync.")], what="no temporary file")


def test_delete_removes_pod_only_files_but_never_excluded_ones(run_reloadd, laptop: Path, pod: Path) -> None:
    (laptop / "nodemon.json").write_text(json.dumps({"sync": {"exclude": ["cache/"], "delete": True}}))
    (pod / "stray.js").write_text("stray")
    (pod / "stray-dir").mkdir()
    (pod / "stray-dir" / "x.js").write_text("x")
    (pod / "node_modules" / "dep").mkdir(parents=True)
    (pod / "node_modules" / "dep" / "index.js").write_text("installed in the image")
    (pod / "cache").mkdir()
    (pod / "cache" / "data").write_text("pod's cache")
    sync = start_sync(run_reloadd, laptop, pod)
    assert not (pod / "stray.js").exists() and not (pod / "stray-dir").exists()
    assert (pod / "node_modules" / "dep" / "index.js").read_text() == "installed in the image"
    assert (pod / "cache" / "data").read_text() == "pod's cache"
    assert "and deleted 2" in sync.log()


def test_each_save_restarts_the_app_once(run_reloadd, laptop: Path, pod: Path) -> None:
    start_sync(run_reloadd, laptop, pod)
    app, port = start_app(run_reloadd, pod)
    for number in range(2, 5):
        (laptop / "version.js").write_text(f"module.exports = 'v{number}';\n")
        expected = f"v{number} "
        wait_for(lambda: served(port).startswith(expected), what=f"{expected}served:\n{app.log()}")  # noqa: B023
        time.sleep(QUIET)  # room for a second restart, if the watcher's echo caused one
        assert len(starts(pod)) == number, app.log()


def test_a_1000_file_checkout_is_one_restart_with_every_file_in_place(run_reloadd, laptop: Path, pod: Path) -> None:
    sync = start_sync(run_reloadd, laptop, pod)
    app, port = start_app(run_reloadd, pod)
    staging = laptop.parent / "checkout"
    staging.mkdir()
    for index in range(CHECKOUT_FILES):
        (staging / f"file{index:04}.js").write_text(f"module.exports = {index};\n")
    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    staging.rename(laptop / "many")  # the checkout lands: a new directory of 1,000 files and an edit
    wait_for(lambda: served(port).startswith("v2 "), what=f"v2 served:\n{app.log()}\n{sync.log()}")
    time.sleep(QUIET)
    counts = (pod / "counts.log").read_text().split()
    assert counts == ["0", str(CHECKOUT_FILES)], f"{counts}\n{app.log()}\n{sync.log()}"


def test_output_is_one_json_object_per_batch_with_log_format_json(run_reloadd, laptop: Path, pod: Path) -> None:
    sync = start_sync(run_reloadd, laptop, pod, "--log-format", "json")
    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    sync.wait_log('"event": "synced"', count=2)
    records = [json.loads(line) for line in sync.log().splitlines()]
    synced = [r for r in records if r.get("event") == "synced"]
    assert synced[-1]["files"] == 1 and synced[-1]["target"] == str(pod)
    assert synced[-1]["msg"].startswith("synced 1 file (23 B) to ")


def test_verbose_lists_each_file(run_reloadd, laptop: Path, pod: Path) -> None:
    sync = start_sync(run_reloadd, laptop, pod, "-V")
    (laptop / "version.js").unlink()
    sync.wait_log("deleted version.js")
    assert "[reloadd]   server.js" in sync.log()


def test_a_pod_side_symlink_pointing_outside_is_never_written_through(run_reloadd, laptop: Path, pod: Path) -> None:
    outside = laptop.parent / "outside"
    outside.mkdir()
    os.symlink(str(outside), pod / "lib")
    (laptop / "lib").mkdir()
    (laptop / "lib" / "x.js").write_text("x")
    start_sync(run_reloadd, laptop, pod)
    assert os.listdir(outside) == []
    assert not (pod / "lib").is_symlink() and (pod / "lib" / "x.js").read_text() == "x"  # the laptop wins


def test_a_killed_agent_is_reconnected_and_changes_made_meanwhile_arrive(run_reloadd, laptop: Path, pod: Path) -> None:
    sync = start_sync(run_reloadd, laptop, pod)
    (agent,) = wait_for(lambda: agents_of(sync), what="the agent process")
    agent.kill()
    sync.wait_log(" — reconnecting")
    (laptop / "version.js").write_text("module.exports = 'while away';\n")
    (laptop / "added.js").write_text("added")
    sync.wait_log("reconnected to")
    wait_for(lambda: tree(pod) == tree(laptop), what=f"the resync:\n{sync.log()}")
    assert sync.log().count(" — reconnecting") == 1


def test_ctrl_c_ends_the_agent_and_leaves_the_app_running(run_reloadd, laptop: Path, pod: Path) -> None:
    sync = start_sync(run_reloadd, laptop, pod)
    app, port = start_app(run_reloadd, pod)
    agents = wait_for(lambda: agents_of(sync), what="the agent process")
    sync.signal(signal.SIGINT)
    assert sync.wait_exit() == 0
    for agent in agents:
        wait_for(lambda: not agent.is_running() or agent.status() == "zombie", what="the agent to exit")  # noqa: B023
    assert served(port).startswith("v1 ") and app.proc.poll() is None


def test_the_bare_word_sync_is_a_subcommand_only_first(run_reloadd, tmp_path: Path) -> None:
    app = make_app(tmp_path / "app")
    (app / "sync.js").write_text("console.log('sync.js ran');\n")
    runner = run_reloadd(["--no-watch", "sync.js"], app)
    assert runner.wait_exit(DEADLINE) == 0
    assert "sync.js ran" in runner.out()


SLOW_POLL_MS = 8000  # the pod's own watcher polls this rarely: only the channel can explain a quick restart
CHANNEL_BOUND = 5.0  # seconds: well inside one poll period


def test_a_committed_batch_restarts_at_once_and_the_watchers_later_echo_does_not(
    run_reloadd, laptop: Path, pod: Path
) -> None:
    start_sync(run_reloadd, laptop, pod)
    port = free_port()
    env = {"PORT": str(port), **control_env(pod.parent)}
    app = run_reloadd(["--legacy-watch", "--polling-interval", str(SLOW_POLL_MS), "server.js"], pod, env=env)
    wait_for(lambda: served(port).startswith("v1"), what=f"the app in the pod:\n{app.log()}")
    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    wait_for(lambda: served(port).startswith("v2 "), timeout=CHANNEL_BOUND, what=f"v2 served:\n{app.log()}")
    time.sleep(SLOW_POLL_MS / 1000 + QUIET)  # the poller has now seen the same file
    assert len(starts(pod)) == 2, app.log()


def test_a_start_that_only_gives_the_pod_the_laptops_mtimes_restarts_nothing(
    run_reloadd, laptop: Path, pod: Path
) -> None:
    shutil.copytree(laptop, pod, dirs_exist_ok=True)  # the same code, as in an image built from the same commit
    for path in ("server.js", "version.js"):
        os.utime(pod / path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    app, _ = start_app(run_reloadd, pod)
    start_sync(run_reloadd, laptop, pod)
    wait_for(
        lambda: (pod / "version.js").stat().st_mtime_ns == (laptop / "version.js").stat().st_mtime_ns,
        what="the pod's file to take the laptop's mtime",
    )
    time.sleep(QUIET)  # room for a restart, if the mtime change were taken for an edit
    assert len(starts(pod)) == 1, app.log()


def test_without_a_supervisor_listening_the_agent_just_writes(run_reloadd, laptop: Path, pod: Path) -> None:
    control = laptop.parent / "control"
    control.mkdir(mode=0o700)
    (control / "supervisor-999999999.sock").write_text("")  # a dead supervisor's leftover, not a socket
    start_sync(run_reloadd, laptop, pod)
    assert tree(pod)["version.js"] == "module.exports = 'v1';\n"


def agent_process(pod: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "NODE_ENV"}
    env.update(control_env(pod.parent))
    proc = subprocess.Popen(
        reloadd_argv() + ["agent", str(pod)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    header = proc.stdout.read(5)
    (hello,) = FrameReader().feed(header + proc.stdout.read(struct.unpack(">cI", header)[1]))
    assert isinstance(hello, dict) and hello["t"] == "hello"
    return proc


def test_a_laptop_gone_mid_batch_leaves_nothing_in_the_pod(pod: Path) -> None:
    (pod / "app.js").write_text("old")
    proc = agent_process(pod)
    assert proc.stdin is not None
    proc.stdin.write(encode_message({"t": "batch", "id": 1}))
    proc.stdin.write(encode_message({"t": "delete", "paths": ["app.js"]}))
    for path, size in (("new/b.js", 0), ("app.js", 100)):
        op = {"t": "op", "op": "file", "path": path, "size": size, "exec": False, "mtime": 1}
        proc.stdin.write(encode_message(op))
    proc.stdin.write(encode_data(b"half"))
    proc.stdin.close()  # the laptop died (or lost the network) before the commit
    assert proc.wait(DEADLINE) == 0
    proc.stdout.close()  # type: ignore[union-attr]
    assert tree(pod) == {"app.js": "old"}  # no temporary file or new directory left, nothing applied


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (struct.pack(">cI", b"D", MAX_FRAME + 1), "over the"),
        (encode_message({"t": "start", "exclude": "*"}), "start: bad value for 'exclude'"),
        (encode_message({"t": "batch", "id": 1}) + encode_message({"t": "delete", "paths": ["../e"]}), "normalised"),
    ],
)
def test_a_malformed_frame_ends_the_session_with_one_error_line(pod: Path, frame: bytes, message: str) -> None:
    proc = agent_process(pod)
    output, _ = proc.communicate(frame, timeout=DEADLINE)
    assert proc.returncode == EXIT_PROTOCOL
    (reply,) = FrameReader().feed(output)
    assert isinstance(reply, dict), reply
    assert reply["t"] == "error" and message in reply["message"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="a read-only bind mount needs root")
def test_a_pod_directory_the_agent_cannot_write_is_one_error_line(pod: Path) -> None:
    readonly = f'mount --bind {pod} {pod} && mount -o remount,ro,bind {pod} && exec "$@"'
    frames = encode_message({"t": "batch", "id": 1})
    frames += encode_message({"t": "op", "op": "file", "path": "a.js", "size": 1, "exec": False, "mtime": 1})
    frames += encode_data(b"x")
    argv = ["unshare", "--mount", "sh", "-c", readonly, "sh", *reloadd_argv(), "agent", str(pod)]
    done = subprocess.run(argv, input=frames, capture_output=True, timeout=DEADLINE)
    replies = FrameReader().feed(done.stdout)
    assert done.returncode == EXIT_WRITE_FAILED, done.stderr
    last = replies[-1]
    assert isinstance(last, dict) and last["t"] == "error" and "Read-only file system" in last["message"]


def test_nested_gitignores_apply_at_start_and_in_a_directory_made_later(run_reloadd, laptop: Path, pod: Path) -> None:
    """The walk reads each directory's own .gitignore, found by listing it, at any depth."""
    deep = laptop / "a" / "b"
    deep.mkdir(parents=True)
    (laptop / "a" / ".gitignore").write_text("*.tmp\n")
    (deep / ".gitignore").write_text("secret.js\n")
    for name in ("keep.js", "x.tmp", "secret.js"):
        (deep / name).write_text(name)
    (laptop / "secret.js").write_text("not ignored above a/b")
    sync = start_sync(run_reloadd, laptop, pod)
    assert {"a/b/keep.js", "secret.js"} <= set(tree(pod)), sync.log()
    assert not {"a/b/x.tmp", "a/b/secret.js"} & set(tree(pod)), sync.log()
    made = laptop / "c"  # made in one burst with its .gitignore: the burst's walk reads it
    (made / "d").mkdir(parents=True)
    (made / ".gitignore").write_text("*.key\n")
    (made / "d" / "id.key").write_text("k")
    (made / "d" / "app.js").write_text("a")
    wait_for(lambda: (pod / "c" / "d" / "app.js").exists(), what=sync.log())
    assert not (pod / "c" / "d" / "id.key").exists(), sync.log()


def test_verbose_says_why_a_changed_file_is_not_synced(run_reloadd, laptop: Path, pod: Path) -> None:
    (laptop / ".gitignore").write_text("*.log\n")
    sync = start_sync(run_reloadd, laptop, pod, "-V")
    (laptop / "debug.log").write_text("ignored by git's rules\n")
    sync.wait_log("not synced: debug.log: excluded (")
    assert "None" not in sync.log() and "no restart for" not in sync.log(), sync.log()


def test_a_burst_with_a_gitignore_edit_keeps_its_deletes_and_its_rules(run_reloadd, laptop: Path, pod: Path) -> None:
    """Without --delete a resync keeps pod-only files: the burst's own delete must not become one."""
    (laptop / "old.js").write_text("deleted in the same save as the .gitignore edit")
    sync = start_sync(run_reloadd, laptop, pod)
    assert (pod / "old.js").exists()
    (laptop / "old.js").unlink()
    (laptop / "secret.env").write_text("KEY=1")  # ignored by the rule written in the same burst
    (laptop / ".gitignore").write_text("*.env\n")
    wait_for(lambda: (pod / ".gitignore").exists() and not (pod / "old.js").exists(), what=sync.log())
    hold(lambda: not (pod / "secret.env").exists(), QUIET, f"nothing ignored sent by the resync; log:\n{sync.log()}")


def test_editing_a_gitignore_changes_what_is_synced_from_then_on(run_reloadd, laptop: Path, pod: Path) -> None:
    (laptop / "secret.env").write_text("A=1")
    sync = start_sync(run_reloadd, laptop, pod)
    assert (pod / "secret.env").exists()
    (laptop / ".gitignore").write_text("*.env\n")
    wait_for(lambda: (pod / ".gitignore").exists(), what=sync.log())
    (laptop / "other.env").write_text("B=2")
    (laptop / "version.js").write_text("module.exports = 'v2';\n")
    wait_for(lambda: "v2" in (pod / "version.js").read_text(), what=sync.log())
    assert not (pod / "other.env").exists()
    assert (pod / "secret.env").read_text() == "A=1"  # excluded now: never deleted either
