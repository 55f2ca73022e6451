"""New plans, made on the host's worker: a stream asked for, or a job started elsewhere taken in charge."""

from __future__ import annotations

from blocktui.core.errors import Conflict, NoJob
from blocktui.core.model import JobKey, JobKind
from blocktui.core.windows import Window
from blocktui.engine.disk_identity import identity_now
from blocktui.engine.lookup import disk_of, stream_disk
from blocktui.engine.plan_book import PlanBook
from blocktui.engine.plans import Plan, PlanStatus
from blocktui.engine.session import Session
from blocktui.engine.windows import check_window, fit_window


class PlanIntake:
    """Checks what a new plan needs of its host and enters it in the book (run on the host's worker)."""

    def __init__(self, session: Session, book: PlanBook, owner: int) -> None:
        self.session = session
        self.book = book
        #: The process id the journal records as each plan's owner.
        self.owner = owner

    def stream(
        self,
        key: JobKey,
        *,
        bandwidth: int,
        base: str | None,
        chunk: int,
        gap: float,
        window: Window | None,
    ) -> Plan:
        """A queued stream (or window) of ``key``.

        Raises:
            Conflict: the disk already has a plan or a job. NotFound: no such domain or disk.
        """
        backend = self.session.backend(key.host)
        if window is not None:
            check_window(backend, key, window, chunk=chunk)
        disk = stream_disk(backend, key, base)
        if window is not None:
            window = fit_window(backend, disk, window)
        current = self.book.plan(key)
        if current is not None and current.status is not PlanStatus.DONE:
            raise Conflict(f"{key.domain}/{key.disk} already has a plan ({current.status.value})")
        if backend.job_info(key.domain, key.disk) is not None:
            raise Conflict(f"{key.domain}/{key.disk} already has a block job")
        return self.book.new_plan(
            key,
            disk,
            JobKind.PULL if window is None else JobKind.WINDOW,
            PlanStatus.QUEUED,
            bandwidth=bandwidth,
            base=base,
            chunk=chunk,
            gap=gap,
            owner=self.owner,
            identity=identity_now(backend, key),
            window=window,
            by_filter=window is not None and backend.supports_window,
        )

    def adopt(self, key: JobKey) -> Plan:
        """The plan of ``key``'s job, made now for a job started elsewhere.

        Raises:
            NoJob: the disk has no job.
        """
        existing = self.book.plan(key)
        if existing is not None and existing.status is not PlanStatus.DONE:
            return existing
        backend = self.session.backend(key.host)
        job = backend.job_info(key.domain, key.disk)
        if job is None:
            raise NoJob(f"{key.domain}/{key.disk} has no block job to take charge of")
        plan = self.book.new_plan(
            key,
            disk_of(backend, key.domain, key.disk),
            job.kind,
            PlanStatus.ACTIVE,
            bandwidth=job.bandwidth,
            size=job.end,
            owner=self.owner,
            identity=identity_now(backend, key),
        )
        plan.applied = job.bandwidth
        return plan
