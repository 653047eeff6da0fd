"""What a synced batch is told it did to the app (feedback.py), and the line the laptop makes of it
(sync/laptop/live.py): decisions on a fake clock, no processes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import cast

import pytest

from reloadd.host.control import Committed
from reloadd.supervise.feedback import START_WINDOW, Feedback
from reloadd.sync.laptop.live import Sent, describe, local_lines
from reloadd.sync.shared.messages import Live

SOCKETS: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while SOCKETS:
        SOCKETS.pop().close()


def batch() -> Committed:
    """A batch whose agent waits for the outcome (an open connection)."""
    SOCKETS.append(socket.socket(socket.AF_UNIX))
    return Committed(["/app/a.js"], sock=SOCKETS[-1])


def test_a_start_that_outlives_the_window_is_a_restart_timed_from_the_commit() -> None:
    feedback, first = Feedback(), batch()
    feedback.committed(first, now=10.0)
    assert feedback.started(now=10.2, mark=0) == []
    assert feedback.due(10.2 + START_WINDOW / 2) == []
    assert feedback.deadline() == pytest.approx(10.2 + START_WINDOW)
    assert feedback.due(10.2 + START_WINDOW) == [(first, {"what": "restarted", "ms": 200})]
    assert feedback.deadline() is None and feedback.ended(1, ["late"]) == []  # a later crash is not the batch's


def test_an_end_inside_the_window_is_a_crash_with_the_apps_lines() -> None:
    feedback, first = Feedback(), batch()
    feedback.committed(first, now=0.0)
    feedback.started(now=0.1, mark=7)
    assert feedback.mark == 7
    assert feedback.ended(1, ["/app/a.js:1", "Error: x"]) == [
        (first, {"what": "crashed", "status": 1, "lines": ["/app/a.js:1", "Error: x"]})
    ]


def test_a_newer_start_inside_the_window_tells_the_earlier_batch_it_restarted() -> None:
    feedback, first, second = Feedback(), batch(), batch()
    feedback.committed(first, now=0.0)
    feedback.started(now=0.05, mark=0)
    feedback.committed(second, now=0.2)
    assert feedback.started(now=0.3, mark=0) == [(first, {"what": "restarted", "ms": 50})]
    assert feedback.due(0.3 + START_WINDOW) == [(second, {"what": "restarted", "ms": 100})]


def test_a_soft_reload_answers_the_waiting_batches_and_batches_that_asked_nothing_are_not_kept() -> None:
    feedback, first = Feedback(), batch()
    feedback.committed(Committed(["/app/b.js"]), now=0.0)  # no connection: nobody to tell
    feedback.committed(first, now=0.0)
    assert feedback.reloaded() == [(first, {"what": "reloaded"})]
    assert feedback.started(now=1.0, mark=0) == [] and feedback.deadline() is None


NONE = "nothing restarted"
WHETHER = "the app restarted"
SENT = Sent(began=0.0, done=0.030, files=3, deleted=0)


@pytest.mark.parametrize(
    ("message", "level", "line"),
    [
        ({"what": "restarted", "ms": 54}, "status", "pod/web: 3 files → restarted in 84 ms"),
        ({"what": "restarted", "ms": 1970}, "status", "pod/web: 3 files → restarted in 2.0 s"),
        ({"what": "crashed", "status": 1, "lines": []}, "error", "pod/web: 3 files → crashed at start (exit status 1)"),
        ({"what": "unchanged"}, "status", "pod/web: 3 files → no restart (nothing the app watches changed)"),
        (
            {"what": "no-supervisor"},
            "warn",
            "pod/web: 3 files → written, but no reloadd in the pod watches /app: " + NONE,
        ),
        ({"what": "no-answer"}, "warn", "pod/web: 3 files → written; the pod's reloadd did not say whether " + WHETHER),
    ],
)
def test_each_outcome_is_one_line(message: dict[str, object], level: str, line: str) -> None:
    assert describe("pod/web", SENT, cast(Live, {"t": "live", "id": 1, **message}), "/app")[:2] == (level, line)


def test_a_crash_shows_the_apps_own_lines_as_the_developer_has_the_files() -> None:
    lines = [
        "/app/lib/boom.js:3",
        "  throw new Error('x');",
        "",
        "Error: x",
        "    at Object.<anonymous> (/app/lib/boom.js:3:9)",
        "    at Module._compile (node:internal/modules/cjs/loader:1521:14)",
        "Node.js v20.20.2",
    ]
    crash: Live = {"t": "live", "id": 1, "what": "crashed", "status": 1, "lines": lines}
    _, _, shown = describe("pod/web", SENT, crash, "/app")
    frame = "    at Object.<anonymous> (lib/boom.js:3:9)"
    assert shown == ["lib/boom.js:3", "  throw new Error('x');", "Error: x", frame]
    assert local_lines(["/application/x.js:1"], "/app") == ["/application/x.js:1"]  # only the pod's directory
    assert describe("pod/web", Sent(0, 0, 0, 2), {"t": "live", "id": 1, "what": "unchanged"}, "/app")[1].startswith(
        "pod/web: 2 deleted → "
    )
