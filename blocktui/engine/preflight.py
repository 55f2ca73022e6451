"""The pre-flight of a stream: read the allocation map and the free space, then judge (``core.preflight``).

Images on this machine are read directly: ``qemu-img map -U`` (metadata only, shared with the
running QEMU, never a QMP command, so safe beside a finishing stream on QEMU 7.2) and the free
space of the overlay's filesystem. A backend may know the free space of a remote storage pool.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import partial

from blocktui.core.model import JobKey
from blocktui.core.preflight import Preflight, bytes_to_copy, disk_length, pulled_depths
from blocktui.core.text import visible
from blocktui.engine.lookup import stream_disk
from blocktui.engine.session import Session

#: Seconds ``qemu-img map`` may take (it reads metadata only; a huge sparse image takes longer).
MAP_TIMEOUT = 60.0


def estimate(session: Session, key: JobKey, *, limit: int, base: str | None, share: int) -> Preflight:
    """What streaming ``key`` (to ``base``) would copy and whether it fits (any thread but the UI's).

    Only the host calls run on the host's worker: a slow ``qemu-img map`` of a large image must
    not hold up that host's polls.

    Raises:
        NotFound: no such disk, or ``base`` is not in its chain.
        NothingToStream: the disk has no backing file.
    """
    backend = session.backend(key.host)
    disk = session.call(key.host, partial(stream_disk, backend, key, base))
    chain = [layer.path for layer in disk.chain]
    source = disk.source
    copy: int | None = None
    total: int | None = None
    free: int | None = None
    unknown = ""
    if backend.sees_host_files and source is not None and source.startswith("/"):
        try:
            extents = allocation_map(source)
            copy, total = bytes_to_copy(extents, pulled_depths(chain, base)), disk_length(extents)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            unknown = f"the allocation map of {visible(source)} cannot be read ({exc})"
        try:
            facts = os.statvfs(os.path.dirname(source))
            free = facts.f_bavail * facts.f_frsize
        except OSError as exc:
            unknown = unknown or f"the free space beside {visible(source)} cannot be read ({exc.strerror})"
    else:
        unknown = "the images are on another machine: how much will be copied is not known"
        if source is not None:
            free = session.call(key.host, partial(backend.free_bytes, source))
    return Preflight.judge(
        key.domain, key.disk, copy=copy, free=free, limit=limit, share=share, unknown=unknown, total=total
    )


def allocation_map(path: str) -> list[dict[str, object]]:
    """``qemu-img map`` of the image and its chain; ``-U`` reads it while QEMU has it open."""
    done = subprocess.run(
        ["qemu-img", "map", "-U", "--output=json", path],
        capture_output=True,
        text=True,
        timeout=MAP_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise ValueError(" ".join(done.stderr.split()) or f"qemu-img exited {done.returncode}")
    extents: list[dict[str, object]] = json.loads(done.stdout)
    return extents
