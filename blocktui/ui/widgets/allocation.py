"""The detail pane's allocation strip: where the selected disk's data lives, as wide as the pane."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from rich.text import Text
from textual.widget import Widget

from blocktui.core.allocation import CELLS, DiskMap, Where
from blocktui.ui.format import format_size

#: How each state is drawn; the characters alone say it too (the legend names them).
STYLES = {Where.LOCAL: "green", Where.BACKING: "yellow", Where.UNALLOCATED: "dim"}
_BY_CELL = {cell: where for where, cell in CELLS.items()}
_NAMES = {Where.LOCAL: "local", Where.BACKING: "backing", Where.UNALLOCATED: "unallocated"}


@dataclass(frozen=True, slots=True)
class MapShown:
    """A read's outcome: the map, or why there is none (already made visible)."""

    found: DiskMap | None
    reason: str = ""


def strip_text(found: DiskMap, width: int) -> Text:
    """Two lines: the strip with the percent local, then the legend with each state's bytes."""
    text = Text(no_wrap=True, overflow="crop")
    percent = f" {found.percent_text()}"
    for char, run in groupby(found.strip(max(1, width - len(percent)))):
        text.append("".join(run), style=STYLES[_BY_CELL[char]])
    text.append(percent, style="bold")
    text.append("\n")
    for index, (where, count) in enumerate(found.totals().items()):
        if index:
            text.append("  ")
        text.append(CELLS[where], style=STYLES[where])
        text.append(f" {_NAMES[where]} {format_size(count)}", style="dim")
    return text


class AllocationStrip(Widget):
    """Where the data lives; redrawn only when the map, the reason or the width changes."""

    DEFAULT_CSS = "AllocationStrip { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._found: DiskMap | None = None
        self._reason = ""

    def show(self, found: DiskMap | None, reason: str = "") -> None:
        """Show this map, or the reason there is none (plain text, made visible by the caller)."""
        if (found, reason) != (self._found, self._reason):
            # A layout of the whole screen costs tens of ms: only when the height changes.
            layout = (found is None) != (self._found is None)
            self._found, self._reason = found, reason
            self.refresh(layout=layout)

    def render(self) -> Text:
        if self._found is None:
            # One line (the pane maximized shows it whole): the height changes only with a map.
            reason = self._reason or "reading the allocation map…"
            return Text(f"data: {reason}", style="dim", no_wrap=True, overflow="ellipsis")
        return strip_text(self._found, self.content_size.width)
