"""QEMU processes that libvirt does not manage, reached through their QMP sockets (qemu.qmp)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from qemu.qmp import ExecuteError

from blocktui.backends.qmp.graph import as_dict, as_list, disks_from
from blocktui.backends.qmp.state import (
    RUN_STATES,
    Qemu,
    QemuJob,
    job_id_for,
    translate_error,
)
from blocktui.backends.qmp.window import QmpWindows
from blocktui.core.errors import HostError, NoJob, NotFound
from blocktui.core.model import BlockJob, Disk, Domain, DomainState, JobKind, JobState
from blocktui.core.streams import check_bandwidth, stream_target

log = logging.getLogger(__name__)


class QmpBackend(QmpWindows):
    """QEMU processes reached directly through QMP: Proxmox sockets, hand-started QEMU, the QMP lab.

    Disks keep one name whichever way QEMU was started (see ``graph``). By default each look is a
    short session, so other clients of a socket are served (``hold=True`` keeps sessions open, for
    events: only for sockets nothing else uses). QEMU 7.2 crashes when ``query-named-block-nodes``
    or ``query-block`` (both walk ``bdrv_block_device_info`` -> ``bdrv_refresh_filename``) run
    while a stream finishes, so file names are read only while no job exists on that QEMU, and
    remembered otherwise; names and chain shapes come from the block graph, safe at any moment.
    """

    supports_pause = True
    supports_events = True  # per instance: only with hold=True
    supports_base = True
    sees_host_files = True  # QMP sockets are UNIX sockets: the QEMUs run on this machine

    # -- reading state ----------------------------------------------------------------------

    async def _refresh_status(self, qemu: Qemu) -> None:
        status = as_dict(await self._execute(qemu, "query-status")).get("status")
        qemu.state = RUN_STATES.get(str(status), DomainState.NOSTATE)

    async def _refresh_disks(self, qemu: Qemu) -> None:
        """Re-read disks and chains from the block graph, and file names while no job exists.

        QEMU 7.2 crashes on ``query-named-block-nodes`` while a stream finishes, and (seen here)
        even while a concluded stream waits to be dismissed; the graph is safe at any moment.
        """
        async with qemu.lock:
            await self._refresh_jobs(qemu)
            for job_id in sorted(qemu.listed):
                job = qemu.jobs.get(job_id)
                if job is not None and self._may_dismiss(job):
                    await self._dismiss(qemu, job_id)  # its outcome is recorded: let it go now
            graph = await self._execute(qemu, "x-debug-query-block-graph")
            if not qemu.listed:
                qemu.named = as_list(await self._execute(qemu, "query-named-block-nodes", {"flat": True}))
        qemu.disks, qemu.chain_nodes = disks_from(graph, qemu.named)

    async def _domain(self, qemu: Qemu, strict: bool = False) -> Domain:
        """``qemu`` as a domain, re-read unless it is lost.

        Args:
            strict: raise HostError when a QEMU that is not lost cannot be read now (busy
                socket), instead of answering with what was last read; settling a job's outcome
                must not go by a stale chain.
        """
        if strict and not qemu.up and qemu.state is not DomainState.LOST:
            raise self._unreachable_error(qemu)
        if qemu.up:
            try:
                async with self._talking(qemu):
                    await self._refresh_status(qemu)
                    await self._refresh_disks(qemu)
            except (HostError, ExecuteError) as exc:
                if strict and isinstance(exc, HostError) and qemu.state is not DomainState.LOST:
                    raise
                log.info("%s: refresh failed: %s", qemu.name, exc)
        # Unreachable but not gone (a busy socket): its last known state; LOST once it is gone.
        # One never read says why, rather than passing for a QEMU without disks.
        unread = qemu.message if qemu.disks is None and not qemu.up else ""
        return Domain(self.uri, qemu.name, qemu.state, disks=qemu.disks or (), persistent=False, error=unread)

    async def _domains(self) -> list[Domain]:
        return list(await asyncio.gather(*(self._domain(q) for q in self._qemus.values())))

    async def _find(self, name: str) -> Qemu:
        for attempt in range(2):
            for qemu in self._qemus.values():
                if qemu.name == name and (qemu.up or attempt == 1):
                    return qemu
            if attempt == 0:
                # It may have started since the last periodic scan, or not answered it (a QEMU slow
                # to greet on a loaded host): the scan looks again before the caller is told no.
                await self._scan()
        raise NotFound(f"{self.uri}: no QEMU named {name!r}")

    async def _get_domain(self, name: str) -> Domain:
        return await self._domain(await self._find(name), strict=True)

    # -- Backend API ------------------------------------------------------------------------

    def list_domains(self) -> list[Domain]:
        return self._call(self._domains())

    def get_domain(self, name: str) -> Domain:
        return self._call(self._get_domain(name))

    def start_stream(self, domain: str, disk: str, *, bandwidth: int = 0, base: str | None = None) -> None:
        action = f"cannot stream {domain}/{disk}"
        self._require_writable(action)
        check_bandwidth(bandwidth, action)
        self._call(self._start_stream(domain, disk, bandwidth, base))

    async def _start_stream(self, domain: str, disk: str, bandwidth: int, base: str | None) -> None:
        qemu = await self._find(domain)
        async with self._talking(qemu):
            await self._start_stream_on(qemu, domain, disk, bandwidth, base)

    async def _start_stream_on(
        self, qemu: Qemu, domain: str, disk: str, bandwidth: int, base: str | None
    ) -> None:
        found = stream_target(
            await self._domain(qemu, strict=True), disk, base, f"cannot stream {domain}/{disk}"
        )
        arguments: dict[str, Any] = {
            "job-id": job_id_for(disk),
            "device": found.node or disk,
            "speed": bandwidth,
            "on-error": "report",
            "auto-dismiss": False,
        }
        if base is not None:
            paths = [layer.path for layer in found.chain]
            arguments["base-node"] = qemu.chain_nodes[disk][paths.index(base)]
        async with qemu.lock:
            self._refuse_busy(qemu, disk, await self._refresh_jobs(qemu))
            job_id = arguments["job-id"]
            previous = qemu.jobs.get(job_id)
            if previous is not None and previous.state.is_final:
                await self._dismiss(qemu, job_id)  # our last job on this disk, ended but not yet dismissed
            qemu.jobs[job_id] = QemuJob(
                job_id,
                disk,
                JobKind.PULL,
                JobState.QUEUED,
                speed=bandwidth,
                ours=True,
                known=True,
                started_here=True,
            )
            try:
                await self._execute(qemu, "block-stream", arguments)
            except ExecuteError as exc:
                qemu.jobs.pop(job_id, None)
                raise translate_error(exc, f"{domain}/{disk}: cannot start the stream") from exc
            except HostError:
                qemu.jobs.pop(job_id, None)
                raise

    async def _job_command(self, domain: str, disk: str, command: str, extra: dict[str, Any]) -> None:
        qemu = await self._find(domain)
        if self._window_control(qemu, disk, command, int(extra.get("speed", 0))):
            return
        try:
            async with self._talking(qemu):
                job = await self._current_job(qemu, disk)
                if job is None:
                    raise NoJob(f"{domain}/{disk} has no block job")
                if command in ("pause", "resume"):
                    await self._job_control(qemu, command, job.job_id)
                else:
                    await self._execute(qemu, command, {"device": job.job_id, **extra})
        except ExecuteError as exc:
            raise translate_error(exc, f"{domain}/{disk}: {command} refused") from exc

    async def _current_job(self, qemu: Qemu, disk: str) -> QemuJob | None:
        if not qemu.up:
            raise self._unreachable_error(qemu)
        for job in await self._refresh_jobs(qemu):
            if job.disk == disk:
                return job
        return None

    def set_speed(self, domain: str, disk: str, bandwidth: int) -> None:
        action = f"cannot change the speed of {domain}/{disk}"
        self._require_writable(action)
        check_bandwidth(bandwidth, action)
        self._call(self._job_command(domain, disk, "block-job-set-speed", {"speed": bandwidth}))

    def abort(self, domain: str, disk: str) -> None:
        self._require_writable(f"cannot abort the job on {domain}/{disk}")
        self._call(self._job_command(domain, disk, "block-job-cancel", {}))

    def pause(self, domain: str, disk: str) -> None:
        self._require_writable(f"cannot pause the job on {domain}/{disk}")
        self._call(self._job_command(domain, disk, "pause", {}))

    def resume(self, domain: str, disk: str) -> None:
        self._require_writable(f"cannot resume the job on {domain}/{disk}")
        self._call(self._job_command(domain, disk, "resume", {}))

    def job_info(self, domain: str, disk: str) -> BlockJob | None:
        return self._call(self._job_info(domain, disk))

    async def _job_info(self, domain: str, disk: str) -> BlockJob | None:
        qemu = await self._find(domain)
        window = next((job for job in self._window_jobs(qemu) if job.disk == disk), None)
        if window is not None:
            return window
        try:
            job = await self._current_job(qemu, disk)
        except HostError:
            if qemu.state is DomainState.LOST:
                raise
            # Busy socket: what we last knew, rather than a job that seems to have vanished.
            job = next((j for j in self._last_known(qemu) if j.disk == disk), None)
            if job is None:
                raise
        return None if job is None else self._block_job(qemu, job)

    @staticmethod
    def _last_known(qemu: Qemu) -> list[QemuJob]:
        return [job for job in qemu.jobs.values() if job.known and not job.state.is_final]

    def list_jobs(
        self, *, known: Mapping[str, Sequence[Disk]] | None = None, skip: Collection[tuple[str, str]] = ()
    ) -> list[BlockJob]:
        del known, skip  # one query-block-jobs per QEMU lists every job anyway
        return self._call(self._list_jobs())

    async def _list_jobs(self) -> list[BlockJob]:
        async def one(qemu: Qemu) -> list[BlockJob]:
            if qemu.state is DomainState.LOST and not qemu.up:
                return []  # its jobs were reported UNKNOWN when it went away
            try:
                jobs = await self._refresh_jobs(qemu)
            except (HostError, ExecuteError) as exc:
                # Busy socket: keep showing what we last knew; its jobs have not ended by that.
                log.info("%s: query-block-jobs failed: %s", qemu.name, exc)
                jobs = self._last_known(qemu)
            return [self._block_job(qemu, job) for job in jobs] + self._window_jobs(qemu)

        per_qemu = await asyncio.gather(*(one(q) for q in self._qemus.values()))
        return [job for jobs in per_qemu for job in jobs]

    def _block_job(self, qemu: Qemu, job: QemuJob) -> BlockJob:
        return BlockJob(
            host=self.uri,
            domain=qemu.name,
            disk=job.disk,
            kind=job.kind,
            state=job.state,
            cur=job.cur,
            end=job.end,
            bandwidth=job.speed,
            error=job.error if job.state.is_final else None,
            job_id=job.job_id,
        )
