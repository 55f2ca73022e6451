"""A disk's identity read from its host and, where they are local, its files (``core.identity`` decides).

The planner records it with every plan and, on re-attach, ends a plan whose disk was replaced
since instead of streaming the new disk.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Callable
from pathlib import Path

from blocktui.backends.base import Backend
from blocktui.core.errors import BlocktuiError, NotFound
from blocktui.core.identity import DiskIdentity, ImageFile, replacement
from blocktui.core.model import JobKey, JobState
from blocktui.engine.journal import Entry, Journal

# statx(2), for the birth time os.stat does not give on Linux before Python 3.12.
_AT_FDCWD = -100
_STATX_BTIME = 0x800
_STATX_SIZE = 256  # struct statx, padding included
_BTIME_OFFSET = 80  # struct statx_timestamp stx_btime: __s64 tv_sec, __u32 tv_nsec


def _load_statx() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).statx
    except (AttributeError, OSError):
        return None  # not glibc 2.28+ (or not Linux): identity goes without birth times
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    function.restype = ctypes.c_int
    statx: Callable[..., int] = function
    return statx


_statx = _load_statx()


def _birth_ns(path: Path) -> int | None:
    """The file's birth time in nanoseconds, or None where the system or filesystem keeps none."""
    if _statx is None:
        return None
    buffer = ctypes.create_string_buffer(_STATX_SIZE)
    if _statx(_AT_FDCWD, os.fsencode(path), 0, _STATX_BTIME, buffer) != 0:
        return None
    (mask,) = struct.unpack_from("<I", buffer, 0)
    if not mask & _STATX_BTIME:
        return None
    seconds, nanoseconds = struct.unpack_from("<qI", buffer, _BTIME_OFFSET)
    return int(seconds) * 1_000_000_000 + int(nanoseconds)


def image_file(path: str) -> ImageFile | None:
    """Device, inode and birth time of a local image file; None when it cannot be looked at."""
    try:
        facts = os.stat(path)
    except (OSError, ValueError):  # gone, not ours to see, or not a path at all (a URL with NUL)
        return None
    return ImageFile(facts.st_dev, facts.st_ino, _birth_ns(Path(path)))


def _read(backend: Backend, key: JobKey) -> tuple[DiskIdentity, tuple[str, ...] | None] | None:
    """The disk's identity now and its backing paths (None when the host hides them).

    Returns None when the domain or disk does not exist (now).

    Raises:
        BlocktuiError: the host cannot describe the domain now (unreachable, not answering).
    """
    try:
        domain = backend.get_domain(key.domain)
    except NotFound:
        return None
    disk = domain.disk(key.disk)
    if disk is None:
        return None
    local = backend.sees_host_files and disk.source is not None and disk.source.startswith("/")
    identity = DiskIdentity(
        source=disk.source,
        domain_uuid=domain.uuid,
        image=image_file(disk.source) if local and disk.source else None,
    )
    chain = tuple(layer.path for layer in disk.chain) if disk.chain_known else None
    return identity, chain


def identity_now(backend: Backend, key: JobKey) -> DiskIdentity | None:
    """The identity to record with a new plan (None when the disk cannot be read: the plan goes on)."""
    try:
        found = _read(backend, key)
    except BlocktuiError:
        return None
    return None if found is None else found[0]


def end_if_replaced(backend: Backend, journal: Journal, entry: Entry) -> bool:
    """End ``entry``'s plan when its disk was replaced since the plan was made; True if it did.

    A plan that never ran ends cancelled; one whose job ran on the old disk ends unknown (how
    that job ended cannot be told from the new disk). The note says why, for ``history``. A disk
    that does not exist (now) proves nothing: the plan goes on and fails when it starts.

    Raises:
        BlocktuiError: the host cannot describe the disk now; the caller hands the plan back
            rather than carry it on to a disk nobody has checked.
    """
    found = _read(backend, JobKey(entry.host, entry.domain, entry.disk))
    if found is None:
        return False
    identity, chain = found
    why = replacement(entry.identity, identity, entry.chain_before, chain)
    if why is None:
        return False
    state = JobState.CANCELLED if entry.status == JobState.QUEUED.value else JobState.UNKNOWN
    note = f"not carried on: the disk was replaced since the plan was made ({why})"
    journal.finish(entry.id, state.value, bytes_done=entry.bytes_done, note=note)
    return True
