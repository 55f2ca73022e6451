"""The live jobs table: one line per job, drawn straight from its cells; only changed lines repaint."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from blocktui.core.model import JobKey
from blocktui.core.views import JobView
from blocktui.ui.board import PlanInfo
from blocktui.ui.widgets.job_row import (
    COLUMNS,
    ROW_WIDTH,
    Cell,
    RowLook,
    eta_cell,
    row_cells,
    row_key,
)

__all__ = ["ETA_EVERY", "CellDoesNotExist", "JobsTable", "row_key"]

#: Lines above the first row: the header.
HEADER_HEIGHT = 1

#: Seconds between repaints of a running job's ETA: rate and progress follow every poll, but an ETA
#: ticking down twice a second only costs a repaint of every row and tells nobody anything new.
ETA_EVERY = 1.0

_ETA = next(index for index, column in enumerate(COLUMNS) if column.key == "eta")
_COLUMN_INDEX = {column.key: index for index, column in enumerate(COLUMNS)}


class CellDoesNotExist(LookupError):
    """No such row or column in the jobs table."""


class JobsTable(ScrollView):
    """Every job on every host, keyed by job; a row cursor; a fixed header line.

    Rows keep their cells as plain (characters, style) pairs and each visible line is drawn from
    them into segments: nothing goes through a console or markup, and an update touches only the
    lines whose cells changed.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "cursor_page_up", "Page up", show=False),
        Binding("pagedown", "cursor_page_down", "Page down", show=False),
        Binding("home", "cursor_first", "First row", show=False),
        Binding("end", "cursor_last", "Last row", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "jobs-table--header",
        "jobs-table--cursor",
        "jobs-table--even-row",
        "jobs-table--odd-row",
    }

    # DataTable's look, which the dashboard had before this widget drew its own lines.
    DEFAULT_CSS = """
    JobsTable {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .jobs-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .jobs-table--header {
                background-tint: $foreground 5%;
            }
        }
        &:dark > .jobs-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .jobs-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .jobs-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .jobs-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .jobs-table--odd-row {
        }
        & > .jobs-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class Highlighted(Message):
        """The job under the cursor changed (None: the table is empty)."""

        def __init__(self, table: JobsTable, key: JobKey | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> JobsTable:
            """The table whose cursor moved."""
            return self.table

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        #: The row under the cursor (0 when the table is empty).
        self.cursor_row = 0
        self._order: list[str] = []  # row keys, top to bottom
        self._index: dict[str, int] = {}
        self._rows: dict[str, _Row] = {}
        self._eta_shown_at = -ETA_EVERY
        self._look: RowLook | None = None
        self.virtual_size = Size(ROW_WIDTH, HEADER_HEIGHT)

    # -- what the table shows -----------------------------------------------------------------

    @property
    def row_count(self) -> int:
        """How many jobs the table shows."""
        return len(self._order)

    @property
    def selected_key(self) -> JobKey | None:
        """The job under the cursor, if any."""
        if not self._order:
            return None
        return self._rows[self._order[self.cursor_row]].key

    def get_cell(self, row: str, column: str) -> Text:
        """What one cell says, whole, with its style (a narrow column shows it cut short).

        Args:
            row: the row's key (``row_key``).
            column: a column's key.
        """
        if row not in self._rows or column not in _COLUMN_INDEX:
            raise CellDoesNotExist(f"no cell {column!r} in row {row!r}")
        plain, style = self._rows[row].shown()[_COLUMN_INDEX[column]]
        return Text(plain, style=style)

    def get_row_at(self, index: int) -> tuple[Text, ...]:
        """What every cell of the row at ``index`` (from the top, from 0) says."""
        if not 0 <= index < len(self._order):
            raise CellDoesNotExist(f"no row {index}")
        return tuple(Text(plain, style=style) for plain, style in self._rows[self._order[index]].shown())

    def select(self, key: JobKey) -> None:
        """Move the cursor to this job's row, if it is shown."""
        index = self._index.get(row_key(key))
        if index is not None:
            self.move_cursor(index)

    # -- updates ------------------------------------------------------------------------------

    def sync(
        self,
        jobs: Sequence[JobView],
        hosts: Mapping[str, str],
        plans: Mapping[JobKey, PlanInfo] | None = None,
        *,
        now: float | None = None,
        stale: frozenset[str] = frozenset(),
    ) -> bool:
        """Make the rows match ``jobs``; return whether any row was added or removed.

        New rows go at the bottom; a row keeps its place while its job lives. Only visible lines
        whose cells changed are repainted; a row out of sight builds its cells when next shown.
        A running job's ETA is redrawn at most every ``ETA_EVERY`` seconds (all rows at once); a
        new row, or a change of state, shows its ETA at once.

        Args:
            hosts: short labels for host URIs.
            plans: the open plans, by job.
            now: the monotonic time (tests pass their own).
            stale: hosts not answering now: their rows keep their last values, marked stale.
        """
        plans = plans or {}
        now = time.monotonic() if now is None else now
        eta_due = now - self._eta_shown_at >= ETA_EVERY
        eta_moved = False
        wanted = {row_key(job.key): job for job in jobs}
        selected = self.selected_key
        gone = [value for value in self._order if value not in wanted]
        for value in gone:
            del self._rows[value]
        added = False
        changed: set[str] = set()
        for value, job in wanted.items():
            view = (job, hosts.get(job.key.host, job.key.host), plans.get(job.key), job.key.host in stale)
            row = self._rows.get(value)
            if row is None:
                self._rows[value] = _Row(job.key, view, eta_cell(job))
                self._order.append(value)
                added = eta_moved = True
            elif not (row.settled and row.view == view):  # finished and idle jobs stop here
                eta = eta_cell(job)
                # Keep a running countdown shown until it is due; everything else is drawn now.
                held = not eta_due and _ticking(row.eta, eta)
                eta_moved = eta_moved or (not held and eta != row.eta)
                row.update(view, row.eta if held else eta, settled=not held)
                changed.add(value)
        if eta_moved:
            self._eta_shown_at = now
        if gone or added:
            self._reorder(selected)
        else:
            self._repaint(changed)
        if self.selected_key != selected:
            self.post_message(self.Highlighted(self, self.selected_key))
        return bool(gone or added)

    def _reorder(self, selected: JobKey | None) -> None:
        """After rows came or went: index them again; the selected job keeps the cursor."""
        self._order = [value for value in self._order if value in self._rows]
        self._index = {value: index for index, value in enumerate(self._order)}
        self.virtual_size = Size(ROW_WIDTH, len(self._order) + HEADER_HEIGHT)
        # Rows above the cursor may have gone: it follows its job, or stays where it was.
        index = self._index.get(row_key(selected)) if selected is not None else None
        self.cursor_row = max(0, min(self.cursor_row if index is None else index, len(self._order) - 1))
        self.refresh()  # every line below a change moved
        self._show_row(self.cursor_row)

    def _repaint(self, values: set[str]) -> None:
        """Repaint the visible lines whose cells changed."""
        if not values:
            return
        top = self.scroll_offset.y
        order = self._order
        for index in range(top, min(top + self._page(), len(order))):
            value = order[index]
            if value in values and self._rows[value].rebuild():
                self.refresh_line(index + HEADER_HEIGHT)

    # -- the cursor ---------------------------------------------------------------------------

    def move_cursor(self, index: int) -> None:
        """Put the cursor on the row at ``index`` (clamped to the rows) and scroll it into view."""
        index = max(0, min(index, len(self._order) - 1))
        if index != self.cursor_row:
            self.refresh_line(self.cursor_row + HEADER_HEIGHT)
            self.refresh_line(index + HEADER_HEIGHT)
            self.cursor_row = index
            self.post_message(self.Highlighted(self, self.selected_key))
        self._show_row(index)

    def _page(self) -> int:
        """How many rows fit under the header."""
        return max(1, self.scrollable_content_region.height - HEADER_HEIGHT)

    def _show_row(self, index: int) -> None:
        top = self.scroll_offset.y
        if index < top:
            self.scroll_to(y=index, animate=False)
        elif index >= top + self._page():
            self.scroll_to(y=index - self._page() + 1, animate=False)

    def action_cursor_up(self) -> None:
        """Up a row."""
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        """Down a row."""
        self.move_cursor(self.cursor_row + 1)

    def action_cursor_page_up(self) -> None:
        """Up a screenful."""
        self.move_cursor(self.cursor_row - self._page())

    def action_cursor_page_down(self) -> None:
        """Down a screenful."""
        self.move_cursor(self.cursor_row + self._page())

    def action_cursor_first(self) -> None:
        """To the first row."""
        self.move_cursor(0)

    def action_cursor_last(self) -> None:
        """To the last row."""
        self.move_cursor(len(self._order) - 1)

    def on_click(self, event: events.Click) -> None:
        """A click on a row selects it (the header, the scrollbars and below the rows do not)."""
        region = self.scrollable_content_region
        line = event.screen_offset.y - region.y
        index = line - HEADER_HEIGHT + self.scroll_offset.y
        if region.contains_point(event.screen_offset) and line >= HEADER_HEIGHT and index < len(self._order):
            self.move_cursor(index)

    # -- painting -----------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        self._look = self._new_look()  # read the styles once a pass, not once a line
        try:
            return super().render_lines(crop)
        finally:
            self._look = None

    def _new_look(self) -> RowLook:
        component = self.get_component_rich_style
        return RowLook(
            self.rich_style,
            header=component("jobs-table--header"),
            even=component("jobs-table--even-row"),
            odd=component("jobs-table--odd-row"),
            cursor=component("jobs-table--cursor"),
        )

    def render_line(self, y: int) -> Strip:
        look = self._look or self._new_look()
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y < HEADER_HEIGHT:
            return look.header_line(scroll_x, width)
        index = y - HEADER_HEIGHT + scroll_y
        if index >= len(self._order):
            return Strip.blank(width, look.base)
        kind = RowLook.CURSOR if index == self.cursor_row else index % 2
        return look.line(self._rows[self._order[index]].shown(), kind, scroll_x, width)

    def on_focus(self) -> None:
        self.refresh()  # the cursor and header take their focused look

    def on_blur(self) -> None:
        self.refresh()


