"""The journal's rows as values: an entry (a job or plan) with its checkpoints, read from SQLite."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from blocktui.core.identity import DiskIdentity
from blocktui.core.windows import Window

#: The ``jobs`` columns an entry is made of, in the order ``COLUMNS`` selects them.
_NAMES = (
    "id", "host", "domain", "disk", "kind", "origin", "chain_before", "base", "bandwidth", "size",
    "chunk", "gap", "position", "status", "pause_requested", "owner", "started_at", "ended_at",
    "bytes_done", "error", "note", "identity", "window_offset", "window_length",
)  # fmt: skip

#: What ``entry_from_row`` reads: ``SELECT {COLUMNS} FROM jobs``.
COLUMNS = ", ".join(_NAMES)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A boundary a chunked stream stopped at."""

    seq: int
    boundary: int
    offset: int
    overshoot: int
    at: float


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal row with its checkpoints.

    Attributes:
        identity: what identified the disk when the plan was made (None on older rows).
    """

    id: int
    host: str
    domain: str
    disk: str
    kind: str
    origin: str
    chain_before: tuple[str, ...]
    base: str | None
    bandwidth: int
    size: int
    chunk: int
    gap: float
    position: float
    status: str
    pause_requested: bool
    owner: int | None
    started_at: float
    ended_at: float | None
    bytes_done: int
    error: str | None
    note: str
    checkpoints: tuple[Checkpoint, ...] = field(default=())
    identity: DiskIdentity | None = None
    #: The part of the disk a window plan copies; None for a whole-chain stream.
    window: Window | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``history --json`` record."""
        return {
            "id": self.id,
            "uri": self.host,
            "domain": self.domain,
            "disk": self.disk,
            "kind": self.kind,
            "origin": self.origin,
            "chain_before": list(self.chain_before),
            "base": self.base,
            "bandwidth": self.bandwidth,
            "size": self.size,
            "chunk": self.chunk,
            "gap": self.gap,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "bytes_done": self.bytes_done,
            "error": self.error,
            "note": self.note,
            "identity": None if self.identity is None else self.identity.as_json(),
            "window": None
            if self.window is None
            else {"offset": self.window.offset, "length": self.window.length},
            "checkpoints": [
                {"boundary": c.boundary, "offset": c.offset, "overshoot": c.overshoot, "at": c.at}
                for c in self.checkpoints
            ],
        }


def identity_text(identity: DiskIdentity | None) -> str | None:
    """The ``identity`` column's value."""
    return None if identity is None else json.dumps(identity.as_json())


def _identity(text: str | None) -> DiskIdentity | None:
    if not text:
        return None
    try:
        return DiskIdentity.from_json(json.loads(text))
    except ValueError:
        return None  # a damaged value proves nothing either way


def entry_from_row(row: tuple[Any, ...], checkpoints: list[Checkpoint]) -> Entry:
    """An entry from one row of ``SELECT {COLUMNS}``."""
    values = dict(zip(_NAMES, row, strict=True))
    values["chain_before"] = tuple(json.loads(values["chain_before"]))
    values["pause_requested"] = bool(values["pause_requested"])
    values["identity"] = _identity(values["identity"])
    offset, length = values.pop("window_offset"), values.pop("window_length")
    values["window"] = None if offset is None or length is None else Window(int(offset), int(length))
    return Entry(**values, checkpoints=tuple(checkpoints))
