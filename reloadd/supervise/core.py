"""What the supervisor knows, and the one place its state changes.

``SupervisorCore`` holds the loop's facts (grouped: the next start, stdin, the config files, the
marks of one restart) and ``transition``, the only writer of the state, which checks each
change with machine.py. The parts built on it (generations.py, terminal.py, changes.py, and
loop.py on top) add what the loop does; each may call only the parts below it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..host.app_output import AppOutput
from ..host.control import Committed, ControlServer, Echoes
from ..host.hooks import Hooks
from ..host.hot import SoftReload
from ..host.stdin import AppStdin
from ..host.system import Ladder, System, Tree, Watching
from ..host.watch.bursts import Burst
from ..host.watch.watcher import WatchReport
from ..output import out
from ..setup.plan import Plan
from . import policy
from .delay import Delay
from .feedback import Feedback, Outcome
from .machine import STOPPING, WITH_TREE, State, check


@dataclass
class Timing:
    """Wall-clock marks of one restart, for the benchmarks (``-V --log-format json``)."""

    first_change: float = 0.0
    group_closed: float = 0.0
    stop_begin: float = 0.0
    stopped: float = 0.0


@dataclass
class NextStart:
    """What the next generation's start follows from; taken (and reset) by each start."""

    changes: set[str] = field(default_factory=set)  # decides what the warm process may keep
    fresh: bool = False  # a restart without changed files (rs, SIGHUP, config): nothing preloaded
    old_ports: set[int] = field(default_factory=set)  # the old generation's ports: wait until they are free


@dataclass
class Stdin:
    """reloadd's stdin: whether it reads it (``rs``), and the pipe the rest goes on to the app through."""

    app: AppStdin
    reads: bool = False
    ready: bool = False  # select saw input; handle_stdin reads it
    paused: bool = False  # in the background: reading the terminal waits until we are in front


@dataclass(frozen=True)
class ConfigFiles:
    """The config files of the running plan, and those that would be read if they appeared."""

    files: frozenset[str]
    candidates: frozenset[str]

    @property
    def watched(self) -> frozenset[str]:
        """A change to one of these needs the whole burst to decide."""
        return self.files | self.candidates


class SupervisorCore:
    def __init__(self, plan: Plan, system: System, replan: Optional[Callable[[], Plan]] = None) -> None:
        self.system = system
        self.replan = replan
        self.state = State.IDLE
        self.tree: Optional[Tree] = None  # set exactly in WITH_TREE states
        self.ladder: Optional[Ladder] = None  # set exactly in STOPPING states
        self.exit_code: Optional[int] = None
        self.last_status = 0
        self.incoming: deque[WatchReport] = deque()  # appended by the watcher thread, taken by the loop
        self.burst = Burst()
        self.delay = Delay(0.0)
        self.backoff_until: Optional[float] = None
        self.crash_policy = policy.CrashPolicy()
        self.timing = Timing()
        self.next = NextStart()
        self.watcher: Optional[Watching] = None
        self.terminal = self.system.terminal()
        self.stdin = Stdin(AppStdin())
        self.soft = SoftReload()
        self.hooks = Hooks(plan.settings.events, plan.env, plan.settings.event_timeout, self.system)
        self.control: Optional[ControlServer] = None  # `reloadd agent` says "batch committed" here
        self.echoes = Echoes()  # what a committed batch wrote: the watcher's later report of it is no change
        self.feedback = Feedback()  # committed batches waiting to hear what they did to the app
        self.output: Optional[AppOutput] = None  # the apps' output passed on: crash lines and --logs for sync
        self.warm = self.system.warm()
        self.warm_ready = False
        self._apply(plan)

    def transition(
        self,
        new: State,
        why: str,
        tree: Optional[Tree] = None,
        ladder: Optional[Ladder] = None,
    ) -> None:
        """The only writer of the state (and of the tree and ladder that go with it)."""
        check(self.state, new, why)
        out.detail(f"state: {self.state.value} -> {new.value}: {why}")
        self.state = new
        self.tree = (tree or self.tree) if new in WITH_TREE else None
        self.ladder = (ladder or self.ladder) if new in STOPPING else None
        if new is not State.BACKOFF:
            self.backoff_until = None

    def _exit(self, status: int, why: str) -> None:
        self.exit_code = status
        self.transition(State.EXITED, why)

    def _apply(self, plan: Plan) -> None:
        self.plan = plan
        settings = plan.settings
        self.watching = settings.watching
        self.stdin.reads = (
            self.watching and settings.stdin and settings.restartable is not False and self.system.interactive_stdin()
        )
        self.rules = plan.rules
        self.soft.configure(settings.hot, plan.cwd)
        self.delay.seconds = settings.delay / 1000
        self.hooks.commands = dict(settings.events)
        self.hooks.base_env = dict(plan.env)
        self.hooks.timeout = settings.event_timeout
        self.config = ConfigFiles(frozenset(map(str, plan.files)), frozenset(map(str, plan.candidates)))
        self.warm.configure(settings.warm and self.watching)

    def tell(self, outcomes: list[tuple[Committed, Outcome]]) -> None:
        """What synced batches did to the app, to the agents waiting to hear it (feedback.py)."""
        for batch, outcome in outcomes:
            if self.control is not None:
                self.control.reply(batch, outcome)