#: What a row is drawn from: the job, its host's label, its plan, whether its host is silent.
RowView = tuple[JobView, str, PlanInfo | None, bool]


class _Row:
    """One job's row: what it was last given and the cells it shows, built when first needed."""

    __slots__ = ("cells", "eta", "key", "settled", "stale", "view")

    def __init__(self, key: JobKey, view: RowView, eta: Cell) -> None:
        self.key = key
        self.view = view
        #: The ETA cell shown, which may lag the job's (see ``ETA_EVERY``).
        self.eta = eta
        #: False while a held-back ETA is still to be shown.
        self.settled = True
        self.cells: tuple[Cell, ...] = ()
        #: Whether ``cells`` are yet to be built from ``view``.
        self.stale = True

    def update(self, view: RowView, eta: Cell, *, settled: bool) -> None:
        """Take a new view of the job; its cells are built again when next shown."""
        self.view, self.eta, self.settled, self.stale = view, eta, settled, True

    def shown(self) -> tuple[Cell, ...]:
        """The cells as drawn: the job's own, but the ETA shown."""
        if self.stale:
            cells = row_cells(*self.view)
            self.cells = (*cells[:_ETA], self.eta, *cells[_ETA + 1 :])
            self.stale = False
        return self.cells

    def rebuild(self) -> bool:
        """Build the cells now; whether they differ from the ones last built."""
        before = self.cells
        return self.shown() != before


def _ticking(old: Cell, new: Cell) -> bool:
    """Whether only a running job's countdown moved in the ETA cell (not a change of state)."""
    return old != new and old[0] != "—" and new[0] != "—"
