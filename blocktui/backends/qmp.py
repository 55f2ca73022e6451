"""QEMU processes that libvirt does not manage, reached through their QMP sockets (qemu.qmp)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections.abc import Coroutine, Iterable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import EventListener, ExecuteError, Message, QMPClient, QMPError, Runstate

from blocktui.backends.base import Backend
from blocktui.core.errors import (
    BlocktuiError,
    HostError,
    InvalidInput,
    JobBusy,
    NoJob,
    NotFound,
    NothingToStream,
    ReadOnly,
)
from blocktui.core.model import (
    BlockJob,
    ChainLayer,
    ConnectionEvent,
    ConnectionState,
    Disk,
    Domain,
    DomainsChanged,
    DomainState,
    HostInfo,
    JobEvent,
    JobKind,
    JobState,
)
from blocktui.core.units import MAX_BYTES

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Socket names a directory scan picks up (Proxmox uses ``<vmid>.qmp``).
SOCKET_PATTERNS = ("*.qmp", "*.sock")

#: Seconds to wait for a QMP greeting; QEMU greets at once unless another client holds the socket.
CONNECT_TIMEOUT = 3.0

#: Prefix of the job ids we give our streams; QEMU job ids must start with a letter.
JOB_PREFIX = "blocktui-"

_KINDS = {
    "stream": JobKind.PULL,
    "mirror": JobKind.COPY,
    "commit": JobKind.COMMIT,
    "backup": JobKind.BACKUP,
}

# JobStatus values that are not outcomes yet; "concluded" is decided by the completion events.
_LIVE_STATES = {
    "created": JobState.QUEUED,
    "running": JobState.ACTIVE,
    "paused": JobState.PAUSED,
    "ready": JobState.READY,
    "standby": JobState.PAUSED,
    "waiting": JobState.ACTIVE,
    "pending": JobState.ACTIVE,
    "aborting": JobState.ACTIVE,
}

_RUN_STATES = {
    "running": DomainState.RUNNING,
    "paused": DomainState.PAUSED,
    "prelaunch": DomainState.PAUSED,
    "inmigrate": DomainState.PAUSED,
    "postmigrate": DomainState.PAUSED,
    "finish-migrate": DomainState.PAUSED,
    "restore-vm": DomainState.PAUSED,
    "save-vm": DomainState.PAUSED,
    "suspended": DomainState.SUSPENDED,
    "watchdog": DomainState.PAUSED,
    "debug": DomainState.PAUSED,
    "io-error": DomainState.PAUSED,
    "shutdown": DomainState.SHUTDOWN,
    "guest-panicked": DomainState.CRASHED,
    "internal-error": DomainState.CRASHED,
    "colo": DomainState.RUNNING,
}

# Nodes that hold bytes themselves rather than an image format; never shown as disks on their own.
_PROTOCOL_DRIVERS = frozenset(
    {
        "file",
        "host_device",
        "host_cdrom",
        "nbd",
        "iscsi",
        "rbd",
        "ssh",
        "http",
        "https",
        "ftp",
        "ftps",
        "gluster",
        "nfs",
        "nvme",
        "null-co",
        "null-aio",
        "blkdebug",
        "blkverify",
    }
)

# Filters sit above a format node without being a layer of the chain (stream inserts copy-on-read).
_FILTER_DRIVERS = frozenset(
    {"copy-on-read", "throttle", "compress", "preallocate", "snapshot-access", "mirror_top", "commit_top"}
)

LOST_NOTE = "the QEMU process went away (its QMP connection closed) while the job ran; its outcome is unknown"


def job_id_for(disk: str) -> str:
    """The job id we give a stream on ``disk``: QEMU accepts only letters, digits, ``-._``."""
    return JOB_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", disk)


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _list(value: object) -> list[dict[str, Any]]:
    return [dict(item) for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _kind(job_type: object) -> JobKind:
    return _KINDS.get(str(job_type), JobKind.UNKNOWN)


def _qdev_id(qdev: str) -> str:
    """``/machine/peripheral/virtio0/virtio-backend`` -> ``virtio0``; a plain id stays as it is."""
    parts = [p for p in qdev.split("/") if p]
    if "peripheral" in parts and parts.index("peripheral") + 1 < len(parts):
        return parts[parts.index("peripheral") + 1]
    return parts[0] if len(parts) == 1 else qdev


@dataclass
class _Job:
    """What we last knew of one QEMU job (by job id)."""

    job_id: str
    disk: str
    kind: JobKind = JobKind.UNKNOWN
    state: JobState = JobState.QUEUED
    cur: int = 0
    end: int = 0
    speed: int = 0
    error: str | None = None
    ours: bool = False
    #: Seen in query-block-jobs (so a block job, with its disk worked out), or started by us.
    known: bool = False


@dataclass
class _Qemu:
    """One QEMU process. Touched only on the backend's loop thread."""

    socket: Path
    name: str
    qmp_name: str | None = None
    client: QMPClient | None = None
    state: DomainState = DomainState.LOST
    message: str = ""
    version: str = ""
    disks: tuple[Disk, ...] | None = None
    #: Node names of each disk's chain, nearest backing first (for ``base-node``).
    chain_nodes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    jobs: dict[str, _Job] = field(default_factory=dict)
    #: Held while reading disks or starting a job, so no job starts between "idle" and the read.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    jobs_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    watcher: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.runstate is Runstate.RUNNING

    def disk_for_device(self, device: str) -> str:
        """Map a job's ``device`` (our job id, a device name or a node name) to a disk target."""
        for disk in self.disks or ():
            if device in (disk.target, disk.node, job_id_for(disk.target)):
                return disk.target
        if device.startswith(JOB_PREFIX):
            return device[len(JOB_PREFIX) :]
        return device


