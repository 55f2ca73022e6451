"""Turns polls and events from backends into one truthful record per block job.

The tracker is where "how did it end" is decided. Backends report what they see: a job's
counters while it runs, an event when it ends. Events can be missed (a job that ends while
the client is disconnected sends none), so a job that vanishes without one is settled from the
disk's backing chain afterwards: completed only if the layers it pulled are gone, unknown otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from blocktui.core.model import (
    BlockJob,
    ChainLayer,
    Disk,
    JobEvent,
    JobKey,
    JobKind,
    JobState,
)
from blocktui.core.rate import RateMeter


@dataclass
class JobRecord:
    """Everything known about one block job, kept after it ends until the user clears it.

    Attributes:
        chain_before: the disk's backing chain when the job was first seen or started, used to
            tell a completed pull from one that vanished unfinished.
        vanished: the backend stopped listing the job and no final event has arrived yet; the
            owner should look at the disk's chain and call ``JobTracker.settle``.
        note: a short remark shown beside the state ("checkpoint", "ended while disconnected").
        checkpointed: the job was stopped on purpose (``expect_stop``) and is expected to be
            absent from the host until a new job starts on the disk; polls do not settle it.
    """

    key: JobKey
    kind: JobKind
    state: JobState
    started: float
    cur: int = 0
    end: int = 0
    bandwidth: int = 0
    error: str | None = None
    note: str = ""
    ended: float | None = None
    chain_before: tuple[ChainLayer, ...] | None = None
    base: str | None = None
    vanished: bool = False
    vanished_at: float | None = None
    job_id: str | None = None
    checkpointed: bool = False
    meter: RateMeter = field(default_factory=RateMeter)

    @property
    def remaining(self) -> int:
        """Bytes still to copy."""
        return max(0, self.end - self.cur)

    @property
    def fraction(self) -> float:
        """Progress from 0.0 to 1.0."""
        if self.state is JobState.COMPLETED:
            return 1.0
        if self.end <= 0:
            return 0.0
        return min(1.0, self.cur / self.end)

    @property
    def rate(self) -> float | None:
        """Measured bytes/s, never above the limit, while the job runs; None once ended or unmeasured."""
        if self.state.is_final:
            return None
        return self.meter.rate

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate as of the last sample, or None when unknown or not running."""
        return self.eta_at(None)

    def eta_at(self, now: float | None) -> float | None:
        """Seconds left at the current rate as of ``now`` (None: the last sample), counting down
        between samples."""
        if self.state is not JobState.ACTIVE or self.end <= 0:
            return None
        return self.meter.eta(self.remaining, now)

    def elapsed(self, now: float) -> float:
        """Seconds from first sight to the end (or to ``now`` while it runs)."""
        return (self.ended if self.ended is not None else now) - self.started

    def as_job(self) -> BlockJob:
        """The record as a plain job snapshot (for JSON output and the journal)."""
        return BlockJob(
            host=self.key.host,
            domain=self.key.domain,
            disk=self.key.disk,
            kind=self.kind,
            state=self.state,
            cur=self.cur,
            end=self.end,
            bandwidth=self.bandwidth,
            error=self.error,
            job_id=self.job_id,
        )


