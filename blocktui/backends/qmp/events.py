"""QMP events as our job events, and the job commands that differ between QEMU releases."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from qemu.qmp import ExecuteError, Message

from blocktui.backends.qmp.graph import as_dict
from blocktui.backends.qmp.link import QmpLink
from blocktui.backends.qmp.state import LIVE_STATES, Qemu, QemuJob, job_kind
from blocktui.core.errors import HostError
from blocktui.core.model import DomainsChanged, DomainState, JobEvent, JobState

log = logging.getLogger(__name__)


class QmpEvents(QmpLink):
    """Turns QMP job and run-state events into ``JobEvent`` and ``DomainsChanged``."""

    # -- job commands -----------------------------------------------------------------------

    async def _job_control(self, qemu: Qemu, verb: str, job_id: str) -> None:
        """``pause``, ``resume`` or ``dismiss`` one job, with ``job-*`` where QEMU has it.

        QEMU 10.1 deprecates ``block-job-pause/resume/dismiss``; QEMU before 3.0 has only those.
        """
        if qemu.job_commands:
            await self._execute(qemu, f"job-{verb}", {"id": job_id})
        else:
            await self._execute(qemu, f"block-job-{verb}", {"device": job_id})

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
                asyncio.get_running_loop().create_task(self._refresh_jobs_quietly(qemu))
            job.state = LIVE_STATES[status]
            self._emit_job(qemu, job)
        elif status == "concluded" and job is not None:
            if not job.state.is_final:
                # No completion event seen (a non-block job, or events lost): ask QEMU.
                asyncio.get_running_loop().create_task(self._refresh_jobs_quietly(qemu))
            if job.ours:
                asyncio.get_running_loop().create_task(self._dismiss(qemu, job_id))
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

    async def _dismiss(self, qemu: Qemu, job_id: str) -> None:
        # We asked for auto-dismiss=false only so the error stays readable until recorded.
        job = qemu.jobs.get(job_id)
        if job is None or not job.state.is_final:
            return  # dismissed already, and the id may now belong to a newer job
        try:
            await self._job_control(qemu, "dismiss", job_id)
            qemu.listed.discard(job_id)
        except (HostError, ExecuteError) as exc:
            log.warning("%s: cannot dismiss job %s: %s", qemu.name, job_id, exc)

    async def _refresh_jobs_quietly(self, qemu: Qemu) -> None:
        try:
            await self._refresh_jobs(qemu)
        except (HostError, ExecuteError) as exc:
            log.info("%s: query-block-jobs failed: %s", qemu.name, exc)
