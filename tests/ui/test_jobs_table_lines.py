"""The jobs table repaints only the lines that changed: what it shows must be what a full repaint draws."""

from __future__ import annotations

from dataclasses import replace

from textual import on
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.strip import Strip
from textual.widgets import Input

from blocktui.core.model import JobKey, JobKind, JobState
from blocktui.core.views import JobView
from blocktui.ui.widgets.jobs_table import JobsTable, row_key

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
    """The screen now equals the screen drawn after the table repainted every line."""
    await pilot.pause()
    kept = pilot.app.export_screenshot()
    pilot.app.query_one(JobsTable).refresh()  # every line drawn again
    await pilot.pause()
    assert pilot.app.export_screenshot() == kept


async def test_repainted_lines_follow_cells_cursor_hover_focus_and_removed_rows() -> None:
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


class CountingTable(JobsTable):
    """The jobs table, noting which of its lines are painted."""

    def __init__(self) -> None:
        super().__init__(id="jobs")
        self.painted: list[int] = []

    def render_line(self, y: int) -> Strip:
        self.painted.append(y)
        return super().render_line(y)


class CountingApp(App[None]):
    def compose(self) -> ComposeResult:
        yield CountingTable()


async def test_an_update_repaints_only_the_lines_whose_cells_changed() -> None:
    app = CountingApp()
    async with app.run_test(size=(120, 16)) as pilot:
        table = app.query_one(CountingTable)
        jobs = [running(number) for number in range(40)]  # more rows than fit
        table.sync(jobs, {}, now=0.0)
        await pilot.pause()

        table.painted.clear()
        jobs[3] = replace(jobs[3], cur=jobs[3].cur + GIB // 16, fraction=jobs[3].fraction + 1 / 16)
        jobs[30] = replace(jobs[30], rate=75.0 * 1024**2)  # out of sight
        jobs[5] = replace(jobs[5], elapsed=jobs[5].elapsed + 1)  # nothing it shows moved
        table.sync(jobs, {}, now=2.0)
        await pilot.pause()
        assert table.painted == [1 + 3]  # below the header, the fourth row only

        await pilot.press("end")  # scrolled down: the out-of-sight row shows its new rate
        await pilot.pause()
        assert str(table.get_cell(row_key(jobs[30].key), "rate")).strip() == "75M/s"
        lines = table.render_lines(table.size.region)
        assert "75M/s" in lines[1 + 30 - table.scroll_offset.y].text


class KeysApp(App[None]):
    """The jobs table, noting the jobs its cursor lands on."""

    def __init__(self) -> None:
        super().__init__()
        self.highlighted: list[JobKey | None] = []

    def compose(self) -> ComposeResult:
        yield JobsTable(id="jobs")

    @on(JobsTable.Highlighted)
    def note(self, message: JobsTable.Highlighted) -> None:
        self.highlighted.append(message.key)


async def test_keys_and_clicks_move_the_cursor_and_say_so() -> None:
    app = KeysApp()
    async with app.run_test(size=(120, 12)) as pilot:  # a header and 11 rows show
        table = app.query_one(JobsTable)
        jobs = [running(number) for number in range(30)]
        table.sync(jobs, {}, now=0.0)
        table.focus()
        await pilot.pause()
        assert table.selected_key == jobs[0].key
        assert app.highlighted == [jobs[0].key]  # the first row took the cursor

        await pilot.press("down", "down")
        assert table.selected_key == jobs[2].key
        await pilot.press("pagedown")
        assert table.selected_key == jobs[13].key
        await pilot.press("end")
        assert table.selected_key == jobs[29].key
        assert table.scroll_offset.y == 30 - 11  # the last row shows at the bottom
        await pilot.press("pageup")
        assert table.selected_key == jobs[18].key
        await pilot.press("home")
        assert table.selected_key == jobs[0].key and table.scroll_offset.y == 0

        await pilot.click(JobsTable, offset=(5, 4))  # the fourth row, under the header
        assert table.selected_key == jobs[3].key
        await pilot.click(JobsTable, offset=(5, 0))  # the header selects nothing
        assert table.selected_key == jobs[3].key
        await pilot.pause()
        assert app.highlighted[-1] == jobs[3].key
        assert len(app.highlighted) == 8  # once for every move, none for the header

        table.sync(jobs[:2] + jobs[3:], {}, now=1.0)  # a row above the cursor goes
        assert table.selected_key == jobs[3].key and table.row_count == 29
        table.sync(jobs[:2] + jobs[4:], {}, now=2.0)  # the job under the cursor goes
        await pilot.pause()
        assert table.selected_key == jobs[4].key  # the row that took its place
        assert app.highlighted[-1] == jobs[4].key


async def test_a_long_reason_is_cut_short_on_screen_but_read_whole() -> None:
    app = TableApp()
    async with app.run_test(size=(120, 8)) as pilot:
        table = app.query_one(JobsTable)
        failed = replace(running(0), state=JobState.FAILED, error="No space left on device")
        table.sync([failed], {}, now=0.0)
        await pilot.pause()
        assert str(table.get_cell(row_key(failed.key), "why")) == "No space left on device"
        line = table.render_lines(table.size.region)[1].text
        assert line.rstrip().endswith(" No space…")


async def test_rows_of_a_silent_host_keep_their_values_and_say_stale_until_it_answers() -> None:
    app = TableApp()
    async with app.run_test(size=(140, 8)) as pilot:
        table = app.query_one(JobsTable)
        jobs = [running(1), replace(running(2), key=JobKey("qemu+ssh://far/system", "vm02", "vda"))]
        table.sync(jobs, {}, now=0.0, stale=frozenset({"qemu+ssh://far/system"}))
        await pilot.pause()
        far, near = (table.get_row_at(i) for i in (1, 0))
        assert "stale" in far[-1].plain and far[-5].plain.strip() == "256M/1.0G"
        assert "stale" not in near[-1].plain
        table.sync(jobs, {}, now=1.0)  # it answers again: the mark goes
        await pilot.pause()
        assert "stale" not in table.get_row_at(1)[-1].plain
        await assert_drawn_afresh(pilot)
