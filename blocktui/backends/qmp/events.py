"""QMP job reports (events and ``query-block-jobs``) as ours, and the job commands that vary by release."""

from __future__ import annotations

import logging
import time
from typing import Any

from qemu.qmp import ExecuteError, Message

from blocktui.backends.qmp.discovery import QmpDiscovery
from blocktui.backends.qmp.graph import as_dict, as_list, job_disks
from blocktui.backends.qmp.state import (
    JOB_PREFIX,
    LINGER,
    LIVE_STATES,
    Qemu,
    QemuJob,
    job_control,
    job_kind,
)
from blocktui.core.errors import HostError
from blocktui.core.model import DomainsChanged, DomainState, JobEvent, JobKind, JobState

log = logging.getLogger(__name__)


class QmpEvents(QmpDiscovery):
    """QMP job reports as ours: events (held sessions) and ``query-block-jobs`` (every session).

    Both turn into ``JobEvent`` and ``DomainsChanged``; a concluded job's outcome is read from
    ``query-block-jobs`` when no event told it (shared sockets, or events missed).
    """

    # -- job commands -----------------------------------------------------------------------

    async def _job_control(self, qemu: Qemu, verb: str, job_id: str) -> None:
        """``pause``, ``resume`` or ``dismiss`` one job, with ``job-*`` where QEMU has it."""
        command, arguments = job_control(verb, job_id, job_commands=qemu.job_commands)
        await self._execute(qemu, command, arguments)

    # -- events -----------------------------------------------------------------------------

    def _on_event(self, qemu: Qemu, event: Message) -> None:
        name = str(event["event"])
        data = as_dict(event.get("data"))
        if name == "JOB_STATUS_CHANGE":
            self._on_status_change(qemu, str(data.get("id")), str(data.get("status")))
        elif name in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"):
            job = self._job_from_event(qemu, data)
            error = data.get("error")
            if name == "BLOCK_JOB_CANCELLED":
                job.state = JobState.CANCELLED
            elif error:
                job.state = JobState.FAILED
                job.error = str(error)
            else:
                job.state = JobState.COMPLETED
            self._emit_job(qemu, job)
        elif name == "BLOCK_JOB_ERROR":
            job = self._job_from_event(qemu, data)
            action = str(data.get("action"))
            job.error = f"{data.get('operation', 'I/O')} error (on-error action: {action})"
            job.state = JobState.PAUSED if action == "stop" else job.state
            self._emit_job(qemu, job)
        elif name == "BLOCK_JOB_READY":
            job = self._job_from_event(qemu, data)
            job.state = JobState.READY
            self._emit_job(qemu, job)
        elif name in ("STOP", "RESUME", "SHUTDOWN", "RESET"):
            qemu.state = {
                "STOP": DomainState.PAUSED,
                "RESUME": DomainState.RUNNING,
                "SHUTDOWN": DomainState.SHUTDOWN,
            }.get(name, qemu.state)
            self._emit_safely(DomainsChanged(self.uri, qemu.name))

    def _job_from_event(self, qemu: Qemu, data: dict[str, Any]) -> QemuJob:
        job_id = str(data.get("device"))
        job = qemu.jobs.get(job_id)
        if job is None:
            job = qemu.jobs[job_id] = QemuJob(job_id, qemu.disk_for_device(job_id))
        if "type" in data:
            job.kind = job_kind(data["type"])
        if isinstance(data.get("offset"), int):
            job.cur = data["offset"]
        if isinstance(data.get("len"), int):
            job.end = data["len"]
        if isinstance(data.get("speed"), int):
            job.speed = data["speed"]
        return job

    def _on_status_change(self, qemu: Qemu, job_id: str, status: str) -> None:
        job = qemu.jobs.get(job_id)
        if status in LIVE_STATES:
            if job is None:
                # Started by another client (or a non-block job): learn its type and device.
                job = qemu.jobs[job_id] = QemuJob(job_id, qemu.disk_for_device(job_id))
                self._spawn(self._refresh_jobs_quietly(qemu))
            job.state = LIVE_STATES[status]
            self._emit_job(qemu, job)
        elif status == "concluded" and job is not None:
            if not job.state.is_final:
                # No completion event seen (a non-block job, or events lost): ask QEMU.
                self._spawn(self._refresh_jobs_quietly(qemu))
            self._dismiss_later(qemu, job)
        elif status == "null":
            qemu.jobs.pop(job_id, None)
            self._emit_safely(DomainsChanged(self.uri, qemu.name))

    def _emit_job(self, qemu: Qemu, job: QemuJob) -> None:
        if not job.known:
            return  # another client's job: query-block-jobs tells its kind and disk first
        self._emit_safely(
            JobEvent(
                self.uri,
                qemu.name,
                job.disk,
                job.kind,
                job.state,
                error=job.error if job.state in (JobState.FAILED, JobState.UNKNOWN) else None,
                cur=job.cur,
                end=job.end,
            )
        )

    @staticmethod
    def _may_dismiss(job: QemuJob) -> bool:
        """Whether this process may dismiss a concluded job now (see ``LINGER``)."""
        if not job.ours or not job.state.is_final:
            return False
        lingered = job.concluded_at is not None and time.monotonic() - job.concluded_at >= LINGER
        return job.started_here or lingered

    def _dismiss_later(self, qemu: Qemu, job: QemuJob) -> None:
        if job.concluded_at is None:
            job.concluded_at = time.monotonic()
        if not job.dismissing and self._may_dismiss(job):
            job.dismissing = True
            self._spawn(self._dismiss(qemu, job.job_id))

    async def _dismiss(self, qemu: Qemu, job_id: str) -> None:
        # We asked for auto-dismiss=false so the outcome stays readable until recorded.
        job = qemu.jobs.get(job_id)
        if job is None or not job.state.is_final:
            return  # dismissed already, and the id may now belong to a newer job
        try:
            await self._job_control(qemu, "dismiss", job_id)
            qemu.listed.discard(job_id)
        except (HostError, ExecuteError) as exc:
            job.dismissing = False
            log.warning("%s: cannot dismiss job %s: %s", qemu.name, job_id, exc)

    async def _refresh_jobs_quietly(self, qemu: Qemu) -> None:
        try:
            await self._refresh_jobs(qemu)
        except (HostError, ExecuteError) as exc:
            log.info("%s: query-block-jobs failed: %s", qemu.name, exc)

    # -- reading jobs -------------------------------------------------------------------------

    async def _refresh_jobs(self, qemu: Qemu) -> list[QemuJob]:
        """Read ``query-block-jobs`` (safe while jobs finish) into ``qemu.jobs``."""
        # One reading at a time: an older reply must not undo what a newer one found.
        async with qemu.jobs_lock:
            return await self._refresh_jobs_locked(qemu)

    async def _refresh_jobs_locked(self, qemu: Qemu) -> list[QemuJob]:
        listed = as_list(await self._execute(qemu, "query-block-jobs"))
        qemu.listed = {str(info.get("device")) for info in listed}
        seen: list[QemuJob] = []
        fresh: list[QemuJob] = []  # first seen now: placed on their disk, then reported
        ended: list[QemuJob] = []  # concluded since the last look: reported once placed
        for info in listed:
            job_id = str(info.get("device"))
            job = qemu.jobs.get(job_id)
            if job is None:
                job = qemu.jobs[job_id] = QemuJob(job_id, qemu.disk_for_device(job_id))
            # Also for a job first learned from an event, which does not say whose it is.
            job.ours = job.ours or job_id.startswith(JOB_PREFIX)
            newly_known = not job.known
            job.known = True
            job.kind = job_kind(info.get("type"))
            job.cur = int(info.get("offset", 0))
            job.end = int(info.get("len", 0))
            job.speed = int(info.get("speed", 0))
            status = str(info.get("status"))
            if status in LIVE_STATES:
                job.state = LIVE_STATES[status]
            elif status == "concluded" and not job.state.is_final:
                error = info.get("error")
                if error:
                    job.error = str(error)
                    job.state = JobState.CANCELLED if "cancel" in str(error).lower() else JobState.FAILED
                else:
                    job.state = JobState.COMPLETED
                ended.append(job)
            if status == "concluded":
                self._dismiss_later(qemu, job)
            if newly_known:
                fresh.append(job)
            if job.ours and job.state.is_final:
                # Its outcome went out as an event; it lingers only until our job-dismiss lands.
                continue
            seen.append(job)
        targets = {disk.target for disk in qemu.disks or ()}
        if any(job.disk not in targets for job in fresh):
            await self._place_jobs(qemu, [job for job in fresh if job.disk not in targets])
        for job in fresh + [job for job in ended if job not in fresh]:
            self._emit_job(qemu, job)
        listed_ids = {str(info.get("device")) for info in listed}
        for job_id in [j for j in qemu.jobs if j not in listed_ids]:
            if qemu.jobs[job_id].kind is JobKind.UNKNOWN or qemu.jobs[job_id].state.is_final:
                del qemu.jobs[job_id]  # a non-block job, or one already reported as ended
        return seen

    async def _place_jobs(self, qemu: Qemu, jobs: list[QemuJob]) -> None:
        """Find the disks of other clients' jobs (their ids name no disk) from the block graph.

        ``x-debug-query-block-graph`` only walks node names and edges, with no filename refresh, so
        it is safe while jobs finish.
        """
        try:
            placed = job_disks(await self._execute(qemu, "x-debug-query-block-graph"))
        except ExecuteError as exc:
            log.info("%s: no block graph (%s); jobs keep their ids as disk names", qemu.name, exc)
            return
        for job in jobs:
            job.disk = placed.get(job.job_id, job.disk)
