"""A jobs-table row: the columns, what each cell says as plain (characters, style), how a line is painted."""

from __future__ import annotations

from typing import NamedTuple

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

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
    format_eta,
    progress_bar,
)

BAR_WIDTH = 8


class Column(NamedTuple):
    """One column: its key, header and fixed width (fixed so updates never re-measure).

    Widths include one leading blank, so neighbours never touch without cell padding, which would
    cost two cells a column and leave no room for the reason at 120 columns.
    """

    key: str
    label: str
    width: int
    right: bool = False


COLUMNS = (
    Column("host", "host", 8),
    Column("domain", "domain", 12),
    Column("disk", "disk", 6),
    Column("kind", "kind", 7),
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

#: Cells across all columns.
ROW_WIDTH = sum(column.width for column in COLUMNS)

#: Plan states that say more than the job's own state, and their styles.
_PLAN_STATES: dict[PlanStatus, tuple[str, str]] = {
    PlanStatus.QUEUED: ("queued", "dim"),
    PlanStatus.STOPPING: ("stopping", "yellow"),
    PlanStatus.GAP: ("checkpoint", "yellow"),
}

#: A cell as the table keeps it: its characters and its one style. Cheap to compare and to draw.
Cell = tuple[str, str]


def state_cell(job: JobView, plan: PlanInfo | None) -> Cell:
    """The state cell: the plan's word where it says more (queued, checkpoint), else the job's."""
    if plan is not None:
        if plan.status is PlanStatus.PAUSED:
            # On hosts that cannot hold a job, a pause is an abort that keeps what was copied.
            return ("paused (checkpoint)" if plan.checkpoint_pause else "paused", "yellow")
        if plan.status in _PLAN_STATES:
            return _PLAN_STATES[plan.status]
    return (job.state.value, STATE_STYLES.get(job.state, ""))


def row_key(key: JobKey) -> str:
    """The table's row key for a job: stable for the job's life and unique across hosts."""
    # NUL cannot occur in a libvirt name or URI, so joining on it never makes two keys equal.
    return "\0".join(key)


def row_cells(job: JobView, host: str, plan: PlanInfo | None = None, stale: bool = False) -> tuple[Cell, ...]:
    """Every cell of a job's row as (characters, style), in column order.

    Host strings are made visible here (control characters escaped); nothing downstream parses
    them as markup.

    Args:
        plan: the open plan driving the job, if any: its state word and its own limit win.
        stale: the job's host is not answering: the row keeps its last values and says so.
    """
    state_style = STATE_STYLES.get(job.state, "")
    final = job.state.is_final
    known_total = job.end > 0
    why = job.error or (plan.note if plan else "") or job.note
    if stale and not final:
        why_cell = (f"stale · {visible(why)}" if why else "stale: host silent", "bold yellow")
    else:
        why_cell = (visible(why) if why else "", "red" if job.error else "dim")
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
        eta_cell(job),
        why_cell,
    )


def eta_cell(job: JobView) -> Cell:
    """The ETA cell alone: the table decides from it whether a row's countdown may move yet."""
    return ("—" if job.state.is_final or job.end <= 0 else format_eta(job.eta), "")


def fit(plain: str, column: Column) -> str:
    """A cell's characters filling its column exactly: after the blank that separates columns,
    numbers pushed right, and an ellipsis where the value is too long."""
    # The blank stays even when the value fills the column, so neighbours never touch.
    shown = f" {plain}"
    length = cell_len(shown)
    if length > column.width:
        return set_cell_size(shown, column.width - 1) + "…"
    if column.right:
        return " " * (column.width - length) + shown
    return shown + " " * (column.width - length)


class RowLook:
    """The styles one painting pass draws lines with, and each line drawn from its cells."""

    EVEN, ODD, CURSOR = 0, 1, 2

    def __init__(self, base: Style, *, header: Style, even: Style, odd: Style, cursor: Style) -> None:
        self.base = base
        self.header = base + header
        self.rows = (base + even, base + odd, base + cursor)
        # The cursor's colour wins over a cell's own, so the row reads as one bar.
        self.after = (Style.null(), Style.null(), Style.from_color(color=cursor.color))
        self.styled: dict[tuple[int, str], Style] = {}

    def header_line(self, scroll_x: int, width: int) -> Strip:
        """The header: each column's label, aligned like its values."""
        segments = [Segment(fit(column.label, column), self.header) for column in COLUMNS]
        return self.strip(segments, self.header, scroll_x, width)

    def line(self, cells: tuple[Cell, ...], kind: int, scroll_x: int, width: int) -> Strip:
        """A row's line: ``kind`` is EVEN, ODD (the zebra stripes) or CURSOR."""
        styled = self.styled
        segments = []
        for (plain, style), column in zip(cells, COLUMNS, strict=True):
            key = (kind, style)
            if key not in styled:
                # A style name of ours parsed as a style; the cell's characters are never parsed.
                styled[key] = self.rows[kind] + Style.parse(style) + self.after[kind]
            segments.append(Segment(fit(plain, column), styled[key]))
        return self.strip(segments, self.rows[kind], scroll_x, width)

    def strip(self, segments: list[Segment], row: Style, scroll_x: int, width: int) -> Strip:
        """The part of a line that shows; the row's own style carries on beyond the last column."""
        if scroll_x == 0 and width >= ROW_WIDTH:  # the usual case: no crop, one strip
            if width > ROW_WIDTH:
                segments.append(Segment(" " * (width - ROW_WIDTH), row))
            return Strip(segments, width)
        return Strip(segments, ROW_WIDTH).crop_extend(scroll_x, scroll_x + width, row)
