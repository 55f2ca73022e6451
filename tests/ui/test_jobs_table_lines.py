"""The jobs table keeps each row's drawn line: what it shows must be what DataTable draws afresh."""

from __future__ import annotations

from dataclasses import replace

from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Input

from blocktui.core.model import JobKey, JobKind, JobState
from blocktui.core.views import JobView
from blocktui.ui.widgets.jobs_table import JobsTable

GIB = 1024**3


class TableApp(App[None]):
    """The jobs table alone, with a field to move the focus to (no header that ticks)."""

    def compose(self) -> ComposeResult:
        yield JobsTable(id="jobs")
        yield Input(id="field")


def running(number: int) -> JobView:
    return JobView(
        key=JobKey("qemu:///system", f"vm{number:02d}", "vda"), kind=JobKind.PULL, state=JobState.ACTIVE,
        cur=number * GIB // 8, end=GIB, remaining=GIB - number * GIB // 8, fraction=number / 8,
        rate=50.0 * 1024**2, eta=float(10 + number), elapsed=2.0, bandwidth=100 * 1024**2, error=None,
        note="", history=(),
    )  # fmt: skip


async def assert_drawn_afresh(pilot: Pilot[None]) -> None:
    """The screen now equals the screen drawn after the table forgot every line it kept."""
    await pilot.pause()
    kept = pilot.app.export_screenshot()
    pilot.app.query_one(JobsTable).notify_style_update()  # forget every kept line
    await pilot.pause()
    assert pilot.app.export_screenshot() == kept


async def test_kept_lines_follow_cells_cursor_hover_focus_and_removed_rows() -> None:
    app = TableApp()
    async with app.run_test(size=(120, 16)) as pilot:
        table = app.query_one(JobsTable)
        field = app.query_one(Input)
        field.cursor_blink = False
        jobs = [running(number) for number in range(6)]
        table.sync(jobs, {}, now=0.0)
        table.focus()
        await assert_drawn_afresh(pilot)

        await pilot.press("down", "down")  # the cursor moves off one row and onto another
        await assert_drawn_afresh(pilot)

        jobs[3] = replace(jobs[3], cur=jobs[3].cur + GIB // 16, fraction=jobs[3].fraction + 1 / 16)
        table.sync(jobs, {}, now=2.0)  # one row's progress moves, the others stay
        await assert_drawn_afresh(pilot)

        await pilot.hover(JobsTable, offset=(3, 5))  # the mouse points at a row
        await assert_drawn_afresh(pilot)
        await pilot.press("up")  # a key puts the hover away
        await assert_drawn_afresh(pilot)

        field.focus()  # the cursor row turns to its unfocused look
        await assert_drawn_afresh(pilot)

        table.sync(jobs[1:], {}, now=4.0)  # a row above goes: every row below moves up a line
        await assert_drawn_afresh(pilot)
        assert table.row_count == 5
