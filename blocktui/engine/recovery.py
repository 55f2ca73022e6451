"""Re-attaching a plan a blocktui process left in the journal (it quit, or was killed)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from blocktui.core.errors import BlocktuiError
from blocktui.core.guard import Mark, mark_of
from blocktui.core.model import Disk, JobKey, JobState
from blocktui.engine.disk_identity import end_if_replaced
from blocktui.engine.hostwork import wait_for
from blocktui.engine.journal import Entry, Journal
from blocktui.engine.lookup import disk_or_none
from blocktui.engine.plan_book import PlanBook
from blocktui.engine.plans import Plan, PlanStatus
from blocktui.engine.session import Session


def plan_from(
    entry: Entry,
    *,
    session: Session,
    journal: Journal,
    clock: Callable[[], float],
    disk_or_none: Callable[[JobKey], Disk | None],
) -> Plan:
    """The plan a journal entry left, as its job (or its absence) on the host says it is now."""
    key = JobKey(entry.host, entry.domain, entry.disk)
    plan = Plan(
        entry.id,
        key,
        entry.bandwidth,
        entry.base,
        entry.chunk,
        entry.gap,
        entry.chain_before,
        size=entry.size,
        checkpointed=max((c.boundary for c in entry.checkpoints), default=0),
        pause_requested=entry.pause_requested,
        overshoots=[c.overshoot for c in entry.checkpoints],
        window=entry.window,
        by_filter=entry.window is not None and session.backend(key.host).supports_window,
    )
    if end_if_replaced(session.backend(key.host), journal, entry):
        plan.status = PlanStatus.DONE  # its disk was destroyed and made anew: not this plan's disk
        return plan
    job = None
    try:
        job = session.backend(key.host).job_info(key.domain, key.disk)
    except BlocktuiError:
        job = None
    if job is not None and not job.state.is_final:
        plan.status = PlanStatus.ACTIVE
        plan.size = job.end or plan.size
        plan.applied = job.bandwidth
        plan.going = mark_of(job.bandwidth) is Mark.GO
        chunks = plan.chunks()
        plan.boundary = plan.next_boundary(job.cur)
        if job.state is JobState.PAUSED and plan.pause_requested:
            plan.status = PlanStatus.PAUSED
        elif job.state is JobState.PAUSED and entry.status == PlanStatus.GAP.value:
            # Paused at a boundary whose checkpoint is recorded: the next chunk follows.
            plan.status = PlanStatus.GAP
            plan.resume_at = clock()
        elif job.state is JobState.PAUSED and chunks is not None:
            # Paused at a boundary before its checkpoint was written: write it now.
            plan.status = PlanStatus.STOPPING
            plan.stop_reason = "checkpoint"
            plan.boundary = chunks.index_of(job.cur) * plan.chunk or None
            plan.last_cur = job.cur
        return plan
    if entry.status == PlanStatus.QUEUED.value:
        plan.status = PlanStatus.QUEUED
    elif entry.pause_requested or entry.status == PlanStatus.PAUSED.value:
        plan.status = PlanStatus.PAUSED
    else:
        # The job is gone: it ended while nobody watched, or it stopped at a checkpoint.
        disk = disk_or_none(key)
        if disk is not None and disk.chain_known and len(disk.chain) < len(entry.chain_before):
            plan.status = PlanStatus.DONE
            journal.finish(entry.id, "completed", bytes_done=entry.size, note="ended while blocktui was away")
        else:
            plan.status = PlanStatus.GAP
            plan.resume_at = clock()
    return plan


def reattach_entries(
    entries: list[Entry],
    *,
    book: PlanBook,
    session: Session,
    pid: int,
    clock: Callable[[], float],
    disk: Callable[[JobKey], Disk | None],
) -> list[Plan]:
    """Claim and carry on each entry no plan of this process has; one that fails is handed back."""
    journal = book.journal
    taken: list[Plan] = []
    failed: BlocktuiError | None = None
    for entry in entries:
        key = JobKey(entry.host, entry.domain, entry.disk)
        if book.plan(key) is not None or not journal.claim(entry.id, pid):
            continue
        try:
            plan = plan_from(entry, session=session, journal=journal, clock=clock, disk_or_none=disk)
        except BlocktuiError as exc:
            # Hand it back for the next try (or the next blocktui); the other entries go on.
            journal.update(entry.id, owner=None)
            failed = failed or exc
            continue
        book.put(plan)
        taken.append(plan)
    if failed is not None and not taken:
        raise failed
    return taken


def reattach_open(
    session: Session, book: PlanBook, *, pid: int, clock: Callable[[], float], timeout: float | None
) -> list[Plan]:
    """Claim the journal's open plans of ``session``'s hosts, each host in its worker; return those taken.

    Args:
        timeout: wait at most this long for the hosts (None: until each has answered); the
            plans of a host that answers later are taken over then, in its worker.
    """
    entries: dict[str, list[Entry]] = {}
    for entry in book.journal.open_entries():
        # A job only watched (not planned): the session's scan finds it again if it still runs.
        if entry.host in session.hosts and entry.origin == "planned":
            entries.setdefault(entry.host, []).append(entry)
    disk = partial(disk_or_none, session)
    futures = [
        session.submit(
            host,
            partial(reattach_entries, todo, book=book, session=session, pid=pid, clock=clock, disk=disk),
        )
        for host, todo in entries.items()
    ]
    wait_for(futures, timeout)
    session.wake()
    done = [f for f in futures if f.done()]
    for future in done:
        if (error := future.exception()) is not None:
            raise error
    return [plan for future in done for plan in future.result()]
