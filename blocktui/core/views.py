"""Immutable snapshots of the tracker's state, handed from the poll thread to whoever renders them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from blocktui.core.model import Domain, HostInfo, JobKey, JobKind, JobState
from blocktui.core.tracker import JobRecord


@dataclass(frozen=True, slots=True)
class JobView:
    """One row of the jobs table, frozen at the moment of a poll.

    Attributes:
        rate: smoothed bytes/s while the job runs; None once it ended or before two samples.
        eta: seconds left at that rate; None when it cannot be told.
        elapsed: seconds from first sight to the end, or to the snapshot while running.
        history: recent smoothed rates, oldest first, for a sparkline.
        chunk: (k, n) while a chunked stream runs chunk k of n.
    """

    key: JobKey
    kind: JobKind
    state: JobState
    cur: int
    end: int
    remaining: int
    fraction: float
    rate: float | None
    eta: float | None
    elapsed: float
    bandwidth: int
    error: str | None
    note: str
    history: tuple[float, ...]
    chunk: tuple[int, int] | None = None

    @classmethod
    def of(cls, record: JobRecord, now: float, chunk: tuple[int, int] | None = None) -> JobView:
        """Freeze a tracker record."""
        return cls(
            key=record.key,
            kind=record.kind,
            state=record.state,
            cur=record.cur,
            end=record.end,
            remaining=record.remaining,
            fraction=record.fraction,
            rate=record.rate,
            eta=record.eta_at(now),
            elapsed=record.elapsed(now),
            bandwidth=record.bandwidth,
            error=record.error,
            note=record.note,
            history=tuple(record.meter.history),
            chunk=chunk,
        )


@dataclass(frozen=True, slots=True)
class HostJobs:
    """One host's jobs as a planner step reads them: which are live, and the views of its plans'.

    A view of every job would cost each step as much as a whole snapshot; what the step needs of
    the others is only whether they still run.

    Attributes:
        live: every job of the host that has not ended.
        views: the views of the jobs asked for, by key (a job the session does not have is absent).
    """

    live: frozenset[JobKey]
    views: Mapping[JobKey, JobView]

    def others_live(self, key: JobKey) -> bool:
        """Whether another job of ``key``'s domain is live."""
        return any(k.domain == key.domain and k != key for k in self.live)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the dashboard shows, as of one poll."""

    hosts: tuple[HostInfo, ...]
    domains: tuple[Domain, ...]
    jobs: tuple[JobView, ...]
