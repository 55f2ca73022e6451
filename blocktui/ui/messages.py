"""Messages the dashboard's workers post to the UI thread (``post_message`` is thread-safe)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from blocktui.core.views import Snapshot


@dataclass
class SnapshotReady(Message):
    """The poll worker finished one ``Session.step``."""

    snapshot: Snapshot
    """Everything to show, frozen at the end of the poll."""

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
