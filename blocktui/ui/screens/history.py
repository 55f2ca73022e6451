"""The journal as a table: every job blocktui started or saw, newest first.

The journal is read in a thread worker (SQLite may wait on another blocktui's write); the screen
only renders what the worker posts.
"""

from __future__ import annotations

import sqlite3
import time
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from blocktui.core.errors import BlocktuiError
from blocktui.core.model import JobState
from blocktui.core.text import counted, visible
from blocktui.engine import Entry, Journal
from blocktui.ui.format import STATE_STYLES, compact_size, host_label, safe
from blocktui.ui.messages import ActionFailed, HistoryLoaded

#: How many journal rows the view reads.
HISTORY_LIMIT = 500

#: (key, header, width); the last column takes what is left.
COLUMNS = (
    ("host", "host", 10),
    ("domain", "domain", 14),
    ("disk", "disk", 6),
    ("kind", "kind", 6),
    ("state", "state", 11),
    ("done", "done", 7),
    ("checkpoints", "ckpt", 5),
    ("started", "started", 15),
    ("ended", "ended", 9),
    ("why", "error / note", 33),
)


def _when(seconds: float | None, fmt: str) -> str:
    return "—" if seconds is None else time.strftime(fmt, time.localtime(seconds))


def entry_cells(entry: Entry) -> tuple[Text, ...]:
    """One journal row as plain Text cells (host strings escaped, never markup)."""
    try:
        style = STATE_STYLES.get(JobState(entry.status), "")
    except ValueError:  # an open plan: queued, gap, paused, ...
        style = "dim"
    cells = (
        Text(host_label(entry.host), no_wrap=True),
        safe(entry.domain),
        safe(entry.disk),
        Text(visible(entry.kind)),
        Text(visible(entry.status), style=style),
        Text(compact_size(entry.bytes_done), justify="right"),
        Text(str(len(entry.checkpoints)) if entry.chunk or entry.checkpoints else "—", justify="right"),
        Text(_when(entry.started_at, "%m-%d %H:%M:%S")),
        Text(_when(entry.ended_at, "%H:%M:%S")),
        safe(entry.error or entry.note, "red" if entry.error else "dim"),
    )
    padded: list[Text] = []
    for cell in cells:
        if cell.justify == "right":
            padded.append(Text(f" {cell.plain}", style=cell.style, justify="right", no_wrap=True))
        else:
            blank = Text(" ", no_wrap=True, overflow="ellipsis")
            blank.append_text(cell)
            padded.append(blank)
    return tuple(padded)


class HistoryScreen(Screen[None]):
    """A table of the journal; ``r`` reads it again, escape goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,h", "close", "Back", id="history.close", tooltip="Back to the dashboard"),
        Binding("r", "reload", "Reload", id="history.reload", tooltip="Read the journal again"),
    ]

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self._journal = journal

    def compose(self) -> ComposeResult:
        yield Static(
            Text.assemble(("Job history", "bold"), ("  from the journal, newest first", "dim")), id="hosts"
        )
        yield DataTable[Text](id="history", cursor_type="row", zebra_stripes=True, cell_padding=0)
        yield Static(Text("reading the journal …", style="dim"), id="history-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#history", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(Text(f" {label}"), width=width, key=key)
        table.focus()
        self._load()

    @work(thread=True, exclusive=True, group="history", exit_on_error=False)
    def _load(self) -> None:
        try:
            entries = self._journal.history(HISTORY_LIMIT)
        except (BlocktuiError, sqlite3.Error) as exc:
            self.post_message(ActionFailed("history", visible(str(exc))))
            return
        self.post_message(HistoryLoaded(entries))

    @on(HistoryLoaded)
    def _loaded(self, message: HistoryLoaded) -> None:
        table = self.query_one("#history", DataTable)
        table.clear()
        for entry in message.entries:
            table.add_row(*entry_cells(entry), key=str(entry.id))
        count = len(message.entries)
        line = self.query_one("#history-status", Static)
        line.update(Text(f"{counted(count, 'job')} in the journal", style="dim"))
        line.tooltip = Text(visible(str(self._journal.path)))

    @on(ActionFailed)
    def _failed(self, message: ActionFailed) -> None:
        self.notify(f"{message.action}: {message.reason}", severity="error", timeout=8, markup=False)

    def action_reload(self) -> None:
        """Read the journal again."""
        self._load()

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.dismiss(None)