class JobTracker:
    """One record per (host, domain, disk); fed by polls and events, settled from chains.

    Not thread-safe: one thread (the UI thread, or the CLI's main loop) owns it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[JobKey, JobRecord] = {}
        self._expected_stops: dict[JobKey, tuple[JobState, str]] = {}
        #: Final events applied so far, and the count when each disk's last one was.
        self._finals = 0
        self._final_events: dict[JobKey, int] = {}

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: JobKey) -> JobRecord | None:
        """The record for this disk, if any."""
        return self._records.get(key)

    def records(self) -> list[JobRecord]:
        """All records, in the order they were first seen."""
        return list(self._records.values())

    def __len__(self) -> int:
        return len(self._records)

    def mark(self) -> int:
        """Taken before starting a job, for ``started(since=...)``: final events applied so far."""
        return self._finals

    # -- writing ---------------------------------------------------------------------------

    def started(
        self,
        key: JobKey,
        kind: JobKind,
        *,
        chain_before: tuple[ChainLayer, ...] | None,
        bandwidth: int = 0,
        base: str | None = None,
        since: int | None = None,
    ) -> JobRecord:
        """Note that this client just started a job, so its row appears before the first poll.

        Args:
            since: ``mark()`` taken when the start was asked for. A final event applied
                after it is this job's outcome (it ended during the start, e.g. a window with
                nothing to read): that record stands.
        """
        current = self._records.get(key)
        ended_at = self._final_events.get(key)
        overtaken = since is not None and ended_at is not None and ended_at > since
        if current is not None and current.state.is_final and overtaken:
            return current
        record = self._new_record(key, kind, JobState.ACTIVE)
        record.chain_before = chain_before
        record.bandwidth = bandwidth
        record.meter.set_limit(bandwidth)
        record.base = base
        return record

    def expect_stop(self, key: JobKey, state: JobState, note: str) -> None:
        """The next cancellation of this job is deliberate (a checkpoint): record it as ``state``."""
        self._expected_stops[key] = (state, note)

    def observe_jobs(
        self,
        host: str,
        jobs: Iterable[BlockJob],
        *,
        chains: dict[JobKey, tuple[ChainLayer, ...]] | None = None,
        scope: set[JobKey] | None = None,
        grace: float = 0.0,
        excused: Collection[JobKey] = (),
    ) -> set[JobKey]:
        """Apply one poll of a host's jobs.

        Args:
            chains: the disks' backing chains, when the caller knows them, to remember for
                settling jobs first seen here.
            scope: the disks this poll looked at; None means every disk of the host. Only
                jobs in scope can be found missing.
            excused: disks the poll left out on purpose (not due): their jobs are not missing.
            grace: seconds a job must stay missing before it is returned for settling, so the
                backend's own completion event (normally milliseconds behind) decides first.

        Returns:
            The keys of jobs that were running and are no longer listed, with no final event:
            the caller should fetch those disks and call ``settle``.
        """
        now = self._clock()
        seen: set[JobKey] = set()
        for job in jobs:
            seen.add(job.key)
            record = self._records.get(job.key)
            if record is None or record.state.is_final:
                record = self._new_record(job.key, job.kind, job.state)
                if chains is not None:
                    record.chain_before = chains.get(job.key)
            self._apply_snapshot(record, job, now)
        vanished: set[JobKey] = set()
        for key, record in self._records.items():
            if key.host != host or key in seen or record.state.is_final:
                continue
            if (scope is not None and key not in scope) or key in excused:
                continue
            if record.state is JobState.QUEUED or record.checkpointed:
                continue
            if record.vanished_at is None:
                record.vanished_at = now
            if now - record.vanished_at >= grace:
                record.vanished = True
                vanished.add(key)
        return vanished

    def observe_event(self, event: JobEvent) -> JobRecord:
        """Apply a backend's state-change event."""
        now = self._clock()
        record = self._records.get(event.key)
        if record is None or (record.state.is_final and event.state is JobState.ACTIVE):
            record = self._new_record(event.key, event.kind, event.state)
        elif record.checkpointed and event.state is JobState.CANCELLED:
            # A repeat of the cancellation already read as a checkpoint (libvirt can send two).
            return record
        if event.kind is not JobKind.UNKNOWN:
            record.kind = event.kind
        if event.end is not None and event.end > 0:
            record.end = event.end
        if event.cur is not None:
            record.cur = event.cur
            record.meter.add(now, event.cur)
        state = event.state
        if state is JobState.COMPLETED and record.end > 0:
            record.cur = record.end
        if state is JobState.CANCELLED and event.key in self._expected_stops:
            state, record.note = self._expected_stops.pop(event.key)
            record.checkpointed = not state.is_final
        if state in (JobState.FAILED, JobState.UNKNOWN) and event.error:
            record.error = event.error
        record.state = state
        record.vanished = False
        record.vanished_at = None
        if state.is_final or state is JobState.PAUSED:
            record.ended = now if state.is_final else None
        if state.is_final:
            self._finals += 1
            self._final_events[event.key] = self._finals
        return record

    def settle(self, key: JobKey, disk: Disk | None, *, note: str = "") -> JobRecord | None:
        """Decide how a vanished job ended, from the disk's chain as it is now.

        A pull (or commit) counts as completed only when the chain lost the layers the job was
        removing; anything else is unknown, never assumed to be success.
        """
        record = self._records.get(key)
        if record is None or not record.vanished:
            return record
        now = self._clock()
        record.vanished = False
        record.vanished_at = None
        record.ended = now
        expected = self._expected_stops.pop(key, None)
        if disk is None:
            record.state = JobState.UNKNOWN
            record.note = note or "the domain or disk is gone"
        elif _chain_shrank(record, disk):
            record.state = JobState.COMPLETED
            record.cur = max(record.cur, record.end)
            record.note = note
        elif expected is not None:
            record.state, record.note = expected
            record.checkpointed = not record.state.is_final
            record.ended = None if record.state is JobState.PAUSED else now
        else:
            record.state = JobState.UNKNOWN
            unseen = "the job vanished and its backing chain cannot be seen"
            record.note = note or (
                unseen if not disk.chain_known else "the job vanished and the backing chain is unchanged"
            )
        return record

    def end_checkpoint(
        self, key: JobKey, note: str, state: JobState = JobState.CANCELLED
    ) -> JobRecord | None:
        """A job stopped at a checkpoint will not be carried on: it ends there as ``state`` (cancelled,
        or completed when the checkpoint was its goal: a prefix window's end)."""
        record = self._records.get(key)
        if record is None or not record.checkpointed:
            return record
        record.checkpointed = False
        record.state = state
        record.note = note
        record.ended = self._clock()
        return record

    def distrust_completions(self, host: str, stopped: set[str], window: float) -> list[JobKey]:
        """Completed jobs of domains in ``stopped`` that ended within ``window`` s become unknown.

        On QEMU before 10.2 a domain that dies shortly after a stream completed can lose what the
        stream pulled while its overlay already names no backing file: "completed" would be a lie.
        """
        now = self._clock()
        changed: list[JobKey] = []
        for key, record in self._records.items():
            if key.host != host or key.domain not in stopped or record.state is not JobState.COMPLETED:
                continue
            if record.ended is None or now - record.ended > window:
                continue
            record.state = JobState.UNKNOWN
            record.note = (
                "the domain stopped right after this stream completed; compare the disk before trusting it"
            )
            changed.append(key)
        return changed

    def clear_finished(self) -> list[JobKey]:
        """Forget every record that ended; return their keys."""
        gone = [key for key, record in self._records.items() if record.state.is_final]
        for key in gone:
            del self._records[key]
            self._final_events.pop(key, None)
        return gone

    # -- internals -------------------------------------------------------------------------

    def _new_record(self, key: JobKey, kind: JobKind, state: JobState) -> JobRecord:
        now = self._clock()
        record = JobRecord(key=key, kind=kind, state=state, started=now)
        self._records[key] = record
        return record

    @staticmethod
    def _apply_snapshot(record: JobRecord, job: BlockJob, now: float) -> None:
        record.kind = job.kind if job.kind is not JobKind.UNKNOWN else record.kind
        record.cur = job.cur
        record.end = job.end
        record.bandwidth = job.bandwidth
        record.job_id = job.job_id or record.job_id
        record.vanished = False
        record.vanished_at = None
        record.checkpointed = False
        if job.state.is_final:
            record.ended = now
            record.error = job.error or record.error
        record.state = job.state
        record.meter.set_limit(job.bandwidth)
        record.meter.add(now, job.cur)


def _chain_shrank(record: JobRecord, disk: Disk) -> bool:
    """Whether the disk's chain shows the job's layers gone."""
    if not disk.chain_known:
        return False  # no chain seen (a domain that stopped) is not a chain that lost its layers
    before = record.chain_before
    if before is None:
        # Without the chain before, only an empty chain proves a whole-chain pull finished.
        return record.kind is JobKind.PULL and record.base is None and not disk.chain
    if record.base is not None:
        # A pull down to a base is done when the base is now the nearest backing image.
        return bool(disk.chain) and disk.chain[0].path == record.base and len(disk.chain) < len(before)
    return len(disk.chain) < len(before)
