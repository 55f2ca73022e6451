"""Messages the dashboard's workers post to the UI thread (``post_message`` is thread-safe)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from blocktui.core.allocation import DiskMap
from blocktui.core.model import JobKey
from blocktui.engine import Entry
from blocktui.ui.board import Board


@dataclass
class SnapshotReady(Message):
    """The poll worker finished one ``Planner.step``."""

    board: Board
    """Everything to show (jobs, queued plans, host policies), frozen at the end of the poll."""

    def can_replace(self, message: Message) -> bool:
        # A newer snapshot makes an older, still-queued one worthless: coalesce floods.
        return isinstance(message, SnapshotReady)


@dataclass
class ActionDone(Message):
    """A user's action on a host succeeded."""

    action: str
    """What was asked, in words ("abort web01/vda"), already safe to show."""


@dataclass
class ActionFailed(Message):
    """A user's action, or a poll, failed with an error meant for people."""

    action: str
    """What was asked, in words, already safe to show."""
    reason: str
    """The error's one-line message, already made visible (no control characters)."""


@dataclass
class HistoryLoaded(Message):
    """The history worker read the journal."""

    entries: list[Entry]
    """The newest rows first; host strings still raw (the view escapes them)."""


@dataclass
class DiskMapRead(Message):
    """A worker read where a disk's data lives (``Engine.disk_map``), or why it could not."""

    key: JobKey
    """The disk it was read for."""
    found: DiskMap | None
    """The map; None when it could not be read."""
    reason: str = ""
    """Why there is no map, one line, already made visible."""
