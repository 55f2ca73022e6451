"""Why a libvirt block job failed: libvirt's FAILED event carries no reason, so the backend gathers one.

What there is to go on, none of it needing a call that could crash QEMU 7.2 mid-stream (block info
and ``virDomainGetDiskErrors`` send ``query-block``, which does):

- I/O errors QEMU reported on the domain's disks (``VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON``: the
  reason is ``enospc`` when the storage is full). QEMU reports them for guest I/O, not for the
  job's own writes, and libvirt 9.0 names no disk in them when disks are attached with -blockdev.
- the domain paused by QEMU on such an error (disk error policy ``stop``, or ``enospc``, QEMU's
  default for writes): lifecycle events, and the state reason when the domain is read.
- the free space of the filesystem holding the overlay, when the host's files are this machine's:
  the job's own writes fail with ENOSPC without any event, and a full filesystem says why.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from blocktui.core.units import format_size

#: Seconds between libvirt's FAILED event and the reason given for it, for the clues that follow it.
FAILURE_SETTLE = 0.5
#: I/O errors older than this (seconds) are not taken as a failure's cause.
CAUSE_WINDOW = 60.0
#: A filesystem with less free space than this (bytes) counts as full: qcow2 allocates clusters
#: (64 KiB by default) plus metadata, so a write fails well before the last byte is used.
FULL_BELOW = 4 * 1024 * 1024

#: libvirt's I/O error reasons (QEMU's errno names) in words.
_REASONS = {
    "enospc": "no space left on device",
    "eio": "input/output error",
    "eperm": "operation not permitted",
    "eacces": "permission denied",
    "erofs": "read-only file system",
    "enomedium": "no medium",
}


@dataclass(frozen=True, slots=True)
class IoError:
    """An I/O error QEMU reported on one of a domain's disks.

    Attributes:
        device: the path or device alias libvirt named, often empty (see the module docstring).
        paused: QEMU paused the domain on it (error policy ``stop``/``enospc``).
    """

    at: float
    reason: str
    device: str = ""
    paused: bool = False

    @property
    def words(self) -> str:
        """The reason in words ("no space left on device")."""
        code = self.reason.strip().lower()
        if "no space" in code:
            return _REASONS["enospc"]
        return _REASONS.get(code, self.reason.strip() or "an I/O error")


def describe_failure(
    domain: str,
    *,
    io_error: IoError | None,
    paused_on_error: bool,
    free: int | None,
    source: str | None,
) -> str:
    """One line saying why a pull failed, from the clues there are (pure; see the module docstring).

    Args:
        io_error: the domain's latest I/O error within ``CAUSE_WINDOW``, if any.
        paused_on_error: the domain is paused on an I/O error now.
        free: bytes free on the overlay's filesystem, or None when it cannot be looked at.
        source: the overlay's path, for the message.
    """
    full = free is not None and free < FULL_BELOW
    where = f"the filesystem holding {source}" if source else "the overlay's filesystem"
    if full:
        cause = f"no space left on device: {where} has {format_size(free or 0)} free"
    elif io_error is not None:
        cause = f"{io_error.words} (QEMU reported it on the domain's disks)"
    elif paused_on_error:
        cause = "an I/O error on the domain's disks (QEMU paused the domain on it; libvirt gives no more)"
    else:
        space = f"; {where} has {format_size(free)} free" if free is not None else ""
        return (
            "libvirt gives no reason for a failed block job, and the domain reported no I/O error"
            f"{space}; see the host's libvirt and QEMU logs"
        )
    if paused_on_error or (io_error is not None and io_error.paused):
        what = "free space" if full or (io_error is not None and "space" in io_error.words) else "fix it"
        return (
            f"{cause}; QEMU paused the domain on this I/O error: {what}, then resume the domain "
            f"(virsh resume {domain}); blocktui leaves it paused"
        )
    return cause


def free_bytes(path: str) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``, or None."""
    try:
        facts = os.statvfs(os.path.dirname(path) or ".")
    except (OSError, ValueError):
        return None
    return facts.f_bavail * facts.f_frsize


class FailureClues:
    """The clues, kept per domain and disk from events and reads; any thread may use it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._io_errors: dict[str, IoError] = {}
        self._paused: set[str] = set()
        self._sources: dict[tuple[str, str], str] = {}

    def io_error(self, domain: str, device: str, reason: str, *, paused: bool) -> None:
        """An I/O error event (``paused``: its action was to pause the domain)."""
        with self._lock:
            self._io_errors[domain] = IoError(self._clock(), reason, device, paused)
            if paused:
                self._paused.add(domain)

    def run_state(self, domain: str, *, paused_on_error: bool) -> None:
        """What a lifecycle event or a read of the domain said about it."""
        with self._lock:
            if paused_on_error:
                self._paused.add(domain)
            else:
                self._paused.discard(domain)

    def forget(self, domain: str) -> None:
        """The domain stopped: its errors and paths belong to a run that is over."""
        with self._lock:
            self._io_errors.pop(domain, None)
            self._paused.discard(domain)
            for key in [k for k in self._sources if k[0] == domain]:
                del self._sources[key]

    def source(self, domain: str, disk: str, path: str | None) -> None:
        """Where the disk's top image is (seen when a job starts or is listed)."""
        if path is None:
            return
        with self._lock:
            self._sources[(domain, disk)] = path

    def explain(self, domain: str, disk: str, *, local_files: bool) -> str:
        """Why the pull on ``domain``/``disk`` just failed, as well as can be told."""
        with self._lock:
            error = self._io_errors.get(domain)
            if error is not None and self._clock() - error.at > CAUSE_WINDOW:
                error = None
            paused = domain in self._paused
            source = self._sources.get((domain, disk))
        local = local_files and source is not None and source.startswith("/")
        free = free_bytes(source) if local and source else None
        return describe_failure(domain, io_error=error, paused_on_error=paused, free=free, source=source)
