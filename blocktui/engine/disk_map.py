"""Where a disk's data lives (``core.allocation``), read without sending QEMU a single command.

Images on this machine are read with the pre-flight's ``qemu-img map -U`` (metadata only, on the
caller's thread): it never touches QEMU, so it is safe beside a finishing stream on QEMU 7.2,
where the QMP commands that walk the block graph can crash it. QEMU 7.2 has no block-status
command, and HMP's ``qemu-io DEV map`` tells only the top layer and runs inside QEMU's main loop,
so images elsewhere are mapped only by a backend that can report it (``supports_allocation_map``).
"""

from __future__ import annotations

import subprocess
from functools import partial

from blocktui.core.allocation import DiskMap
from blocktui.core.errors import Conflict, HostError, Unsupported
from blocktui.core.model import Disk, JobKey
from blocktui.core.text import visible
from blocktui.engine.lookup import disk_of
from blocktui.engine.preflight import allocation_map
from blocktui.engine.session import Session


def read_disk_map(
    session: Session, key: JobKey, disk: Disk | None = None, known: dict[JobKey, str] | None = None
) -> DiskMap:
    """Every range of ``key``'s disk, local, in the backing chain or unallocated (any thread but the UI's).

    Args:
        disk: the disk as last read (for its top image's path); None reads it from the host now.
        known: the top image's path last seen for each disk, kept up to date here: while a job
            runs, a QMP host names the disk's nodes but not its files (the command that would
            tell can crash QEMU 7.2 then), and a stream never changes the top image.

    Raises:
        NotFound: no such domain or disk.
        Conflict: the drive holds no image.
        HostError: the image cannot be read.
        Unsupported: the image is not a file on this machine and the host cannot map it.
    """
    backend = session.backend(key.host)
    where = f"{visible(key.domain)}/{visible(key.disk)}"
    if disk is None:
        disk = session.call(key.host, partial(disk_of, backend, key.domain, key.disk))
    source = disk.source
    if known is not None:
        if source is not None:
            known[key] = source
        else:
            source = known.get(key)
    if backend.sees_host_files and source is not None and source.startswith("/"):
        try:
            return DiskMap.from_qemu_img(allocation_map(source))
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            raise HostError(
                f"{where}: the allocation map of {visible(source)} cannot be read ({visible(str(exc))}): "
                "check that the image is there and readable"
            ) from exc
    if backend.supports_allocation_map:
        return session.call(key.host, partial(backend.allocation_map, key.domain, key.disk))
    if source is None and disk.node is not None:
        raise Unsupported(
            f"{where}: QEMU names the disk's nodes but not its image file while it holds a job on "
            "the disk (running, or ended and not yet dismissed): map it once the job is gone"
        )
    if source is None:
        raise Conflict(f"{where} holds no image (an empty drive): there is no data to map")
    raise Unsupported(
        f"{where}: its image {visible(source)} is not a file on this machine and the host cannot say "
        "where its data lives: run 'blocktui map' on the host itself"
    )
