"""Helpers for dashboard tests: the fake scenario behind a real Session, on a clock only tests move."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.pilot import Pilot
from textual.widgets import Input

from blocktui.backends.fake import FakeBackend, demo_backends, demo_jobs, demo_outcomes
from blocktui.session import Session
from blocktui.ui.app import BlocktuiApp


@dataclass
class ManualClock:
    """A monotonic clock that moves only when a test says so: rates and durations stay fixed."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Scenario:
    """The fake hosts, the real session over them, and its clock."""

    backends: list[FakeBackend]
    session: Session
    clock: ManualClock = field(default_factory=ManualClock)

    @property
    def alpha(self) -> FakeBackend:
        return self.backends[0]

    @property
    def beta(self) -> FakeBackend:
        return self.backends[1]


def make_scenario(*, readonly: bool = False, outcomes: bool = True) -> Scenario:
    """Open a session on the demo hosts, with running jobs and (optionally) three finished ones."""
    clock = ManualClock()
    backends = demo_backends()
    session = Session(backends, readonly=readonly, poll_interval=0.05, clock=clock)
    session.open()
    demo_jobs(backends)
    session.step()
    if outcomes:
        clock.now += 2.0
        demo_outcomes(backends)
        session.step()
    return Scenario(backends, session, clock)


def still_app(scenario: Scenario) -> BlocktuiApp:
    """An app that never polls: the test shows the session's snapshot itself, so frames are fixed."""
    return BlocktuiApp(scenario.session, poll=False)


async def settle(pilot: Pilot[int]) -> None:
    """Show the session's current snapshot and stop cursor blink, so screenshots do not flicker."""
    app = pilot.app
    assert isinstance(app, BlocktuiApp)
    await pilot.pause()
    app.main.show(app.session.snapshot())
    await pilot.pause()
    for field_ in app.screen.query(Input):
        field_.cursor_blink = False
    await pilot.pause()
