"""Hosts, domains, disks, backing chains and block jobs: the facts every layer shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class JobKind(StrEnum):
    """What a block job does to the chain."""

    PULL = "pull"
    COPY = "copy"
    COMMIT = "commit"
    ACTIVE_COMMIT = "active-commit"
    BACKUP = "backup"
    #: A part of a disk copied from its backing chain by blocktui (see ``core.windows``).
    WINDOW = "window"
    UNKNOWN = "unknown"


class JobState(StrEnum):
    """Where a block job is in its life; the last four are outcomes."""

    QUEUED = "queued"
    ACTIVE = "active"
    PAUSED = "paused"
    READY = "ready"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """True once the job can no longer change (it ended, or its end cannot be known)."""
        return self in _FINAL_STATES


_FINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.UNKNOWN})


class DomainState(StrEnum):
    """A domain's run state, as the host reports it."""

    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    SHUTDOWN = "shutting down"
    CRASHED = "crashed"
    SUSPENDED = "suspended"
    BLOCKED = "blocked"
    NOSTATE = "no state"
    LOST = "lost"


class ConnectionState(StrEnum):
    """A host connection's health, shown in the dashboard header."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"
    #: The host refused the credentials it was offered (the message says why).
    NEEDS_AUTH = "needs authentication"


@dataclass(frozen=True, slots=True)
class ChainLayer:
    """One backing image below a disk's active layer."""

    path: str
    format: str | None = None


@dataclass(frozen=True, slots=True)
class Disk:
    """A block device of a domain and its backing chain.

    Attributes:
        target: the guest-visible name libvirt uses (``vda``) or the QMP device/node name.
        source: the active (top) image's path, or None for an empty drive.
        chain: the backing images, nearest first; empty when the disk stands alone.
        node: the backend's own handle for the top node (QMP node name), when it has one.
        chain_known: False when the backend could not see the chain (libvirt describes no backing
            chain for a shut-off domain): an empty ``chain`` then proves nothing.
    """

    target: str
    source: str | None
    format: str | None = None
    bus: str | None = None
    device: str = "disk"
    readonly: bool = False
    chain: tuple[ChainLayer, ...] = ()
    node: str | None = None
    chain_known: bool = True

    @property
    def has_backing(self) -> bool:
        """Whether there is anything to stream into this disk."""
        return bool(self.chain)

    @property
    def depth(self) -> int:
        """Number of images in the chain, the top one included."""
        return 1 + len(self.chain)


@dataclass(frozen=True, slots=True)
class Domain:
    """A virtual machine on one host (a libvirt domain or one QEMU process).

    Attributes:
        error: why the domain could not be read (its disks are then unknown); empty when it could.
    """

    host: str
    name: str
    state: DomainState
    disks: tuple[Disk, ...] = ()
    uuid: str | None = None
    persistent: bool = True
    error: str = ""

    def disk(self, target: str) -> Disk | None:
        """The disk with this target name, or None."""
        return next((d for d in self.disks if d.target == target), None)


class JobKey(NamedTuple):
    """Identifies a block job: one job per disk at a time, as libvirt and QEMU allow."""

    host: str
    domain: str
    disk: str


@dataclass(frozen=True, slots=True)
class BlockJob:
    """A snapshot of one block job as a backend reported it.

    Attributes:
        cur: bytes done so far (the backend's progress counter).
        end: the total the counter is heading to; 0 when not yet known.
        bandwidth: the limit in bytes/s; 0 means unlimited.
        error: the reason a job failed, when the backend says one.
        job_id: the backend's own job identifier, when it has one (QMP).
    """

    host: str
    domain: str
    disk: str
    kind: JobKind
    state: JobState
    cur: int = 0
    end: int = 0
    bandwidth: int = 0
    error: str | None = None
    job_id: str | None = None

    @property
    def key(self) -> JobKey:
        """The (host, domain, disk) this job belongs to."""
        return JobKey(self.host, self.domain, self.disk)

    @property
    def remaining(self) -> int:
        """Bytes still to copy, never negative."""
        return max(0, self.end - self.cur)

    @property
    def fraction(self) -> float:
        """Progress from 0.0 to 1.0; 0.0 while the total is unknown."""
        if self.end <= 0:
            return 1.0 if self.state is JobState.COMPLETED else 0.0
        return min(1.0, self.cur / self.end)


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A backend's report that a job changed state (libvirt BLOCK_JOB_2, QMP job events)."""

    host: str
    domain: str
    disk: str
    kind: JobKind
    state: JobState
    error: str | None = None
    cur: int | None = None
    end: int | None = None

    @property
    def key(self) -> JobKey:
        """The (host, domain, disk) this event is about."""
        return JobKey(self.host, self.domain, self.disk)


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A host connection changed health."""

    host: str
    state: ConnectionState
    message: str = ""


@dataclass(frozen=True, slots=True)
class DomainsChanged:
    """Something about a host's domains changed (defined, started, stopped, renamed...)."""

    host: str
    domain: str | None = None


BackendEvent = JobEvent | ConnectionEvent | DomainsChanged


@dataclass(frozen=True, slots=True)
class HostInfo:
    """What the dashboard header shows about one connection."""

    uri: str
    state: ConnectionState
    readonly: bool = False
    hypervisor: str = ""
    message: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    #: Seconds the host's current call has gone unanswered (0: it answers).
    silent_for: float = 0.0
