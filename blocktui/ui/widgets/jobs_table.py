"""The live jobs table: one row per job, keyed by its JobKey; only changed cells and rows are redrawn."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from rich.text import Text
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowKey

from blocktui.core.model import JobKey, JobState
from blocktui.core.text import visible
from blocktui.core.views import JobView
from blocktui.engine import PlanStatus
from blocktui.ui.board import PlanInfo
from blocktui.ui.format import (
    STATE_STYLES,
    compact_limit,
    compact_rate,
    compact_size,
    format_duration,
    progress_bar,
)

BAR_WIDTH = 8

#: Lines above the first row: the header.
HEADER_HEIGHT = 1


class Column(NamedTuple):
    """One column: its key, header and fixed width (fixed so updates never re-measure).

    Widths include one leading blank: the table has no cell padding, which would cost two cells a
    column and leave no room for the reason at 120 columns.
    """

    key: str
    label: str
    width: int
    right: bool = False


COLUMNS = (
    Column("host", "host", 8),
    Column("domain", "domain", 12),
    Column("disk", "disk", 6),
    Column("kind", "kind", 5),
    Column("state", "state", 20),
    Column("chunk", "chunk", 6, right=True),
    Column("bar", "progress", BAR_WIDTH + 1),
    Column("percent", "%", 5, right=True),
    Column("done", "done/total", 12, right=True),
    Column("rate", "rate", 8, right=True),
    Column("limit", "limit", 8, right=True),
    Column("eta", "ETA", 7, right=True),
    Column("why", "reason", 10),
)

#: Plan states that say more than the job's own state, and their styles.
_PLAN_STATES: dict[PlanStatus, tuple[str, str]] = {
    PlanStatus.QUEUED: ("queued", "dim"),
    PlanStatus.STOPPING: ("stopping", "yellow"),
    PlanStatus.GAP: ("checkpoint", "yellow"),
}


#: A cell as the table shows it before it becomes rich Text: its characters and its one style.
Cell = tuple[str, str]

#: Seconds between repaints of a running job's ETA: rate and progress follow every poll, but an ETA
#: ticking down twice a second only costs a repaint of every row and tells nobody anything new.
ETA_EVERY = 1.0


def state_cell(job: JobView, plan: PlanInfo | None) -> Cell:
    """The state cell: the plan's word where it says more (queued, checkpoint), else the job's."""
    if plan is not None:
        if plan.status is PlanStatus.PAUSED:
            # On hosts that cannot hold a job, a pause is an abort that keeps what was copied.
            return ("paused (checkpoint)" if plan.checkpoint_pause else "paused", "yellow")
        if plan.status in _PLAN_STATES:
            return _PLAN_STATES[plan.status]
    return (job.state.value, STATE_STYLES.get(job.state, ""))


def state_text(job: JobView, plan: PlanInfo | None) -> Text:
    """The state cell as rich Text."""
    word, style = state_cell(job, plan)
    return Text(word, style=style)


def row_key(key: JobKey) -> str:
    """The table's row key for a job: stable for the job's life and unique across hosts."""
    # NUL cannot occur in a libvirt name or URI, so joining on it never makes two keys equal.
    return "\0".join(key)


def row_cells(job: JobView, host: str, plan: PlanInfo | None = None) -> tuple[Cell, ...]:
    """Every cell of a job's row as (characters, style), in column order: cheap to compare.

    Host strings are made visible here (control characters escaped); ``cell_text`` never parses
    them as markup.

    Args:
        plan: the open plan driving the job, if any: its state word and its own limit win.
    """
    state_style = STATE_STYLES.get(job.state, "")
    final = job.state.is_final
    known_total = job.end > 0
    why = job.error or (plan.note if plan else "") or job.note
    return (
        (host, ""),
        (visible(job.key.domain), ""),
        (visible(job.key.disk), ""),
        (job.kind.value, ""),
        state_cell(job, plan),
        (f"{job.chunk[0]}/{job.chunk[1]}" if job.chunk else "", ""),
        (progress_bar(job.fraction, BAR_WIDTH), "red" if job.state is JobState.FAILED else state_style),
        (f"{job.fraction * 100:.0f}%" if known_total else "—", ""),
        (f"{compact_size(job.cur)}/{compact_size(job.end)}" if known_total else "—", ""),
        # A paused job (or one stopped at a checkpoint) moves at 0: its last rate would mislead.
        ("—" if final or job.state is JobState.PAUSED else compact_rate(job.rate), ""),
        (compact_limit(plan.limit if plan is not None else job.bandwidth), ""),
        ("—" if final or not known_total else format_duration(job.eta), ""),
        (visible(why) if why else "", "red" if job.error else "dim"),
    )


def cell_text(cell: Cell, column: Column) -> Text:
    """A cell as rich Text: numbers right-aligned, text after the blank that separates columns."""
    plain, style = cell
    if column.right:
        # The blank stays even when the value fills the column, so neighbours never touch.
        return Text(f" {plain}", style=style, justify="right", no_wrap=True, overflow="ellipsis")
    text = Text(f" {plain}", no_wrap=True, overflow="ellipsis")
    if style and plain:
        text.stylize(style, 1)
    return text


def job_cells(job: JobView, host: str, plan: PlanInfo | None = None) -> tuple[Text, ...]:
    """Every cell of a job's row, as plain Text (host strings escaped, nothing parsed as markup)."""
    return tuple(
        cell_text(cell, column) for cell, column in zip(row_cells(job, host, plan), COLUMNS, strict=True)
    )


_ETA = next(index for index, column in enumerate(COLUMNS) if column.key == "eta")


