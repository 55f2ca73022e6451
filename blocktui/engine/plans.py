"""A plan: one stream the planner drives, with where it is (``PlanStatus``) and its chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from blocktui.core.chunks import ChunkPlan
from blocktui.core.model import JobKey
from blocktui.core.windows import Window


class PlanStatus(StrEnum):
    """Where a plan is; journal rows carry the same words."""

    QUEUED = "queued"
    ACTIVE = "active"
    STOPPING = "stopping"  # held or paused at a boundary, checkpoint not yet recorded
    GAP = "gap"  # between chunks
    PAUSED = "paused"  # the user paused it (a checkpoint on libvirt)
    DONE = "done"


@dataclass
class Plan:
    """One stream the planner drives.

    Attributes:
        limit: the stream's own limit in bytes/s (0 = unlimited).
        chunk: the chunk size, 0 for a plain stream.
        boundary: where the current run stops (None: it runs to completion).
        checkpointed: the last boundary recorded in the journal; no boundary at or before it is
            stopped at or recorded again, however a new run's progress starts out.
        applied: the speed last set on the host (None before the job exists).
        going: the guard let the job end; it is not held again.
        cancel_requested: the user aborted it; the abort waits for the guard's turn.
        window: the part of the disk a window plan copies (None: the whole chain).
        by_filter: the window is read through a copy-on-read filter (a ``window`` job); otherwise
            it is a prefix, pulled up to its end and stopped there.
    """

    entry_id: int
    key: JobKey
    limit: int
    base: str | None
    chunk: int
    gap: float
    chain_before: tuple[str, ...]
    status: PlanStatus = PlanStatus.QUEUED
    size: int = 0
    boundary: int | None = None
    checkpointed: int = 0
    applied: int | None = None
    pause_requested: bool = False
    stop_reason: str = ""
    resume_at: float = 0.0
    going: bool = False
    cancel_requested: bool = False
    abort_sent: bool = False
    last_cur: int = 0
    note: str = ""
    overshoots: list[int] = field(default_factory=list)
    window: Window | None = None
    by_filter: bool = False

    @property
    def pulls_prefix(self) -> bool:
        """A prefix window copied by a pull that must stop at the window's end."""
        return self.window is not None and not self.by_filter

    def chunks(self) -> ChunkPlan | None:
        """The chunk plan, once the disk size is known."""
        if self.chunk <= 0 or self.size <= 0:
            return None
        return ChunkPlan(self.size, self.chunk)

    def next_boundary(self, cur: int) -> int | None:
        """Where a run at offset ``cur`` stops: the first boundary past both ``cur`` and the last
        checkpoint (a new pull's progress may start below what is already copied). A prefix
        window always stops at its end, however far a new pull's progress starts."""
        if self.window is not None:
            return self.window.end if self.pulls_prefix else None
        chunks = self.chunks()
        return chunks.stop_at(max(cur, self.checkpointed)) if chunks else None

    @property
    def running(self) -> bool:
        """A job exists on the host for this plan (or is being stopped)."""
        return self.status in (PlanStatus.ACTIVE, PlanStatus.STOPPING)
