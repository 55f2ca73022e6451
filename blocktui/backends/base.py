"""The one interface every backend implements, with flags for what only some can do.

Every method may block (network round trips, a hung host): callers run them off the UI thread.
Methods return core objects, never library handles, and raise errors from ``blocktui.core.errors``
with the library's exception chained as the cause.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence

from blocktui.core.allocation import DiskMap
from blocktui.core.errors import ReadOnly, Unsupported
from blocktui.core.model import BackendEvent, BlockJob, Disk, Domain, HostInfo
from blocktui.core.windows import Window

log = logging.getLogger(__name__)

EventListener = Callable[[BackendEvent], None]


class Backend(ABC):
    """A connection to one host (a libvirt URI) or one group of QEMU processes (QMP sockets).

    Attributes:
        supports_pause: ``pause``/``resume`` hold a job in place (QMP). Without it, pausing a stream
            means stopping at a checkpoint and pulling again later.
        supports_events: job state changes arrive through the listener, so polling only refreshes
            progress.
        supports_base: a stream can stop at a chosen base image instead of pulling the whole chain.
        sees_host_files: the host's image paths name files on this machine (a local libvirt URI,
            QMP sockets), so blocktui may look at them itself (identity, free space, the
            allocation map).
        supports_window: ``start_window`` copies any window of a disk (a copy-on-read filter read
            through an NBD export, on QMP). Without it only a prefix window can be had: a pull
            stopped at the window's end.
        supports_allocation_map: ``allocation_map`` asks the host where a disk's data lives, for
            disks whose images are not files on this machine.
    """

    supports_pause: bool = False
    supports_events: bool = False
    supports_base: bool = False
    sees_host_files: bool = False
    supports_window: bool = False
    supports_allocation_map: bool = False

    def __init__(self, uri: str, *, readonly: bool = False) -> None:
        self.uri = uri
        self.readonly = readonly
        self._listener: EventListener | None = None

    def set_listener(self, listener: EventListener | None) -> None:
        """Register the callable that receives job, connection and domain events.

        It may be called from any thread (libvirt's event thread, a QMP reader); it must not block.
        """
        self._listener = listener

    def emit(self, event: BackendEvent) -> None:
        """Hand an event to the listener, if one is registered."""
        listener = self._listener
        if listener is not None:
            listener(event)

    def _emit_safely(self, event: BackendEvent) -> None:
        """``emit`` from a thread that serves more than this call (libvirt's event thread, a QMP
        reader): a listener's bug is logged there, never raised into it."""
        try:
            self.emit(event)
        except Exception:
            log.exception("event listener failed on %r", event)

    def _require_writable(self, action: str) -> None:
        """Refuse a change on a read-only connection.

        Args:
            action: what was refused, as the error's start ("cannot stream vm/vda").

        Raises:
            ReadOnly: the connection was opened read-only.
        """
        if self.readonly:
            raise ReadOnly(f"{action}: the connection to {self.uri} is read-only (started with --readonly)")

    @abstractmethod
    def connect(self) -> None:
        """Open the connection.

        Raises:
            HostError: the host cannot be reached.
        """

    @abstractmethod
    def close(self) -> None:
        """Close the connection; running jobs keep running on the host."""

    @abstractmethod
    def host_info(self) -> HostInfo:
        """The connection's current state, for the header: what the backend knows, never a host call
        (the session asks it while holding its lock)."""

    @abstractmethod
    def list_domains(self) -> list[Domain]:
        """Every domain in every state, with disks and backing chains from the live configuration."""

    @abstractmethod
    def get_domain(self, name: str) -> Domain:
        """One domain by name.

        Raises:
            NotFound: no such domain.
        """

    @abstractmethod
    def start_stream(self, domain: str, disk: str, *, bandwidth: int = 0, base: str | None = None) -> None:
        """Start pulling the backing chain (down to ``base``, a path in the chain) into ``disk``.

        Returns as soon as the job exists; it does not wait for it.

        Args:
            bandwidth: the limit in bytes/s; 0 means unlimited.
            base: keep this image and everything below it; None pulls the whole chain.

        Raises:
            NotFound: no such domain, disk or base.
            NothingToStream: the disk has no backing file.
            JobBusy: the disk already has a job.
            ReadOnly: the connection cannot change disks.
        """

    def start_window(
        self,
        domain: str,
        disk: str,
        window: Window,
        *,
        bandwidth: int = 0,
        local: Sequence[tuple[int, int]] = (),
    ) -> None:
        """Copy ``window`` of ``disk`` from its backing chain into it (only where ``supports_window``).

        The job (kind ``window``) is listed, paced, paused and aborted like a stream; its ``cur``
        and ``end`` count bytes of the window. The backing file stays.

        Args:
            local: ``(start, length)`` ranges the caller knows the top image already holds; they
                are not read again (all of the window local: the job completes at once).

        Raises:
            Unsupported: the backend cannot insert a copy-on-read filter.
            NothingToStream: the disk has no backing file.
            JobBusy: the disk already has a job.
        """
        del disk, window, bandwidth, local
        raise Unsupported(f"{self.uri}: cannot copy a window of {domain}'s disks here")

    @abstractmethod
    def set_speed(self, domain: str, disk: str, bandwidth: int) -> None:
        """Change a running job's limit (bytes/s, 0 = unlimited).

        Raises:
            NoJob: the disk has no job.
        """

    @abstractmethod
    def abort(self, domain: str, disk: str) -> None:
        """Ask a job to stop without waiting for it; a pull keeps what it copied.

        Raises:
            NoJob: the disk has no job.
        """

    def pause(self, domain: str, disk: str) -> None:
        """Hold a job where it is (only where ``supports_pause``)."""
        raise Unsupported(f"{self.uri}: this backend cannot pause a block job in place")

    def resume(self, domain: str, disk: str) -> None:
        """Continue a paused job (only where ``supports_pause``)."""
        raise Unsupported(f"{self.uri}: this backend cannot pause a block job in place")

    @abstractmethod
    def job_info(self, domain: str, disk: str) -> BlockJob | None:
        """The disk's current job, or None when it has none."""

    @abstractmethod
    def list_jobs(
        self, *, known: Mapping[str, Sequence[Disk]] | None = None, skip: Collection[tuple[str, str]] = ()
    ) -> list[BlockJob]:
        """Every block job on every disk of every domain, including ones started by other clients.

        Uses only calls that are safe while jobs finish (never query-named-block-nodes).

        Args:
            known: each domain's disks as the caller knows them: a backend that would read a
                domain's description to find its disks may take them from here instead.
            skip: (domain, disk) pairs the caller polls itself: a backend that asks disk by disk
                may leave them out (one that lists every job in one call returns them anyway).
        """

    def free_bytes(self, path: str) -> int | None:
        """Free space where the image ``path`` lives, as the host's storage tells it (a storage
        pool); None when it cannot tell. Files on this machine are measured by the caller."""
        del path
        return None

    def allocation_map(self, domain: str, disk: str) -> DiskMap:
        """Where the disk's data lives, as the host reports it (only where ``supports_allocation_map``).

        It must be safe while a stream finishes: QEMU 7.2 has no block-status command, and those
        that walk the block graph (query-named-block-nodes) can crash it then.

        Raises:
            NotFound: no such domain or disk.
        """
        raise Unsupported(f"{self.uri}: this host cannot report where a disk's data lives")