class JobsTable(DataTable[Text]):
    """Every job on every host; rows are added and removed by key, cells updated only on change."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            id=id, cursor_type="row", zebra_stripes=True, cell_padding=0, header_height=HEADER_HEIGHT
        )
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._keys: dict[str, JobKey] = {}
        # What each row was last drawn from; None while a held-back ETA is still to be shown.
        self._views: dict[str, tuple[JobView, str, PlanInfo | None] | None] = {}
        self._eta_shown_at = -ETA_EVERY
        # Each row's last drawn line, with what it was drawn from (see render_line).
        self._lines: dict[str, tuple[tuple[Cell, ...] | None, tuple[object, ...], Strip]] = {}
        self._look: tuple[object, ...] | None = None

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(
                Text(column.label, justify="right") if column.right else Text(f" {column.label}"),
                width=column.width,
                key=column.key,
            )

    @property
    def selected_key(self) -> JobKey | None:
        """The job under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:  # the cursor sits beyond a row just removed
            return None
        return self._keys.get(key.value or "")

    def select(self, key: JobKey) -> None:
        """Move the cursor to this job's row, if it is shown."""
        value = row_key(key)
        if value in self._cells:
            self.move_cursor(row=self.get_row_index(value))

    def sync(
        self,
        jobs: Sequence[JobView],
        hosts: Mapping[str, str],
        plans: Mapping[JobKey, PlanInfo] | None = None,
        *,
        now: float | None = None,
    ) -> bool:
        """Make the rows match ``jobs``; return whether any row was added or removed.

        Only cells whose text or style changed are given to the table. A running job's ETA is
        redrawn at most every ``ETA_EVERY`` seconds (all rows at once); a new row, or a change of
        state, shows its ETA at once.

        Args:
            hosts: short labels for host URIs.
            plans: the open plans, by job.
            now: the monotonic time (tests pass their own).
        """
        plans = plans or {}
        now = time.monotonic() if now is None else now
        eta_due = now - self._eta_shown_at >= ETA_EVERY
        eta_moved = False
        wanted = {row_key(job.key): job for job in jobs}
        selected = self.selected_key
        changed_rows = False
        with self.app.batch_update():
            for value in [v for v in self._cells if v not in wanted]:
                self.remove_row(value)
                self._forget(value)
                changed_rows = True
            for value, job in wanted.items():
                host = hosts.get(job.key.host, job.key.host)
                plan = plans.get(job.key)
                view = (job, host, plan)
                if self._views.get(value) == view:
                    continue  # finished and idle jobs: nothing to build or compare
                cells = row_cells(job, host, plan)
                old = self._cells.get(value)
                if old is None:
                    self.add_row(
                        *(cell_text(cell, column) for cell, column in zip(cells, COLUMNS, strict=True)),
                        key=value,
                    )
                    self._keys[value] = job.key
                    self._cells[value] = cells
                    self._views[value] = view
                    changed_rows = eta_moved = True
                    continue
                if cells == old:
                    self._views[value] = view
                    continue
                held = not eta_due and _ticking(old, cells)
                if held:
                    # Keep the ETA shown until it is due; everything else is drawn now.
                    cells = (*cells[:_ETA], old[_ETA], *cells[_ETA + 1 :])
                else:
                    eta_moved = eta_moved or old[_ETA] != cells[_ETA]
                for column, before, after in zip(COLUMNS, old, cells, strict=True):
                    if before != after:
                        self.update_cell(value, column.key, cell_text(after, column), update_width=False)
                self._cells[value] = cells
                self._views[value] = None if held else view
        if eta_moved:
            self._eta_shown_at = now
        if changed_rows and selected is not None and row_key(selected) in self._cells:
            # Removing rows above the cursor would otherwise move it to another job.
            self.select(selected)
        return changed_rows

    def _forget(self, value: str) -> None:
        del self._cells[value]
        del self._keys[value]
        self._views.pop(value, None)
        self._lines.pop(value, None)

    def key_for(self, row: RowKey) -> JobKey | None:
        """The job shown in a row."""
        return self._keys.get(row.value or "")

    # -- painting -----------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        # What every line of this pass is drawn with: read once, not once per line.
        self._look = (
            self.size.width,
            self.scroll_offset.x,
            self.rich_style,
            self.get_pseudo_class_state(),
            self.show_cursor,
            self.zebra_stripes,
        )
        try:
            return super().render_lines(crop)
        finally:
            self._look = None

    def render_line(self, y: int) -> Strip:
        # DataTable forgets every drawn line whenever any cell changes, so one changed cell
        # redrew every visible row (most of the dashboard's CPU). A row's line is kept here until
        # its cells, its place, the cursor on it or the table's look change. The header and the
        # row under the mouse (or where it last was) are always drawn by DataTable: whether that
        # row shows the hover is DataTable's own state.
        row_index = y + self.scroll_offset.y - HEADER_HEIGHT
        look = self._look
        if look is None or y < HEADER_HEIGHT or row_index == self.hover_row:
            return super().render_line(y)
        try:
            value = self.coordinate_to_cell_key(Coordinate(row_index, 0)).row_key.value or ""
        except CellDoesNotExist:  # below the last row
            return super().render_line(y)
        cells = self._cells.get(value)
        place = (row_index, row_index == self.cursor_row, look)
        kept = self._lines.get(value)
        if kept is not None and kept[0] == cells and kept[1] == place:
            return kept[2]
        line = super().render_line(y)
        self._lines[value] = (cells, place, line)
        return line

    def notify_style_update(self) -> None:
        # A theme or CSS change restyles every row: draw them all again.
        self._lines.clear()
        super().notify_style_update()


def _ticking(old: tuple[Cell, ...], new: tuple[Cell, ...]) -> bool:
    """Whether only a running job's countdown moved in the ETA cell (not a change of state)."""
    return old[_ETA] != new[_ETA] and old[_ETA][0] != "—" and new[_ETA][0] != "—"
