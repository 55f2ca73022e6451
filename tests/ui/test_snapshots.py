"""Screenshots of the dashboard on the fake scenario: a deterministic fake (layout, not streams)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from demo_hosts import CLICK_DOMAIN, HOSTILE_DOMAIN
from fake_backend import GiB, MiB
from textual.pilot import Pilot
from textual.widgets import DataTable, Static
from ui_support import (
    SIZE,
    Scenario,
    close_scenario,
    make_scenario,
    select_disk,
    settle,
    still_app,
    wait_for,
)

from blocktui.core.model import JobKey
from blocktui.core.scheduler import HostPolicy
from blocktui.ui.app import BlocktuiApp
from blocktui.ui.widgets.jobs_table import JobsTable

SnapCompare = Callable[..., bool]


def test_main_screen(snap_compare: SnapCompare, scenario: Scenario) -> None:
    assert snap_compare(still_app(scenario), terminal_size=SIZE, run_before=settle)


async def estimated(pilot: Pilot[int]) -> None:
    """Wait for the dialog's pre-flight line (it is read in a worker)."""
    await wait_for(
        pilot, lambda: "reading" not in str(pilot.app.screen.query_one("#estimate", Static).render())
    )


def test_stream_dialog(snap_compare: SnapCompare, scenario: Scenario) -> None:
    async def open_dialog(pilot: Pilot[int]) -> None:
        await settle(pilot)
        assert isinstance(pilot.app, BlocktuiApp)
        select_disk(pilot.app, scenario.alpha.uri, "web01", "vdb")  # its job failed: streamable
        await pilot.press("s")
        await pilot.press("tab", *"2G", "tab", "5")  # chunks of 2 GiB, 5 s apart
        await estimated(pilot)
        await settle(pilot)

    assert snap_compare(still_app(scenario), terminal_size=SIZE, run_before=open_dialog)


def test_stream_dialog_rejects_bad_input(snap_compare: SnapCompare, scenario: Scenario) -> None:
    async def type_bad(pilot: Pilot[int]) -> None:
        await settle(pilot)
        assert isinstance(pilot.app, BlocktuiApp)
        select_disk(pilot.app, scenario.alpha.uri, "web01", "vdb")
        await pilot.press("s")
        await pilot.press(*"12q", "tab", *"4X")
        await estimated(pilot)
        await settle(pilot)

    assert snap_compare(still_app(scenario), terminal_size=SIZE, run_before=type_bad)


def test_abort_confirmation(snap_compare: SnapCompare, scenario: Scenario) -> None:
    async def ask(pilot: Pilot[int]) -> None:
        await settle(pilot)
        await pilot.press("a")  # the cursor is on the first job: web01/vda, running
        await settle(pilot)

    assert snap_compare(still_app(scenario), terminal_size=SIZE, run_before=ask)


def test_help_screen(snap_compare: SnapCompare, scenario: Scenario) -> None:
    assert snap_compare(still_app(scenario), terminal_size=SIZE, press=["question_mark"], run_before=settle)


def test_hostile_names(snap_compare: SnapCompare, scenario: Scenario) -> None:
    """A job on a domain whose name holds escapes, a bidi override and markup shows them escaped."""
    scenario.session.start_stream(scenario.beta.uri, HOSTILE_DOMAIN, "vd\x1bz")
    scenario.session.step()
    key = JobKey(scenario.beta.uri, HOSTILE_DOMAIN, "vd\x1bz")

    async def select(pilot: Pilot[int]) -> None:
        await settle(pilot)
        pilot.app.screen.query_one(JobsTable).focus()
        pilot.app.screen.query_one(JobsTable).select(key)
        await settle(pilot)

    assert snap_compare(still_app(scenario), terminal_size=SIZE, run_before=select)


def test_plans_queued_chunked_and_paused(snap_compare: SnapCompare, tmp_path: Path) -> None:
    """Max-active 1 on beta: a chunked stream runs (chunk 2 of 4), one waits queued; alpha's job is
    paused at a checkpoint; the header shows both hosts' policies (guard off: no timing here)."""
    scenario = make_scenario(journal_dir=tmp_path, guard=False)
    beta, planner = scenario.beta, scenario.planner
    planner.set_policy(HostPolicy(max_active=1, budget=300 * MiB), beta.uri)
    planner.add_stream(JobKey(beta.uri, "mail", "sda"), chunk=512 * MiB, bandwidth=50 * MiB)
    planner.add_stream(JobKey(beta.uri, CLICK_DOMAIN, "vda"))
    planner.pause(JobKey(scenario.alpha.uri, "web01", "vda"))
    for _ in range(4):  # start, hold, stop at the checkpoint, record it
        planner.step()

    async def select(pilot: Pilot[int]) -> None:
        await settle(pilot)
        assert isinstance(pilot.app, BlocktuiApp)
        pilot.app.main.query_one(JobsTable).focus()
        pilot.app.main.query_one(JobsTable).select(JobKey(beta.uri, "mail", "sda"))
        await settle(pilot)

    try:
        assert snap_compare(still_app(scenario), terminal_size=SIZE, run_before=select)
    finally:
        close_scenario(scenario)


def test_history_screen(snap_compare: SnapCompare, scenario: Scenario) -> None:
    planner = scenario.planner
    planner.add_stream(JobKey(scenario.beta.uri, "mail", "sda"), chunk=GiB)
    planner.step()
    planner.cancel(JobKey(scenario.beta.uri, "mail", "sda"))

    async def open_history(pilot: Pilot[int]) -> None:
        await settle(pilot)
        await pilot.press("h")
        # The journal is read in a worker: wait for its rows, however busy the machine is.
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#history", DataTable).row_count > 0)
        await settle(pilot)

    assert snap_compare(still_app(scenario), terminal_size=SIZE, run_before=open_history)
