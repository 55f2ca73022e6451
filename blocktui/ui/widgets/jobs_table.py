"""The live jobs table: one row per job, keyed by its JobKey, repainting only the cells that changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowKey

from blocktui.core.model import JobKey, JobState
from blocktui.core.views import JobView
from blocktui.planner import PlanStatus
from blocktui.ui.board import PlanInfo
from blocktui.ui.format import (
    STATE_STYLES,
    compact_limit,
    compact_rate,
    compact_size,
    format_duration,
    progress_bar,
    safe,
)

BAR_WIDTH = 8


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


def state_text(job: JobView, plan: PlanInfo | None) -> Text:
    """The state cell: the plan's word where it says more (queued, checkpoint), else the job's."""
    if plan is not None:
        if plan.status is PlanStatus.PAUSED:
            # On hosts that cannot hold a job, a pause is an abort that keeps what was copied.
            return Text("paused (checkpoint)" if plan.checkpoint_pause else "paused", style="yellow")
        if plan.status in _PLAN_STATES:
            word, style = _PLAN_STATES[plan.status]
            return Text(word, style=style)
    return Text(job.state.value, style=STATE_STYLES.get(job.state, ""))


def row_key(key: JobKey) -> str:
    """The table's row key for a job: stable for the job's life and unique across hosts."""
    # NUL cannot occur in a libvirt name or URI, so joining on it never makes two keys equal.
    return "\0".join(key)


def job_cells(job: JobView, host: str, plan: PlanInfo | None = None) -> tuple[Text, ...]:
    """Every cell of a job's row, as plain Text (host strings escaped, nothing parsed as markup).

    Args:
        plan: the open plan driving the job, if any: its state word and its own limit win.
    """
    state_style = STATE_STYLES.get(job.state, "")
    final = job.state.is_final
    known_total = job.end > 0
    bar_style = "red" if job.state is JobState.FAILED else state_style
    cells = {
        "host": Text(host, no_wrap=True),
        "domain": safe(job.key.domain),
        "disk": safe(job.key.disk),
        "kind": Text(job.kind.value),
        "state": state_text(job, plan),
        "chunk": Text(f"{job.chunk[0]}/{job.chunk[1]}" if job.chunk else ""),
        "bar": Text(progress_bar(job.fraction, BAR_WIDTH), style=bar_style),
        "percent": Text(f"{job.fraction * 100:.0f}%" if known_total else "—"),
        "done": Text(f"{compact_size(job.cur)}/{compact_size(job.end)}" if known_total else "—"),
        # A paused job (or one stopped at a checkpoint) moves at 0: its last rate would mislead.
        "rate": Text("—" if final or job.state is JobState.PAUSED else compact_rate(job.rate)),
        "limit": Text(compact_limit(plan.limit if plan is not None else job.bandwidth)),
        "eta": Text("—" if final or not known_total else format_duration(job.eta)),
        "why": safe(job.error or (plan.note if plan else "") or job.note, "red" if job.error else "dim"),
    }
    return tuple(_pad(cells[column.key], column) for column in COLUMNS)


def _pad(cell: Text, column: Column) -> Text:
    """Right-align numbers; give left-aligned text the leading blank that separates columns."""
    if column.right:
        # The blank stays even when the value fills the column, so neighbours never touch.
        return Text(f" {cell.plain}", style=cell.style, justify="right", no_wrap=True, overflow="ellipsis")
    padded = Text(" ", no_wrap=True, overflow="ellipsis")
    padded.append_text(cell)
    return padded


def _same(a: Text, b: Text) -> bool:
    return a.plain == b.plain and a.style == b.style and a.spans == b.spans


class JobsTable(DataTable[Text]):
    """Every job on every host; rows are added and removed by key, cells updated only on change."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, cell_padding=0)
        self._cells: dict[str, tuple[Text, ...]] = {}
        self._keys: dict[str, JobKey] = {}
        self._views: dict[str, tuple[JobView, str, PlanInfo | None]] = {}

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
        self, jobs: Sequence[JobView], hosts: dict[str, str], plans: Mapping[JobKey, PlanInfo] | None = None
    ) -> bool:
        """Make the rows match ``jobs``; return whether any row was added or removed.

        Args:
            hosts: short labels for host URIs.
            plans: the open plans, by job.
        """
        plans = plans or {}
        wanted = {row_key(job.key): job for job in jobs}
        selected = self.selected_key
        changed_rows = False
        with self.app.batch_update():
            for value in [v for v in self._cells if v not in wanted]:
                self.remove_row(value)
                del self._cells[value]
                del self._keys[value]
                self._views.pop(value, None)
                changed_rows = True
            for value, job in wanted.items():
                host = hosts.get(job.key.host, job.key.host)
                plan = plans.get(job.key)
                if self._views.get(value) == (job, host, plan):
                    continue  # finished and idle jobs: nothing to rebuild or compare
                self._views[value] = (job, host, plan)
                cells = job_cells(job, host, plan)
                old = self._cells.get(value)
                if old is None:
                    self.add_row(*cells, key=value)
                    self._keys[value] = job.key
                    changed_rows = True
                else:
                    for column, before, after in zip(COLUMNS, old, cells, strict=True):
                        if not _same(before, after):
                            self.update_cell(value, column.key, after, update_width=False)
                self._cells[value] = cells
        if changed_rows and selected is not None and row_key(selected) in self._cells:
            # Removing rows above the cursor would otherwise move it to another job.
            self.select(selected)
        return changed_rows

    def key_for(self, row: RowKey) -> JobKey | None:
        """The job shown in a row."""
        return self._keys.get(row.value or "")
