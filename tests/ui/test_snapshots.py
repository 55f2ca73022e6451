"""Screenshots of the dashboard on the fake scenario: a deterministic fake (layout, not streams)."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot
from ui_support import Scenario, settle, still_app

from blocktui.backends.fake import HOSTILE_DOMAIN
from blocktui.core.model import JobKey
from blocktui.ui.widgets.jobs_table import JobsTable

SIZE = (120, 40)

SnapCompare = Callable[..., bool]


def test_main_screen(snap_compare: SnapCompare, scenario: Scenario) -> None:
    assert snap_compare(still_app(scenario), terminal_size=SIZE, run_before=settle)


def test_stream_dialog(snap_compare: SnapCompare, scenario: Scenario) -> None:
    async def open_dialog(pilot: Pilot[int]) -> None:
        await settle(pilot)
        await pilot.press("tab")  # the tree: its cursor starts on the first host
        await pilot.press("down", "down", "down")  # alpha → web01 → vda → vdb (its job failed)
        await pilot.press("s")
        await settle(pilot)

    assert snap_compare(still_app(scenario), terminal_size=SIZE, run_before=open_dialog)


def test_stream_dialog_rejects_bad_bandwidth(snap_compare: SnapCompare, scenario: Scenario) -> None:
    async def type_bad(pilot: Pilot[int]) -> None:
        await settle(pilot)
        await pilot.press("tab", "down", "down", "down", "s")
        await pilot.press(*"12q")
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
