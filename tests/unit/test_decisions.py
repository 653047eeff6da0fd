"""The parts the supervisor consults, on their own: they only decide."""

from __future__ import annotations

import signal

import pytest

from reloadd.supervise import console, policy


def ending(status: int, **overrides: object) -> policy.Ending:
    facts: dict[str, object] = {
        "status": status,
        "uptime": 1.0,
        "watching": True,
        "exitcrash": False,
        "restart_on_crash": False,
        "held_terminal": False,
    }
    facts.update(overrides)
    return policy.Ending(**facts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "overrides", "expected"),
    [
        (0, {}, policy.WaitForChanges),
        (1, {}, policy.WaitForChanges),
        (1, {"restart_on_crash": True}, policy.StartAfter),
        (1, {"exitcrash": True}, policy.ExitWith),
        (0, {"exitcrash": True}, policy.WaitForChanges),
        (5, {"watching": False}, policy.ExitWith),
        (128 + signal.SIGINT, {"held_terminal": True}, policy.ExitWith),
        (128 + signal.SIGINT, {}, policy.WaitForChanges),
    ],
)
def test_what_follows_an_ending(status: int, overrides: dict[str, object], expected: type) -> None:
    assert isinstance(policy.CrashPolicy().decide(ending(status, **overrides)), expected)


def test_the_crash_and_exit_messages_are_nodemons() -> None:
    decide = policy.CrashPolicy().decide
    assert decide(ending(0)) == policy.WaitForChanges("exit", "clean exit - waiting for changes before restart")
    assert decide(ending(1)).message == "app crashed - waiting for file changes before starting..."  # type: ignore[union-attr]


def test_backoff_doubles_to_its_cap_and_resets_after_a_long_run() -> None:
    crash = policy.CrashPolicy()
    waits = [crash.decide(ending(1, restart_on_crash=True)).seconds for _ in range(9)]  # type: ignore[union-attr]
    assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    long_run = crash.decide(ending(1, restart_on_crash=True, uptime=policy.BACKOFF_RESET_AFTER))
    assert long_run.seconds == policy.BACKOFF_FIRST  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"rs\n", console.RestartTyped("rs")),
        (b"  RS \r\n", console.RestartTyped("rs")),
        (b"rsx\n", console.ForwardInput(b"rsx\n")),
        (b"hello\n", console.ForwardInput(b"hello\n")),
        (b"", console.InputEnded()),
        (b"\xff\xfe\n", console.ForwardInput(b"\xff\xfe\n")),
    ],
)
def test_console_input(data: bytes, expected: object) -> None:
    assert console.decide(data, "rs") == expected