class _Forwarder(EventListener):
    """Hands each event straight to a callback instead of queueing it.

    qemu.qmp 0.0.6 keeps every event in an unbounded queue and history list per listener; a
    dashboard left running for days must not grow without bound.
    """

    def __init__(self, callback: Any) -> None:
        super().__init__()
        self._callback = callback

    async def put(self, event: Message) -> None:
        self._callback(event)


class QmpBackend(Backend):
    """QEMU processes reached directly through QMP: Proxmox sockets, hand-started QEMU, the QMP lab.

    Each QEMU is one domain, named by ``query-name`` or else by its socket's file name. One asyncio
    loop runs in a daemon thread; the synchronous methods submit work to it with a timeout.

    QEMU 7.2 crashes when ``query-named-block-nodes`` or ``query-block`` (both walk
    ``bdrv_block_device_info`` -> ``bdrv_refresh_filename``) run while a stream finishes, so disks and
    chains are read only while no job on that QEMU can be finishing, and cached otherwise.
    """

    supports_pause = True
    supports_events = True
    supports_base = True

    def __init__(
        self,
        sockets: Iterable[Path | str] = (),
        directory: Path | str | None = None,
        *,
        readonly: bool = False,
        timeout: float = 10.0,
        rescan_interval: float = 2.0,
    ) -> None:
        self._sockets = tuple(Path(s).absolute() for s in sockets)
        self._directory = Path(directory).absolute() if directory is not None else None
        if not self._sockets and self._directory is None:
            raise ValueError("QmpBackend needs socket paths or a directory")
        places = [str(p) for p in ((self._directory,) if self._directory else ()) + self._sockets]
        super().__init__("qmp:" + ",".join(places), readonly=readonly)
        self.timeout = timeout
        self.rescan_interval = rescan_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._qemus: dict[Path, _Qemu] = {}
        self._rescanner: asyncio.Task[None] | None = None
        self._scan_lock = asyncio.Lock()
        self._host_state = ConnectionState.CONNECTING
        self._host_message = ""

    # -- loop plumbing ----------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._loop
        if loop is None or not loop.is_running():
            coro.close()
            raise HostError(f"{self.uri}: not connected")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        limit = timeout if timeout is not None else self.timeout * 2 + 1
        try:
            return future.result(limit)
        except FutureTimeout as exc:
            future.cancel()
            raise HostError(f"{self.uri}: QEMU did not answer within {limit:.0f} s") from exc

    async def _execute(self, qemu: _Qemu, command: str, arguments: dict[str, Any] | None = None) -> object:
        """Run one QMP command on ``qemu``, translating transport failures to HostError."""
        client = qemu.client
        if client is None or not qemu.connected:
            raise HostError(f"{qemu.name}: QEMU is not reachable at {qemu.socket} ({qemu.message or 'lost'})")
        try:
            return await asyncio.wait_for(client.execute(command, arguments), self.timeout)
        except ExecuteError:
            raise
        except TimeoutError as exc:
            raise HostError(
                f"{qemu.name}: QEMU did not answer {command} within {self.timeout:.0f} s"
            ) from exc
        except (QMPError, OSError, EOFError) as exc:
            raise HostError(f"{qemu.name}: {command} failed: {exc or type(exc).__name__}") from exc

    def _emit_safely(self, event: JobEvent | ConnectionEvent | DomainsChanged) -> None:
        try:
            self.emit(event)
        except Exception:  # a broken listener must not kill the QMP reader
            log.exception("event listener failed on %r", event)

    # -- connection -------------------------------------------------------------------------

    def connect(self) -> None:
        if self._loop is not None:
            return
        if self._directory is not None and not self._directory.is_dir():
            raise HostError(f"{self.uri}: {self._directory} is not a directory of QMP sockets")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"qmp {self.uri}", daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop
        try:
            self._call(self._scan(), timeout=self.timeout * 2 + 5)
        except BlocktuiError:
            self.close()
            raise
        if self._sockets and not self._directory and not any(q.connected for q in self._qemus.values()):
            message = "; ".join(q.message for q in self._qemus.values())
            self.close()
            raise HostError(f"{self.uri}: no QEMU reachable ({message})")
        self._call(self._start_rescanner())
        self._host_state = ConnectionState.CONNECTED
        self._emit_safely(ConnectionEvent(self.uri, ConnectionState.CONNECTED))

    @property
    def connected(self) -> bool:
        """Whether ``connect`` succeeded and ``close`` has not run since."""
        return self._loop is not None

    async def _start_rescanner(self) -> None:
        self._rescanner = asyncio.get_running_loop().create_task(self._rescan_forever())

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if loop.is_running():
            with contextlib.suppress(BlocktuiError):
                self._call(self._shutdown(), timeout=self.timeout + 2)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()
        self._loop = None
        self._thread = None
        self._host_state = ConnectionState.DISCONNECTED

    async def _shutdown(self) -> None:
        if self._rescanner is not None:
            self._rescanner.cancel()
        for qemu in list(self._qemus.values()):
            await self._drop_connection(qemu)
        self._qemus.clear()

    async def _rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.rescan_interval)
            try:
                await self._scan()
            except Exception:  # keep rescanning: one bad socket must not end discovery
                log.exception("%s: rescan failed", self.uri)

    def _socket_paths(self) -> list[Path]:
        paths = list(self._sockets)
        if self._directory is not None:
            for pattern in SOCKET_PATTERNS:
                paths.extend(sorted(self._directory.glob(pattern)))
        return list(dict.fromkeys(paths))

    async def _scan(self) -> None:
        """Pick up new sockets, forget vanished ones (directory mode), reconnect lost QEMUs."""
        # The periodic rescan and a lookup of a new name may overlap: connect each QEMU once.
        async with self._scan_lock:
            await self._scan_once()

    async def _scan_once(self) -> None:
        paths = self._socket_paths()
        changed = False
        for path in list(self._qemus):
            if path not in paths and path not in self._sockets:
                qemu = self._qemus.pop(path)
                await self._lose(qemu, "its socket was removed")
                changed = True
        attempts = []
        for path in paths:
            known = self._qemus.get(path)
            if known is None:
                known = self._qemus[path] = _Qemu(socket=path, name=path.stem)
                changed = True
            if not known.connected:
                attempts.append(self._connect_qemu(known))
        results = await asyncio.gather(*attempts)
        if changed or any(results):
            self._name_domains()
            self._emit_safely(DomainsChanged(self.uri))
        self._update_host_state()

    def _update_host_state(self) -> None:
        total = len(self._qemus)
        up = sum(q.connected for q in self._qemus.values())
        if total and not up:
            state = ConnectionState.DISCONNECTED
            message = "no QEMU reachable: " + "; ".join(
                f"{q.socket.name}: {q.message}" for q in self._qemus.values()
            )
        else:
            state = ConnectionState.CONNECTED
            message = f"{up} of {total} QEMU processes reachable" if up != total else ""
        if self._host_state in (ConnectionState.CONNECTED, ConnectionState.DISCONNECTED) and (
            state is not self._host_state or message != self._host_message
        ):
            self._host_state, self._host_message = state, message
            self._emit_safely(ConnectionEvent(self.uri, state, message))
        else:
            self._host_message = message

    async def _connect_qemu(self, qemu: _Qemu) -> bool:
        """Open a session to one QEMU; True when it is now connected."""
        client = QMPClient(qemu.socket.name)
        # The default listener queues every event forever; reject at the door, we use our own.
        client.events.event_filter = lambda _event: False
        client.register_listener(_Forwarder(lambda event: self._on_event(qemu, event)))
        try:
            await asyncio.wait_for(client.connect(str(qemu.socket)), CONNECT_TIMEOUT)
        except TimeoutError:
            qemu.message = "no greeting (another client may hold the socket: QEMU serves one at a time)"
            await self._abandon(client)
            return False
        except (QMPError, OSError) as exc:
            cause = getattr(exc, "exc", exc)
            qemu.message = f"cannot connect: {cause}"
            await self._abandon(client)
            return False
        qemu.client = client
        try:
            greeting = client.greeting
            if greeting is not None:
                # 0.0.6 models the greeting as an object whose ``version`` is a plain mapping.
                release = _dict(greeting.QMP.version.get("qemu"))
                qemu.version = f"QEMU {release.get('major')}.{release.get('minor')}.{release.get('micro')}"
            name = _dict(await self._execute(qemu, "query-name")).get("name")
            qemu.qmp_name = str(name) if name else None
            await self._refresh_status(qemu)
            await self._refresh_jobs(qemu)
        except (HostError, ExecuteError) as exc:
            qemu.message = str(exc)
            await self._drop_connection(qemu)
            return False
        qemu.message = ""
        qemu.watcher = asyncio.get_running_loop().create_task(self._watch(qemu, client))
        return True

    async def _abandon(self, client: QMPClient) -> None:
        with contextlib.suppress(QMPError, OSError, EOFError):
            await client.disconnect()

    async def _drop_connection(self, qemu: _Qemu) -> None:
        client, qemu.client = qemu.client, None
        if qemu.watcher is not None and qemu.watcher is not asyncio.current_task():
            qemu.watcher.cancel()
        qemu.watcher = None
        if client is not None:
            await self._abandon(client)

    async def _watch(self, qemu: _Qemu, client: QMPClient) -> None:
        """Notice the session ending (QEMU killed, quit, socket closed) and report it."""
        while client.runstate is Runstate.RUNNING:
            await client.runstate_changed()
        if qemu.client is client:
            await self._lose(qemu, "the QMP connection closed")
            self._update_host_state()

    async def _lose(self, qemu: _Qemu, why: str) -> None:
        """Mark a QEMU lost; its unfinished jobs end as UNKNOWN, never as completed."""
        await self._drop_connection(qemu)
        qemu.state = DomainState.LOST
        qemu.message = why
        for job in list(qemu.jobs.values()):
            if not job.state.is_final:
                job.state = JobState.UNKNOWN
                self._emit_safely(
                    JobEvent(
                        self.uri,
                        qemu.name,
                        job.disk,
                        job.kind,
                        JobState.UNKNOWN,
                        error=f"{LOST_NOTE} ({why})",
                        cur=job.cur,
                        end=job.end,
                    )
                )
        qemu.jobs.clear()
        self._emit_safely(DomainsChanged(self.uri, qemu.name))

    def _name_domains(self) -> None:
        """Domain names: ``query-name`` when set and unique, else the socket's stem."""
        wanted = {path: (q.qmp_name or path.stem) for path, q in self._qemus.items()}
        counts: dict[str, int] = {}
        for name in wanted.values():
            counts[name] = counts.get(name, 0) + 1
        for path, qemu in self._qemus.items():
            name = wanted[path]
            qemu.name = name if counts[name] == 1 else f"{name}@{path.stem}"

    # -- events -----------------------------------------------------------------------------

    def _on_event(self, qemu: _Qemu, event: Message) -> None:
        name = str(event["event"])
        data = _dict(event.get("data"))
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

    def _job_from_event(self, qemu: _Qemu, data: dict[str, Any]) -> _Job:
        job_id = str(data.get("device"))
        job = qemu.jobs.get(job_id)
        if job is None:
            job = qemu.jobs[job_id] = _Job(job_id, qemu.disk_for_device(job_id))
        if "type" in data:
            job.kind = _kind(data["type"])
        if isinstance(data.get("offset"), int):
            job.cur = data["offset"]
        if isinstance(data.get("len"), int):
            job.end = data["len"]
        if isinstance(data.get("speed"), int):
            job.speed = data["speed"]
        return job

    def _on_status_change(self, qemu: _Qemu, job_id: str, status: str) -> None:
        job = qemu.jobs.get(job_id)
        if status in _LIVE_STATES:
            if job is None:
                # Started by another client (or a non-block job): learn its type and device.
                job = qemu.jobs[job_id] = _Job(job_id, qemu.disk_for_device(job_id))
                asyncio.get_running_loop().create_task(self._refresh_jobs_quietly(qemu))
            job.state = _LIVE_STATES[status]
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

    def _emit_job(self, qemu: _Qemu, job: _Job) -> None:
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

    async def _dismiss(self, qemu: _Qemu, job_id: str) -> None:
        # We asked for auto-dismiss=false only so the error stays readable until recorded.
        job = qemu.jobs.get(job_id)
        if job is None or not job.state.is_final:
            return  # dismissed already, and the id may now belong to a newer job
        try:
            await self._execute(qemu, "job-dismiss", {"id": job_id})
        except (HostError, ExecuteError) as exc:
            log.warning("%s: cannot dismiss job %s: %s", qemu.name, job_id, exc)

    async def _refresh_jobs_quietly(self, qemu: _Qemu) -> None:
        try:
            await self._refresh_jobs(qemu)
        except (HostError, ExecuteError) as exc:
            log.info("%s: query-block-jobs failed: %s", qemu.name, exc)

    # -- reading state ----------------------------------------------------------------------

    async def _refresh_status(self, qemu: _Qemu) -> None:
        status = _dict(await self._execute(qemu, "query-status")).get("status")
        qemu.state = _RUN_STATES.get(str(status), DomainState.NOSTATE)

    async def _refresh_jobs(self, qemu: _Qemu) -> list[_Job]:
        """Read ``query-block-jobs`` (safe while jobs finish) into ``qemu.jobs``."""
        # One reading at a time: an older reply must not undo what a newer one found.
        async with qemu.jobs_lock:
            return await self._refresh_jobs_locked(qemu)

    async def _refresh_jobs_locked(self, qemu: _Qemu) -> list[_Job]:
        listed = _list(await self._execute(qemu, "query-block-jobs"))
        seen: list[_Job] = []
        fresh: list[_Job] = []
        for info in listed:
            job_id = str(info.get("device"))
            job = qemu.jobs.get(job_id)
            if job is None:
                job = qemu.jobs[job_id] = _Job(job_id, qemu.disk_for_device(job_id))
                job.ours = job_id.startswith(JOB_PREFIX)
            newly_known = not job.known
            job.known = True
            job.kind = _kind(info.get("type"))
            job.cur = int(info.get("offset", 0))
            job.end = int(info.get("len", 0))
            job.speed = int(info.get("speed", 0))
            status = str(info.get("status"))
            if status in _LIVE_STATES:
                job.state = _LIVE_STATES[status]
            elif status == "concluded" and not job.state.is_final:
                error = info.get("error")
                if error:
                    job.error = str(error)
                    job.state = JobState.CANCELLED if "cancel" in str(error).lower() else JobState.FAILED
                else:
                    job.state = JobState.COMPLETED
                self._emit_job(qemu, job)
                if job.ours:
                    asyncio.get_running_loop().create_task(self._dismiss(qemu, job_id))
                newly_known = False
            if newly_known:
                fresh.append(job)
            if job.ours and job.state.is_final:
                # Its outcome went out as an event; it lingers only until our job-dismiss lands.
                continue
            seen.append(job)
        targets = {disk.target for disk in qemu.disks or ()}
        if any(job.disk not in targets for job in fresh):
            await self._place_jobs(qemu, [job for job in fresh if job.disk not in targets])
        for job in fresh:
            self._emit_job(qemu, job)
        listed_ids = {str(info.get("device")) for info in listed}
        for job_id in [j for j in qemu.jobs if j not in listed_ids]:
            if qemu.jobs[job_id].kind is JobKind.UNKNOWN or qemu.jobs[job_id].state.is_final:
                del qemu.jobs[job_id]  # a non-block job, or one already reported as ended
        return seen

    async def _place_jobs(self, qemu: _Qemu, jobs: list[_Job]) -> None:
        """Find the disks of other clients' jobs (their ids name no disk) from the block graph.

        ``x-debug-query-block-graph`` only walks node names and edges, with no filename refresh, so
        it is safe while jobs finish. A job's edges lead to the node it works on, sometimes through
        a filter it inserted: walk down from there to a disk's top node.
        """
        try:
            graph = _dict(await self._execute(qemu, "x-debug-query-block-graph"))
        except ExecuteError as exc:
            log.info("%s: no block graph (%s); jobs keep their ids as disk names", qemu.name, exc)
            return
        names = {int(n["id"]): str(n.get("name")) for n in _list(graph.get("nodes"))}
        edges: dict[int, list[tuple[str, int]]] = {}
        for edge in _list(graph.get("edges")):
            edges.setdefault(int(edge["parent"]), []).append((str(edge["name"]), int(edge["child"])))
        disk_by_node: dict[str, str] = {}
        for disk in qemu.disks or ():
            disk_by_node.setdefault(disk.node or disk.target, disk.target)
        for disk_target, layers in qemu.chain_nodes.items():
            for layer in layers:
                disk_by_node.setdefault(layer, disk_target)
        by_name = {name: node_id for node_id, name in names.items()}
        for job in jobs:
            start = by_name.get(job.job_id)
            if start is None:
                continue
            # "source" is the disk for mirror and commit; stream's "main node" is its filter.
            queue = sorted(edges.get(start, []), key=lambda e: e[0] != "source")
            visited: set[int] = set()
            while queue:
                _edge, node_id = queue.pop(0)
                if node_id in visited:
                    continue
                visited.add(node_id)
                if names.get(node_id) in disk_by_node:
                    job.disk = disk_by_node[names[node_id]]
                    break
                queue.extend(edges.get(node_id, []))

    async def _refresh_disks(self, qemu: _Qemu) -> None:
        """Re-read disks and chains, but only when no job on this QEMU can be finishing."""
        async with qemu.lock:
            jobs = await self._refresh_jobs(qemu)
            if any(not job.state.is_final for job in jobs):
                # A job may be finishing: keep the cached chains. With none cached yet (we
                # connected mid-job), the graph alone names the disks and the shape of their
                # chains; file names wait until no job runs.
                if qemu.disks is None:
                    graph = _dict(await self._execute(qemu, "x-debug-query-block-graph"))
                    qemu.disks, qemu.chain_nodes = _disks_from(graph, [], [])
                return
            graph = _dict(await self._execute(qemu, "x-debug-query-block-graph"))
            named = _list(await self._execute(qemu, "query-named-block-nodes", {"flat": True}))
            blocks = _list(await self._execute(qemu, "query-block"))
        disks, chain_nodes = _disks_from(graph, named, blocks)
        qemu.disks = disks
        qemu.chain_nodes = chain_nodes

    async def _domain(self, qemu: _Qemu, refresh: bool = True) -> Domain:
        if qemu.connected and refresh:
            try:
                await self._refresh_status(qemu)
                await self._refresh_disks(qemu)
            except (HostError, ExecuteError) as exc:
                log.info("%s: refresh failed: %s", qemu.name, exc)
        state = qemu.state if qemu.connected else DomainState.LOST
        return Domain(self.uri, qemu.name, state, disks=qemu.disks or (), persistent=False)

    async def _domains(self) -> list[Domain]:
        return list(await asyncio.gather(*(self._domain(q) for q in self._qemus.values())))

    async def _find(self, name: str) -> _Qemu:
        for attempt in range(2):
            for qemu in self._qemus.values():
                if qemu.name == name:
                    return qemu
            if attempt == 0:
                await self._scan()  # it may have started since the last periodic scan
        raise NotFound(f"{self.uri}: no QEMU named {name!r}")

    async def _get_domain(self, name: str) -> Domain:
        return await self._domain(await self._find(name))

    # -- Backend API ------------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        versions = sorted({q.version for q in self._qemus.values() if q.version})
        return HostInfo(
            uri=self.uri,
            state=self._host_state,
            readonly=self.readonly,
            hypervisor=", ".join(versions) or "QEMU (QMP)",
            message=self._host_message,
            extra={"qemu processes": str(len(self._qemus))},
        )

    def list_domains(self) -> list[Domain]:
        return self._call(self._domains())

    def get_domain(self, name: str) -> Domain:
        return self._call(self._get_domain(name))

    def start_stream(self, domain: str, disk: str, *, bandwidth: int = 0, base: str | None = None) -> None:
        _check_bandwidth(bandwidth)
        self._require_writable(f"stream {domain}/{disk}")
        self._call(self._start_stream(domain, disk, bandwidth, base))

    async def _start_stream(self, domain: str, disk: str, bandwidth: int, base: str | None) -> None:
        qemu = await self._find(domain)
        await self._domain(qemu)
        found = next((d for d in qemu.disks or () if d.target == disk), None)
        if found is None:
            raise NotFound(f"{domain} has no disk {disk!r}")
        if not found.has_backing:
            raise NothingToStream(f"{domain}/{disk} has no backing file: there is nothing to stream")
        arguments: dict[str, Any] = {
            "job-id": job_id_for(disk),
            "device": found.node or disk,
            "speed": bandwidth,
            "on-error": "report",
            "auto-dismiss": False,
        }
        if base is not None:
            paths = [layer.path for layer in found.chain]
            if base not in paths:
                raise NotFound(f"{domain}/{disk}: {base} is not in the backing chain ({', '.join(paths)})")
            if paths.index(base) == 0:
                raise NothingToStream(f"{domain}/{disk}: {base} is already the nearest backing image")
            arguments["base-node"] = qemu.chain_nodes[disk][paths.index(base)]
        async with qemu.lock:
            for job in await self._refresh_jobs(qemu):
                if job.disk == disk and not job.state.is_final:
                    raise JobBusy(f"{domain}/{disk} already has a {job.kind} job ({job.job_id})")
            job_id = arguments["job-id"]
            previous = qemu.jobs.get(job_id)
            if previous is not None and previous.state.is_final:
                await self._dismiss(qemu, job_id)  # our last job on this disk, ended but not yet dismissed
            qemu.jobs[job_id] = _Job(
                job_id, disk, JobKind.PULL, JobState.QUEUED, speed=bandwidth, ours=True, known=True
            )
            try:
                await self._execute(qemu, "block-stream", arguments)
            except ExecuteError as exc:
                qemu.jobs.pop(job_id, None)
                raise _translate(exc, f"{domain}/{disk}: cannot start the stream") from exc
            except HostError:
                qemu.jobs.pop(job_id, None)
                raise

    async def _job_command(self, domain: str, disk: str, command: str, extra: dict[str, Any]) -> None:
        qemu = await self._find(domain)
        job = await self._current_job(qemu, disk)
        if job is None:
            raise NoJob(f"{domain}/{disk} has no block job")
        try:
            await self._execute(qemu, command, {"device": job.job_id, **extra})
        except ExecuteError as exc:
            raise _translate(exc, f"{domain}/{disk}: {command} refused") from exc

    async def _current_job(self, qemu: _Qemu, disk: str) -> _Job | None:
        if not qemu.connected:
            raise HostError(f"{qemu.name}: QEMU is not reachable at {qemu.socket} ({qemu.message or 'lost'})")
        for job in await self._refresh_jobs(qemu):
            if job.disk == disk:
                return job
        return None

    def set_speed(self, domain: str, disk: str, bandwidth: int) -> None:
        _check_bandwidth(bandwidth)
        self._require_writable(f"change the speed of {domain}/{disk}")
        self._call(self._job_command(domain, disk, "block-job-set-speed", {"speed": bandwidth}))

    def abort(self, domain: str, disk: str) -> None:
        self._require_writable(f"abort the job on {domain}/{disk}")
        self._call(self._job_command(domain, disk, "block-job-cancel", {}))

    def pause(self, domain: str, disk: str) -> None:
        self._require_writable(f"pause the job on {domain}/{disk}")
        self._call(self._job_command(domain, disk, "block-job-pause", {}))

    def resume(self, domain: str, disk: str) -> None:
        self._require_writable(f"resume the job on {domain}/{disk}")
        self._call(self._job_command(domain, disk, "block-job-resume", {}))

    def job_info(self, domain: str, disk: str) -> BlockJob | None:
        return self._call(self._job_info(domain, disk))

    async def _job_info(self, domain: str, disk: str) -> BlockJob | None:
        qemu = await self._find(domain)
        job = await self._current_job(qemu, disk)
        return None if job is None else self._block_job(qemu, job)

    def list_jobs(self) -> list[BlockJob]:
        return self._call(self._list_jobs())

    async def _list_jobs(self) -> list[BlockJob]:
        async def one(qemu: _Qemu) -> list[BlockJob]:
            if not qemu.connected:
                return []
            try:
                jobs = await self._refresh_jobs(qemu)
            except (HostError, ExecuteError) as exc:
                log.info("%s: query-block-jobs failed: %s", qemu.name, exc)
                return []
            return [self._block_job(qemu, job) for job in jobs]

        per_qemu = await asyncio.gather(*(one(q) for q in self._qemus.values()))
        return [job for jobs in per_qemu for job in jobs]

    def _block_job(self, qemu: _Qemu, job: _Job) -> BlockJob:
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

    def _require_writable(self, what: str) -> None:
        if self.readonly:
            raise ReadOnly(f"{self.uri}: read-only connection; cannot {what}")


