"""A deterministic, scripted backend for UI snapshot and pilot tests.

Nothing here touches a host: progress moves only when a test calls ``advance``. It is shaped like a
real backend (same interface, same errors, events through the listener) so the dashboard cannot tell
the difference, but it proves nothing about streaming: never use it where a test claims a stream works.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from blocktui.backends.base import Backend
from blocktui.core.allocation import DiskMap, Extent, Where
from blocktui.core.errors import HostError, JobBusy, NoJob, NotFound
from blocktui.core.model import (
    BlockJob,
    ChainLayer,
    ConnectionEvent,
    ConnectionState,
    Disk,
    Domain,
    HostInfo,
    JobEvent,
    JobKind,
    JobState,
)
from blocktui.core.streams import check_bandwidth, stream_target

MiB = 1024**2
GiB = 1024**3

#: How fast an unlimited fake job moves, in bytes per (fake) second.
DEFAULT_SPEED = 200 * MiB


@dataclass
class FakeJob:
    """One scripted job on a fake disk.

    Attributes:
        speed: bytes per fake second when the job has no limit.
        fail_at: when set, the job fails with ``fail_reason`` as soon as ``cur`` reaches it.
        base: the chain layer the job stops at (None: the whole chain).
    """

    domain: str
    disk: str
    end: int
    cur: int = 0
    bandwidth: int = 0
    state: JobState = JobState.ACTIVE
    kind: JobKind = JobKind.PULL
    speed: int = DEFAULT_SPEED
    fail_at: int | None = None
    fail_reason: str = "I/O error"
    base: str | None = None

    def as_job(self, host: str) -> BlockJob:
        """What ``list_jobs`` reports for this job."""
        return BlockJob(
            host=host,
            domain=self.domain,
            disk=self.disk,
            kind=self.kind,
            state=self.state,
            cur=self.cur,
            end=self.end,
            bandwidth=self.bandwidth,
        )


class FakeBackend(Backend):
    """A DETERMINISTIC fake host: scripted domains and jobs that advance only when told.

    For UI snapshot and pilot tests only. ``hang()`` makes every call block until ``unhang()``,
    to show the dashboard stays responsive when a host stops answering.
    """

    supports_events = True
    supports_allocation_map = True

    def __init__(
        self,
        uri: str,
        domains: list[Domain] | None = None,
        *,
        readonly: bool = False,
        supports_pause: bool = False,
        supports_base: bool = True,
        hypervisor: str = "fake",
        fail_connect: str | None = None,
    ) -> None:
        super().__init__(uri, readonly=readonly)
        self.supports_pause = supports_pause
        self.supports_base = supports_base
        self.hypervisor = hypervisor
        self.fail_connect = fail_connect
        #: Errors the next calls raise, one per call, as a host that answers with an error does.
        self.errors: list[HostError] = []
        self.state = ConnectionState.DISCONNECTED
        self.calls: list[str] = []
        self._domains: dict[str, Domain] = {d.name: replace(d, host=uri) for d in domains or []}
        self._jobs: dict[tuple[str, str], FakeJob] = {}
        # What aborted pulls copied, per disk: a new pull passes over it, as QEMU's does.
        self._copied: dict[tuple[str, str], tuple[int, int]] = {}  # (cur, end)
        self._lock = threading.RLock()
        self._gate = threading.Event()
        self._gate.set()

    # -- scripting (tests call these) ------------------------------------------------------

    def add_domain(self, domain: Domain) -> None:
        """A domain appears on the host (one that cannot be read carries its ``error``)."""
        with self._lock:
            self._domains[domain.name] = domain

    def remove_domain(self, name: str) -> None:
        """A domain leaves the host (a transient one that stopped)."""
        with self._lock:
            del self._domains[name]

    def add_job(self, job: FakeJob) -> None:
        """Put a job on a disk as if another client had started it."""
        with self._lock:
            self._disk(job.domain, job.disk)
            self._jobs[(job.domain, job.disk)] = job

    def advance(self, seconds: float) -> None:
        """Move every active job forward by ``seconds`` of fake time; finish or fail as scripted."""
        with self._lock:
            for job in list(self._jobs.values()):
                if job.state is not JobState.ACTIVE:
                    continue
                speed = job.bandwidth or job.speed
                job.cur = min(job.end, job.cur + int(speed * seconds))
                if job.fail_at is not None and job.cur >= job.fail_at:
                    job.cur = job.fail_at
                    self._finish(job, JobState.FAILED, job.fail_reason)
                elif job.cur >= job.end:
                    self._drop_chain(job)
                    self._finish(job, JobState.COMPLETED, None)

    def set_connection(self, state: ConnectionState, message: str = "") -> None:
        """Change the connection's health and tell the listener, as a real backend would."""
        self.state = state
        self.emit(ConnectionEvent(self.uri, state, message))

    def hang(self) -> None:
        """Make every later backend call block until ``unhang`` (a host that stopped answering)."""
        self._gate.clear()

    def unhang(self) -> None:
        """Let blocked calls go on."""
        self._gate.set()

    def job(self, domain: str, disk: str) -> FakeJob | None:
        """The scripted job on a disk, if any."""
        with self._lock:
            return self._jobs.get((domain, disk))

    # -- Backend ---------------------------------------------------------------------------

    def connect(self) -> None:
        self._enter("connect")
        if self.fail_connect is not None:
            self.state = ConnectionState.DISCONNECTED
            raise HostError(f"{self.uri}: {self.fail_connect}")
        self.state = ConnectionState.CONNECTED

    def close(self) -> None:
        # Never gated: closing must not hang the quit path even when the host does.
        self.calls.append("close")
        self.state = ConnectionState.DISCONNECTED

    def host_info(self) -> HostInfo:
        # Never gated: like a real backend's, it reports what is known without asking the host.
        self.calls.append("host_info")
        return HostInfo(
            uri=self.uri,
            state=self.state,
            readonly=self.readonly,
            hypervisor=self.hypervisor,
            message=self.fail_connect or "",
        )

    def list_domains(self) -> list[Domain]:
        self._enter("list_domains")
        with self._lock:
            return list(self._domains.values())

    def get_domain(self, name: str) -> Domain:
        self._enter("get_domain")
        with self._lock:
            return self._domain(name)

    def start_stream(self, domain: str, disk: str, *, bandwidth: int = 0, base: str | None = None) -> None:
        self._enter("start_stream")
        action = f"cannot stream {domain}/{disk}"
        self._require_writable(action)
        check_bandwidth(bandwidth, action)
        with self._lock:
            stream_target(self._domain(domain), disk, base, action)
            if (domain, disk) in self._jobs:
                raise JobBusy(f"{domain}/{disk} already has a block job")
            copied, size = self._copied.pop((domain, disk), (0, 10 * GiB))
            self._jobs[(domain, disk)] = FakeJob(
                domain, disk, end=size, cur=copied, bandwidth=bandwidth, base=base
            )

    def set_speed(self, domain: str, disk: str, bandwidth: int) -> None:
        self._enter("set_speed")
        action = f"cannot change the speed of {domain}/{disk}"
        self._require_writable(action)
        check_bandwidth(bandwidth, action)
        with self._lock:
            self._running(domain, disk).bandwidth = bandwidth

    def abort(self, domain: str, disk: str) -> None:
        self._enter("abort")
        self._require_writable(f"cannot abort the job on {domain}/{disk}")
        with self._lock:
            job = self._running(domain, disk)
            if job.kind is JobKind.PULL:
                self._copied[(domain, disk)] = (job.cur, job.end)
            self._finish(job, JobState.CANCELLED, None)

    def pause(self, domain: str, disk: str) -> None:
        if not self.supports_pause:
            super().pause(domain, disk)
        self._enter("pause")
        self._require_writable(f"cannot pause the job on {domain}/{disk}")
        with self._lock:
            job = self._running(domain, disk)
            job.state = JobState.PAUSED
            self.emit(JobEvent(self.uri, domain, disk, job.kind, JobState.PAUSED, cur=job.cur, end=job.end))

    def resume(self, domain: str, disk: str) -> None:
        if not self.supports_pause:
            super().resume(domain, disk)
        self._enter("resume")
        self._require_writable(f"cannot resume the job on {domain}/{disk}")
        with self._lock:
            job = self._running(domain, disk)
            job.state = JobState.ACTIVE
            self.emit(JobEvent(self.uri, domain, disk, job.kind, JobState.ACTIVE, cur=job.cur, end=job.end))

    def job_info(self, domain: str, disk: str) -> BlockJob | None:
        self._enter("job_info")
        with self._lock:
            job = self._jobs.get((domain, disk))
            return job.as_job(self.uri) if job else None

    def list_jobs(
        self, *, known: Mapping[str, Sequence[Disk]] | None = None, skip: Collection[tuple[str, str]] = ()
    ) -> list[BlockJob]:
        del known, skip  # like QMP: every job in one call
        self._enter("list_jobs")
        with self._lock:
            return [job.as_job(self.uri) for job in self._jobs.values()]

    def allocation_map(self, domain: str, disk: str) -> DiskMap:
        """A scripted map: the overlay's own first sixteenth, what a pull copied, a last quarter
        nothing holds, the rest in the backing chain (all local once the chain is gone)."""
        self._enter("allocation_map")
        with self._lock:
            found = self._disk(domain, disk)
            job = self._jobs.get((domain, disk))
            done, size = (job.cur, job.end) if job else self._copied.get((domain, disk), (0, 10 * GiB))
        held = size * 3 // 4
        local = held if not found.chain else min(held, max(size // 16, done))
        ranges = [(0, local, Where.LOCAL), (local, held, Where.BACKING), (held, size, Where.UNALLOCATED)]
        return DiskMap.of(Extent(start, end - start, where) for start, end, where in ranges)

    # -- internals -------------------------------------------------------------------------

    def _enter(self, call: str) -> None:
        self.calls.append(call)
        if self.errors:
            raise self.errors.pop(0)
        self._gate.wait()

    def _domain(self, domain: str) -> Domain:
        found = self._domains.get(domain)
        if found is None:
            raise NotFound(f"{self.uri}: no domain {domain!r}")
        return found

    def _disk(self, domain: str, disk: str) -> Disk:
        result = self._domain(domain).disk(disk)
        if result is None:
            raise NotFound(f"{self.uri}: domain {domain!r} has no disk {disk!r}")
        return result

    def _running(self, domain: str, disk: str) -> FakeJob:
        job = self._jobs.get((domain, disk))
        if job is None:
            raise NoJob(f"{domain}/{disk} has no block job")
        return job

    def _finish(self, job: FakeJob, state: JobState, error: str | None) -> None:
        """End a job: it leaves the listing and its final event goes to the listener."""
        del self._jobs[(job.domain, job.disk)]
        job.state = state
        self.emit(JobEvent(self.uri, job.domain, job.disk, job.kind, state, error, cur=job.cur, end=job.end))

    def _drop_chain(self, job: FakeJob) -> None:
        """A completed pull leaves the disk with only the layers at and below its base."""
        domain = self._domains[job.domain]
        disk = self._disk(job.domain, job.disk)
        chain: tuple[ChainLayer, ...] = ()
        if job.base is not None:
            paths = [layer.path for layer in disk.chain]
            chain = disk.chain[paths.index(job.base) :]
        disks = tuple(replace(d, chain=chain) if d.target == job.disk else d for d in domain.disks)
        self._domains[job.domain] = replace(domain, disks=disks)


# -- a scenario for the dashboard's tests and demos ----------------------------------------
