"""Histories replayed against the real supervisor state machine, with a fake clock and fake
processes (tests/fakes.py): which processes it starts and signals, in which order, and which
state it is in. The OS side of the same behaviour is proven by the integration tests."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from fakes import Replay

from reloadd.host.watch.bursts import GROUP_QUIET, Burst
from reloadd.supervise.delay import Delay
from reloadd.supervise.machine import ALLOWED, State, TransitionError


def state(run: Replay) -> State:
    """The supervisor's state now (a call, so that type checkers do not narrow it between steps)."""
    return run.supervisor.state


def test_one_burst_is_one_restart_after_the_quiet_window(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    first = run.app
    run.change("a.js")
    run.until(0.01)
    run.change("b.js")  # 10 ms later: the same burst
    assert run.system.spawned() == [first], "nothing restarts while the burst is open"
    run.until(1.0)
    assert run.system.spawned() == [first, first + 1]
    assert ("signal", first, "SIGUSR2") in run.system.actions
    assert state(run) is State.RUNNING


def test_the_new_generation_starts_only_after_the_old_tree_is_gone(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    run.system.answers[signal.SIGUSR2] = 0.5  # the app takes half a second to stop
    first = run.app
    run.change("a.js")
    run.until(0.4)
    assert state(run) is State.RESTARTING
    assert run.system.spawned() == [first]
    run.until(1.0)
    assert run.system.spawned() == [first, first + 1]


def test_changes_while_stopping_join_the_restart_under_way(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    run.system.answers[signal.SIGUSR2] = 0.5
    run.change("a.js")
    run.until(0.1)
    run.change("b.js")
    run.until(0.2)
    run.change("c.js")
    run.until(3.0)
    assert len(run.system.spawned()) == 2


def test_stopping_begins_with_the_first_change_of_a_burst(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    first = run.app
    run.change("a.js")
    assert ("signal", first, "SIGUSR2") in run.system.actions, "the stop overlaps the quiet window"
    assert state(run) is State.RESTARTING


def test_the_next_generation_waits_for_the_burst_to_close(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    run.system.answers[signal.SIGUSR2] = 0.001  # the old tree is gone at once
    for index in range(10):  # a 100 ms burst: one change every 10 ms
        run.change(f"m{index}.js")
        run.until(run.system.clock + 0.01)
    assert state(run) is State.BETWEEN
    assert len(run.system.spawned()) == 1
    run.until(run.system.clock + GROUP_QUIET + 0.01)
    assert state(run) is State.RUNNING
    assert len(run.system.spawned()) == 2


@pytest.mark.parametrize(
    ("args", "files", "changed"),
    [
        (["--delay", "1"], {}, "a.js"),
        ([], {"nodemon.json": "{}"}, "nodemon.json"),
        ([], {"nodemon.json": '{"hot": {"paths": ["views/**"]}}'}, "a.js"),
    ],
    ids=["delay", "config file", "soft reload configured"],
)
def test_no_early_stop_where_the_whole_burst_decides(
    tmp_path: Path, args: list[str], files: dict[str, str], changed: str
) -> None:
    run = Replay(tmp_path, [*args, "server.js"], files).start()
    first = run.app
    run.change(changed)
    assert ("signal", first, "SIGUSR2") not in run.system.actions
    assert state(run) is State.RUNNING


def test_a_crash_waits_for_changes(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    run.until(0.3)
    run.system.exit(run.app, 1)
    run.until(1.0)
    assert state(run) is State.IDLE
    assert len(run.system.spawned()) == 1
    run.change("a.js")
    run.until(1.5)
    assert state(run) is State.RUNNING
    assert len(run.system.spawned()) == 2


def test_restart_on_crash_backs_off_doubling(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["--restart-on-crash", "server.js"]).start()
    starts: list[float] = []
    for _ in range(3):
        run.system.exit(run.app, 1)
        run.until(run.system.clock + 0.01)
        assert state(run) is State.BACKOFF
        crashed = run.system.clock
        while state(run) is not State.RUNNING:
            run.until(run.system.clock + 0.05)
        starts.append(round(run.system.clock - crashed, 1))
    assert starts == [0.5, 1.0, 2.0]


def test_a_stop_signal_stops_the_tree_and_exits_with_the_apps_status(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    app = run.app
    run.signal(signal.SIGTERM)
    assert state(run) is State.EXITING
    run.until(1.0)
    assert state(run) is State.EXITED
    assert run.supervisor.exit_code == 128 + signal.SIGTERM
    assert ("signal", app, "SIGTERM") in run.system.actions


def test_a_second_stop_signal_kills_at_once(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    run.system.answers[signal.SIGTERM] = None  # the app ignores SIGTERM
    app = run.app
    run.signal(signal.SIGTERM)
    run.until(0.5)
    assert state(run) is State.EXITING
    run.signal(signal.SIGTERM)
    run.until(0.6)
    assert ("signal", app, "SIGKILL") in run.system.actions
    assert run.supervisor.exit_code == 128 + signal.SIGKILL


def test_a_stop_signal_during_a_restart_ends_in_exiting_without_a_new_start(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    run.system.answers[signal.SIGUSR2] = 0.5
    run.change("a.js")
    run.until(0.1)
    assert state(run) is State.RESTARTING
    run.signal(signal.SIGTERM)
    run.until(2.0)
    assert state(run) is State.EXITED
    assert len(run.system.spawned()) == 1


def test_a_stop_signal_with_no_app_running_exits_0(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    run.system.exit(run.app, 1)
    run.until(0.5)
    run.signal(signal.SIGINT)
    assert state(run) is State.EXITED
    assert run.supervisor.exit_code == 0


def test_stop_timeout_ends_in_sigkill(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["--stop-timeout", "2", "server.js"]).start()
    run.system.answers[signal.SIGUSR2] = None
    app = run.app
    run.change("a.js")
    run.until(1.9)
    assert ("signal", app, "SIGKILL") not in run.system.actions
    run.until(2.5)
    assert ("signal", app, "SIGKILL") in run.system.actions
    assert len(run.system.spawned()) == 2


def test_delay_restarts_its_timer_on_each_burst(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["--delay", "1", "server.js"]).start()
    run.change("a.js")
    run.until(0.5)
    run.change("b.js")  # a second burst inside the delay: the wait starts again
    run.until(1.4)
    assert len(run.system.spawned()) == 1
    run.until(2.0)
    assert len(run.system.spawned()) == 2


def test_without_watching_reloadd_exits_with_the_app(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["--no-watch", "server.js"]).start()
    run.system.exit(run.app, 3)
    run.until(0.5)
    assert state(run) is State.EXITED
    assert run.supervisor.exit_code == 3


def test_exitcrash_exits_on_a_crash_but_not_on_a_clean_exit(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["--exitcrash", "server.js"]).start()
    run.system.exit(run.app, 0)
    run.until(0.5)
    assert state(run) is State.IDLE
    run.change("a.js")
    run.until(1.0)
    run.system.exit(run.app, 4)
    run.until(1.5)
    assert (state(run), run.supervisor.exit_code) == (State.EXITED, 4)


def test_on_change_only_waits_for_the_first_change(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["--on-change-only", "server.js"]).start()
    run.until(1.0)
    assert run.system.spawned() == []
    assert state(run) is State.IDLE
    run.change("a.js")
    run.until(1.1)
    assert len(run.system.spawned()) == 1


def test_sighup_restarts_when_watching_and_is_forwarded_otherwise(tmp_path: Path) -> None:
    run = Replay(tmp_path / "watching", ["server.js"]).start()
    run.signal(signal.SIGHUP)
    run.until(1.0)
    assert len(run.system.spawned()) == 2
    plain = Replay(tmp_path / "plain", ["--no-watch", "server.js"]).start()
    plain.signal(signal.SIGHUP)
    plain.until(1.0)
    assert plain.system.spawned() == [plain.app]
    assert ("signal", plain.app, "SIGHUP") in plain.system.actions


def test_a_change_while_the_app_exits_by_itself_starts_it_after_the_clean_up(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    run.system.answers[signal.SIGTERM] = 0.3  # what the app left running takes a while to stop
    first = run.app
    left = run.system.child_of(first)
    run.system.exit(first, 0)
    run.supervisor.step()
    assert state(run) is State.CLEANING_UP
    run.change("a.js")
    run.until(1.0)
    assert ("signal", left, "SIGTERM") in run.system.actions
    assert state(run) is State.RUNNING
    assert len(run.system.spawned()) == 2


def test_a_transition_not_in_the_table_is_refused(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    with pytest.raises(TransitionError, match="running -> idle"):
        run.supervisor.transition(State.IDLE, "made up")
    assert State.EXITED not in ALLOWED[State.RUNNING], "a running app is always stopped before exiting"
    assert ALLOWED[State.EXITED] == frozenset()


def test_when_reloadd_fails_the_apps_tree_is_stopped(tmp_path: Path) -> None:
    run = Replay(tmp_path, ["server.js"]).start()
    app = run.app
    run.until(0.2)
    run.supervisor.abandon()
    assert ("signal", app, "SIGTERM") in run.system.actions
    assert not run.system.processes[app].alive


# -- the batching parts on their own --------------------------------------------------------
def test_a_busy_watcher_keeps_the_burst_open_without_spinning() -> None:
    burst = Burst()
    burst.add({"/a.js"}, now=0.0, busy=True)
    assert not burst.ready(1.0)
    wait = burst.wait_time(1.0)
    assert wait is not None and wait > 0, "a zero wait while busy makes the loop spin"
    burst.add(set(), now=1.0, busy=False)
    assert burst.ready(1.0)


def test_a_burst_closes_at_the_cap_however_busy() -> None:
    burst = Burst()
    burst.add({"/a.js"}, now=0.0, busy=True)
    assert burst.ready(burst.cap)


def test_a_burst_stays_open_for_the_watchers_settle_time() -> None:
    burst = Burst()
    burst.add({"/a.js"}, now=0.0, settle=1.0)
    assert not burst.ready(0.5)
    assert burst.ready(1.0)
    burst2 = Burst()
    burst2.add({"/a.js"}, now=0.0)
    assert burst2.ready(GROUP_QUIET)


def test_dropping_every_path_of_a_burst_leaves_no_burst() -> None:
    burst = Burst()
    burst.add({"/a.js", "/b.js"}, now=0.0)
    burst.drop({"/a.js"})
    assert burst.ready(GROUP_QUIET) and burst.paths == {"/b.js"}
    burst.drop({"/b.js"})
    assert not burst.ready(GROUP_QUIET) and burst.wait_time(GROUP_QUIET) is None


def test_delay_gives_the_union_of_its_bursts() -> None:
    delay = Delay(1.0)
    delay.add(["/a.js"], 0.0)
    delay.add(["/b.js"], 0.5)
    assert delay.take(1.4) is None
    assert delay.take(1.5) == ["/a.js", "/b.js"]
    assert delay.take(3.0) is None