def _check_bandwidth(bandwidth: int) -> None:
    """QMP takes a speed in bytes/s from 0 (unlimited) to 2^63-1; refuse anything else up front."""
    if not 0 <= bandwidth <= MAX_BYTES:
        raise InvalidInput(f"bandwidth {bandwidth} B/s is out of range: use 0 (unlimited) up to {MAX_BYTES}")


def _translate(exc: ExecuteError, context: str) -> BlocktuiError:
    """A QMP error reply as one of our errors, with QEMU's own words kept."""
    desc = str(exc)
    lowered = desc.lower()
    if "is busy" in lowered or "in use" in lowered or "already" in lowered:
        return JobBusy(f"{context}: {desc}")
    if exc.error_class == "DeviceNotActive" or ("not found" in lowered and "job" in lowered):
        return NoJob(f"{context}: {desc}")
    if "cannot find device" in lowered or exc.error_class == "DeviceNotFound":
        return NotFound(f"{context}: {desc}")
    return HostError(f"{context}: {desc}")


def _disks_from(
    graph: dict[str, Any], named: Sequence[dict[str, Any]], blocks: Sequence[dict[str, Any]]
) -> tuple[tuple[Disk, ...], dict[str, tuple[str, ...]]]:
    """Disks and their chains from the block graph, node details and block backends.

    The graph gives the shape (which node backs which) with node names; ``query-named-block-nodes``
    gives file names and formats; ``query-block`` names the disks that have a device.
    """
    nodes = {int(n["id"]): n for n in _list(graph.get("nodes"))}
    children: dict[int, dict[str, int]] = {}
    driver_parented: set[int] = set()
    for edge in _list(graph.get("edges")):
        parent, child = int(edge["parent"]), int(edge["child"])
        children.setdefault(parent, {})[str(edge["name"])] = child
        if nodes.get(parent, {}).get("type") == "block-driver":
            driver_parented.add(child)
    by_name = {str(n.get("node-name")): n for n in named}
    devices: dict[str, str] = {}
    for block in blocks:
        inserted = _dict(block.get("inserted"))
        node_name = inserted.get("node-name")
        label = str(block.get("device") or "") or _qdev_id(str(block.get("qdev") or ""))
        if node_name and label:
            devices[str(node_name)] = label

    def filter_shaped(node_id: int) -> bool:
        # Without node details: a filter's only child is "file", and that child is a format node
        # (it has children of its own), where a format node's "file" is a bare protocol node.
        own = children.get(node_id, {})
        return set(own) == {"file"} and bool(children.get(own["file"]))

    def is_filter(node_id: int) -> bool:
        info = by_name.get(nodes[node_id]["name"])
        return str(info.get("drv")) in _FILTER_DRIVERS if info else filter_shaped(node_id)

    def below_filters(node_id: int) -> int:
        while is_filter(node_id):
            # copy-on-read and throttle filter through "file", mirror_top/commit_top through "backing".
            child = children.get(node_id, {}).get("file", children.get(node_id, {}).get("backing"))
            if child is None:
                break
            node_id = child
        return node_id

    disks: list[Disk] = []
    chain_nodes: dict[str, tuple[str, ...]] = {}
    for node_id, node in sorted(nodes.items(), key=lambda item: str(item[1].get("name"))):
        if node.get("type") != "block-driver" or node_id in driver_parented:
            continue
        top_name = str(node["name"])
        layer_id = below_filters(node_id)
        format_name = str(nodes[layer_id]["name"])
        format_info = by_name.get(format_name, {})
        device_label = devices.get(top_name) or devices.get(format_name)
        if device_label is None and (
            str(format_info.get("drv")) in _PROTOCOL_DRIVERS or format_name.startswith("#")
        ):
            continue  # a bare protocol node or an implicit leftover, not a disk
        layers: list[ChainLayer] = []
        layer_names: list[str] = []
        seen = {layer_id}
        while (backing := children.get(layer_id, {}).get("backing")) is not None and backing not in seen:
            seen.add(backing)
            layer_id = below_filters(backing)
            info = by_name.get(str(nodes[layer_id]["name"]), {})
            layers.append(ChainLayer(str(info.get("file", nodes[layer_id]["name"])), info.get("drv")))
            layer_names.append(str(nodes[layer_id]["name"]))
        target = device_label or format_name
        disks.append(
            Disk(
                target=target,
                source=str(format_info["file"]) if format_info.get("file") else None,
                format=format_info.get("drv"),
                readonly=bool(format_info.get("ro", False)),
                chain=tuple(layers),
                node=format_name,
            )
        )
        chain_nodes[target] = tuple(layer_names)
    return tuple(sorted(disks, key=lambda d: d.target)), chain_nodes


__all__ = ["JOB_PREFIX", "LOST_NOTE", "QmpBackend", "job_id_for"]
