"""What the fleet figures read off the dashboard's screen, and how late a row is against its host.

Pure functions of screen lines and timed samples (unit-tested): the tree's listing per host, the
jobs table's ``done`` column per host, and the lag of a row behind the host's own progress.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from blocktui.ui.format import compact_size
from blocktui.ui.widgets.job_row import COLUMNS, fit

#: The tree pane's width in cells (``#tree`` in app.tcss), borders included.
TREE_WIDTH = 46
#: A host's node in the tree: its label, then its state (``fleet-3 connected``).
_HOST = re.compile(
    r"\b(fleet-\d+) (?:connected|connecting|reconnecting|disconnected|needs|not answering|read)"
)
_DOMAIN = re.compile(r"\b(vm-\d+) running\b")
#: A jobs-table row of a lab domain's pull: host cell, domain, disk, kind, state ... done/total.
_ROW = re.compile(
    r"^\W*(?P<host>\S+)\s+vm-\d+\s+vda\s+pull\s+(?P<state>\w+).*?\s(?P<done>[\d.]+[BKMGT])/\S+\s"
)
_UNITS = "BKMGT"


def listed(lines: Sequence[str]) -> dict[str, set[str]]:
    """The running domains the tree shows under each host it shows (the header line skipped)."""
    found: dict[str, set[str]] = {}
    host: str | None = None
    for line in lines[1:]:
        if "done/total" in line:
            break  # the jobs table's header: the tree is above it
        pane = line[:TREE_WIDTH]
        if head := _HOST.search(pane):
            host = head[1]
            found.setdefault(host, set())
        elif host is not None and (domain := _DOMAIN.search(pane)):
            found[host].add(domain[1])
    return found


def all_listed(lines: Sequence[str], wanted: Mapping[str, set[str]]) -> bool:
    """Whether the tree lists every domain of every host in ``wanted``."""
    shown = listed(lines)
    return all(domains <= shown.get(host, set()) for host, domains in wanted.items())


def row_label(host: str) -> str:
    """What the jobs table's host column shows for ``host`` (long names end in an ellipsis)."""
    return fit(host, COLUMNS[0]).strip()


def done_cells(lines: Sequence[str], hosts: Sequence[str]) -> dict[str, str]:
    """The ``done`` cell (``37M``) of each active row whose host cell names one of ``hosts`` alone."""
    labels: dict[str, str | None] = {}
    for host in hosts:
        label = row_label(host)
        labels[label] = None if label in labels else host  # two hosts, one label: neither is read
    cells: dict[str, str] = {}
    for line in lines:
        row = _ROW.match(line)
        if row and row["state"] == "active" and (named := labels.get(row["host"])) is not None:
            cells[named] = row["done"]
    return cells


def shown_bytes(cell: str) -> float:
    """The size a ``compact_size`` cell stands for (``37M`` is 37 MiB)."""
    return float(cell[:-1]) * (1 << 10 * _UNITS.index(cell[-1]))


@dataclass(frozen=True)
class Shown:
    """One value a row showed: from the read that drew it to the read that replaced it."""

    cell: str
    since: float
    until: float


def spans(samples: Sequence[tuple[float, str]], end: float) -> list[Shown]:
    """Each value a row showed, from ``(time read, cell)`` samples in time order (the last: to ``end``)."""
    shown: list[Shown] = []
    for at, cell in samples:
        if shown and shown[-1].cell == cell:
            continue
        if shown:
            shown[-1] = replace(shown[-1], until=at)
        shown.append(Shown(cell, at, end))
    return shown


def lateness(shown: Shown, truth: Sequence[tuple[float, int]]) -> float:
    """Seconds the row still showed ``shown`` after the host's progress had left it behind.

    ``truth`` is the host's own ``cur`` read at times in order; the host has moved on at the first
    read whose value, drawn as the table draws it, is larger than the cell. 0 when it never was.
    """
    value = shown_bytes(shown.cell)
    for at, cur in truth:
        if shown_bytes(compact_size(cur)) > value:
            return max(0.0, shown.until - at)
        if at >= shown.until:
            break
    return 0.0


def worst_lag(
    screen: Mapping[str, Sequence[tuple[float, str]]],
    truth: Mapping[str, Sequence[tuple[float, int]]],
    start: float,
    end: float,
    stopped: float,
) -> tuple[float, str]:
    """The largest lateness of any value on screen between ``start`` and ``end``, and its host.

    ``stopped`` is when the screen stopped being read (the last value lasts until then).
    """
    worst, where = 0.0, ""
    for host, samples in screen.items():
        for shown in spans(samples, stopped):
            if shown.until < start or shown.since > end:
                continue
            late = lateness(shown, truth.get(host, ()))
            if late > worst:
                worst, where = late, host
    return worst, where
