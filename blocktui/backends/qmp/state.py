"""What the QMP backend knows of each QEMU and its jobs, and the QMP vocabulary it maps to ours."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import EventListener, ExecuteError, Message, QMPClient, Runstate

from blocktui.core.errors import BlocktuiError, HostError, JobBusy, NoJob, NotFound
from blocktui.core.model import Disk, DomainState, JobKind, JobState
from blocktui.core.windows import Pacer, Window

#: Socket names a directory scan picks up (Proxmox uses ``<vmid>.qmp``).
SOCKET_PATTERNS = ("*.qmp", "*.sock")

#: Seconds to wait for a QMP greeting; QEMU greets at once unless another client holds the socket.
CONNECT_TIMEOUT = 3.0

#: Prefix of the job ids we give our streams; QEMU job ids must start with a letter.
JOB_PREFIX = "blocktui-"

KINDS = {
    "stream": JobKind.PULL,
    "mirror": JobKind.COPY,
    "commit": JobKind.COMMIT,
    "backup": JobKind.BACKUP,
}

# JobStatus values that are not outcomes yet; "concluded" is decided by the completion events.
LIVE_STATES = {
    "created": JobState.QUEUED,
    "running": JobState.ACTIVE,
    "paused": JobState.PAUSED,
    "ready": JobState.READY,
    "standby": JobState.PAUSED,
    "waiting": JobState.ACTIVE,
    "pending": JobState.ACTIVE,
    "aborting": JobState.ACTIVE,
}

RUN_STATES = {
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

#: Seconds a concluded blocktui job started by another process is left for that process to read its
#: outcome (it polls twice a second) before this one dismisses it: a blocktui that died must not
#: leave it forever, nor may a bystander take the outcome from the one waiting for it.
LINGER = 10.0

LOST_NOTE = "the QEMU process went away (its QMP connection closed) while the job ran; its outcome is unknown"


def job_id_for(disk: str) -> str:
    """The job id we give a stream on ``disk``: QEMU accepts only letters, digits, ``-._``."""
    return JOB_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "_", disk)


def job_control(verb: str, job_id: str, *, job_commands: bool) -> tuple[str, dict[str, Any]]:
    """The QMP command and arguments to ``pause``, ``resume`` or ``dismiss`` one job.

    QEMU 10.1 deprecates ``block-job-pause/resume/dismiss`` for ``job-*`` (which take ``id``);
    QEMU before 3.0 has only the ``block-job-*`` forms (which take ``device``).
    """
    if job_commands:
        return f"job-{verb}", {"id": job_id}
    return f"block-job-{verb}", {"device": job_id}


def job_kind(job_type: object) -> JobKind:
    """Our kind for a QMP ``JobType`` (``stream``, ``mirror``, ...)."""
    return KINDS.get(str(job_type), JobKind.UNKNOWN)


@dataclass
class QemuJob:
    """What we last knew of one QEMU job (by job id)."""

    job_id: str
    disk: str
    kind: JobKind = JobKind.UNKNOWN
    state: JobState = JobState.QUEUED
    cur: int = 0
    end: int = 0
    speed: int = 0
    error: str | None = None
    #: A blocktui job (our job id prefix), started by this process or another blocktui.
    ours: bool = False
    #: Started by this very process: it may dismiss the job as soon as it read the outcome.
    started_here: bool = False
    #: When this process first saw the job concluded (monotonic seconds).
    concluded_at: float | None = None
    #: A job-dismiss for it is on its way.
    dismissing: bool = False
    #: Seen in query-block-jobs (so a block job, with its disk worked out), or started by us.
    known: bool = False


@dataclass
class WindowRun:
    """One window this process copies on a QEMU: its nodes, what is left to read, and its pace.

    Attributes:
        name: the filter node's name, also the NBD export's id and name (``blocktui-<pid>-w<n>``).
        todo: the ``(start, length)`` ranges still to read, ascending.
        inserted, exported: the filter node and the export exist in QEMU (they must go at the end).
        stop: an abort (or this process closing) asks the reader to stop.
        lost: its QEMU went away: the outcome is unknown and there is nothing left to remove.
        wake: set to have the reader look again now (a new speed, a pause, a resume, a stop).
    """

    disk: str
    name: str
    window: Window
    todo: list[tuple[int, int]]
    speed: int
    pacer: Pacer
    cur: int = 0
    state: JobState = JobState.ACTIVE
    error: str | None = None
    paused: bool = False
    stop: bool = False
    stop_reason: str = ""
    lost: bool = False
    inserted: bool = False
    exported: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def end(self) -> int:
        """The job's total: the window's length."""
        return self.window.length


@dataclass
class Qemu:
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
    jobs: dict[str, QemuJob] = field(default_factory=dict)
    #: Ids of the jobs the last ``query-block-jobs`` listed, whatever their status.
    listed: set[str] = field(default_factory=set)
    #: ``query-named-block-nodes`` as last read, while no job existed; node names are stable, so
    #: it still tells the files of the nodes a later graph shows.
    named: list[dict[str, Any]] = field(default_factory=list)
    #: Held while reading disks or starting a job, so no job starts between "idle" and the read.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    jobs_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    watcher: asyncio.Task[None] | None = None
    #: The last contact succeeded (held: the session is open; shared: the last short one worked).
    up: bool = False
    #: Coroutines inside a short session (``QmpLink._talking``); the last one out lets go.
    users: int = 0
    open_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Whether this QEMU has ``job-pause``/``job-resume``/``job-dismiss`` (read once per connection);
    #: QEMU 10.1 deprecates the ``block-job-*`` forms of those three.
    job_commands: bool = True
    #: The windows this process copies, by disk target.
    windows: dict[str, WindowRun] = field(default_factory=dict)
    #: The NBD server this process started for its windows (its socket), None when it started none.
    nbd_socket: Path | None = None
    #: Held while starting or stopping that server and adding an export to it.
    nbd_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def connected(self) -> bool:
        """Whether a QMP session with this QEMU is open right now."""
        return self.client is not None and self.client.runstate is Runstate.RUNNING

    def disk_for_device(self, device: str) -> str:
        """Map a job's ``device`` (our job id, a device name or a node name) to a disk target.

        A job started by another client names no disk: ``graph.job_disks`` places it.
        """
        for disk in self.disks or ():
            if device in (disk.target, disk.node, job_id_for(disk.target)):
                return disk.target
        if device.startswith(JOB_PREFIX):
            return device[len(JOB_PREFIX) :]
        return device


class Forwarder(EventListener):
    """Hands each event straight to a callback instead of queueing it.

    qemu.qmp 0.0.6 keeps every event in an unbounded queue and history list per listener; a
    dashboard left running for days must not grow without bound.
    """

    def __init__(self, callback: Any) -> None:
        super().__init__()
        self._callback = callback

    async def put(self, event: Message) -> None:
        self._callback(event)


def translate_error(exc: ExecuteError, context: str) -> BlocktuiError:
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
