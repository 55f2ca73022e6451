"""Helpers for dashboard tests: fake hosts behind a real Session and Planner, on a clock tests move."""

from __future__ import annotations

import html
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from demo_hosts import demo_backends, demo_jobs, demo_outcomes
from fake_backend import FakeBackend
from rich.cells import cell_len
from textual.pilot import Pilot
from textual.widgets import Input

from blocktui.core.model import JobKey
from blocktui.core.scheduler import HostPolicy
from blocktui.engine.facade import Engine
from blocktui.engine.journal import Journal
from blocktui.engine.planner import Planner
from blocktui.engine.session import Session
from blocktui.ui.app import BlocktuiApp
from blocktui.ui.board import read_board
from blocktui.ui.widgets.domain_tree import DomainTree, Place
from blocktui.ui.widgets.jobs_table import CellDoesNotExist, JobsTable, row_key

#: The journal's wall-clock time when the test clock reads 0 (2024-05-01 10:00 UTC).
WALL_CLOCK_START = 1_714_557_600.0

#: The terminal every dashboard test uses.
SIZE = (120, 40)


@dataclass
class ManualClock:
    """A monotonic clock that moves only when a test says so: rates and durations stay fixed."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Scenario:
    """The fake hosts, the real engine over them (journal in a private folder), the clock."""

    backends: list[FakeBackend]
    session: Session
    engine: Engine
    clock: ManualClock = field(default_factory=ManualClock)

    @property
    def planner(self) -> Planner:
        return self.engine.planner

    @property
    def alpha(self) -> FakeBackend:
        return self.backends[0]

    @property
    def beta(self) -> FakeBackend:
        return self.backends[1]


def make_scenario(
    *,
    readonly: bool = False,
    outcomes: bool = True,
    journal_dir: Path | None = None,
    guard: bool | None = None,
    policy: HostPolicy | None = None,
) -> Scenario:
    """Open a session on the demo hosts, with running jobs and (optionally) three finished ones.

    Args:
        journal_dir: where the planner's journal lives (default: a new temporary folder).
        guard: the planner's guard (None: where the host's QEMU needs it, which is every fake host).
    """
    clock = ManualClock()
    backends = demo_backends()
    session = Session(backends, readonly=readonly, poll_interval=0.05, clock=clock)
    session.open()
    demo_jobs(backends)
    session.step()
    if outcomes:
        clock.now += 2.0
        demo_outcomes(backends)
        session.step()  # the outcomes, at once
        session.step()  # then the poll of the jobs still running
    folder = journal_dir or Path(tempfile.mkdtemp(prefix="blocktui-ui-"))
    # The journal's wall clock follows the test clock, so history rows show fixed times.
    journal = Journal(folder / "journal.sqlite3", clock=lambda: WALL_CLOCK_START + clock.now)
    engine = Engine(session, journal, policy=policy, guard=guard, clock=clock)
    return Scenario(backends, session, engine, clock)


def close_scenario(scenario: Scenario) -> None:
    """Let hung calls go, then close the planner, its journal and the session."""
    for backend in scenario.backends:
        backend.unhang()
    scenario.engine.close()


def still_app(scenario: Scenario) -> BlocktuiApp:
    """An app that never polls: the test shows the planner's snapshot itself, so frames are fixed."""
    return BlocktuiApp(scenario.engine, poll=False)


async def settle(pilot: Pilot[int]) -> None:
    """Show the session's current snapshot and stop cursor blink, so screenshots do not flicker."""
    app = pilot.app
    assert isinstance(app, BlocktuiApp)
    await pilot.pause()
    app.main.show(read_board(app.engine, app.engine.snapshot()))
    await pilot.pause()
    # The selected disk's allocation map is read in a thread: wait for it, so frames are fixed.
    await wait_for(pilot, lambda: app.main.allocation.reading is None)
    await pilot.pause()
    for field_ in app.screen.query(Input):
        field_.cursor_blink = False
    await pilot.pause()


def live_app(scenario: Scenario) -> BlocktuiApp:
    """An app whose poll worker runs, as in real use."""
    return BlocktuiApp(scenario.engine)


@contextmanager
def hung(backend: FakeBackend) -> Iterator[FakeBackend]:
    """Whatever the test does to ``backend`` (``hang()``), it answers again when the block ends."""
    try:
        yield backend
    finally:
        backend.unhang()


async def wait_for(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Let the app run until ``condition`` holds (workers run in threads, so this takes real time).

    The deadline is for a loaded machine: the wait ends as soon as the condition holds.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the dashboard")
        await pilot.pause(0.02)


#: One run of text in an SVG screenshot: its x, its width and its line (Rich's export_svg).
_SVG_TEXT = re.compile(
    r'<text [^>]*\bx="([\d.]+)"[^>]*\btextLength="([\d.]+)"[^>]*-line-(\d+)\)">(.*?)</text>'
)


def screen_text(app: BlocktuiApp) -> list[str]:
    """Every character on the screen, line by line, read from the app's own screenshot.

    The screenshot is what the terminal is sent: any control character that reached the screen
    is in it. Runs of blanks are not written in the SVG; they come back as spaces.
    """
    lines: dict[int, str] = {}
    for x, length, line, escaped in _SVG_TEXT.findall(app.export_screenshot()):
        text = html.unescape(escaped).replace("\xa0", " ")  # the SVG writes every space as &#160;
        column = round(float(x) * len(text) / float(length))  # x over the width of one cell
        shown = lines.get(int(line), "")
        lines[int(line)] = shown + " " * (column - cell_len(shown)) + text
    return [lines.get(number, "") for number in range(app.size.height)]


def job_state(app: BlocktuiApp, key: JobKey) -> str | None:
    """The state cell of a job's row, as drawn."""
    return cell(app, key, "state")


def cell(app: BlocktuiApp, key: JobKey, column: str) -> str | None:
    """One cell of a job's row, as drawn (None: no such row)."""
    table = app.main.query_one(JobsTable)
    try:
        return str(table.get_cell(row_key(key), column)).strip()
    except CellDoesNotExist:
        return None


def select_disk(app: BlocktuiApp, host: str, domain: str, disk: str) -> None:
    tree = app.main.query_one(DomainTree)
    tree.focus()
    assert tree.select_place(Place(host, domain, disk))


async def select_job(pilot: Pilot[int], app: BlocktuiApp, key: JobKey) -> None:
    """Point at a job's row the way a user does: focus the jobs table, then move to the row."""
    table = app.main.query_one(JobsTable)
    table.focus()
    await pilot.pause()
    table.select(key)
