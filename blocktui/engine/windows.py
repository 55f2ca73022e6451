"""Windows as plans: the route that copies one (a filter read, or a pull stopped at its end), what is local.

On a host whose backend ``supports_window`` (QMP) any window is read through a copy-on-read
filter. Elsewhere (libvirt: no API inserts a filter node) only a prefix can be had: a pull that
stops at the window's end, keeping what it copied, as a chunked stream stops at a boundary.
"""

from __future__ import annotations

import logging
import subprocess

from blocktui.backends.base import Backend
from blocktui.core.errors import InvalidInput, Unsupported
from blocktui.core.model import Disk, JobKey
from blocktui.core.preflight import disk_length
from blocktui.core.text import visible
from blocktui.core.windows import Window, fit_to_disk, local_extents
from blocktui.engine.preflight import allocation_map

log = logging.getLogger(__name__)


def check_window(backend: Backend, key: JobKey, window: Window, *, chunk: int) -> None:
    """Refuse a window this host cannot copy, or one combined with chunks.

    Raises:
        InvalidInput: ``chunk`` was given too (a window is copied in one run).
        Unsupported: not a prefix, on a host that cannot insert a filter node.
    """
    where = f"{visible(key.domain)}/{visible(key.disk)}"
    if chunk:
        raise InvalidInput(f"{where}: a window is copied in one run; drop the chunk size")
    if not window.is_prefix and not backend.supports_window:
        raise Unsupported(
            f"{where}: only a window from offset 0 can be copied on {key.host} (libvirt has no API to "
            "insert a copy-on-read filter node); copy this one over QMP (--qmp SOCKET of its QEMU), "
            "or use --offset 0"
        )


def _image_map(backend: Backend, disk: Disk) -> list[dict[str, object]] | None:
    """The top image's allocation map when it is a file on this machine, else None."""
    source = disk.source
    if not backend.sees_host_files or source is None or not source.startswith("/"):
        return None
    try:
        return allocation_map(source)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.info("allocation map of %s unreadable: %s", source, exc)
        return None


def fit_window(backend: Backend, disk: Disk, window: Window) -> Window:
    """``window`` cut at the disk's end, when its size can be read here (else as given).

    Raises:
        InvalidInput: the window starts past the end of the disk.
    """
    extents = _image_map(backend, disk)
    return window if not extents else fit_to_disk(window, disk_length(extents))


def local_ranges(backend: Backend, disk: Disk) -> list[tuple[int, int]]:
    """What the top image already holds (not read again); empty when it cannot be told here.

    Read with ``qemu-img map -U`` (metadata only, never a QMP command): what QEMU has not written
    out yet looks absent and is read once more, which copy-on-read makes harmless.
    """
    return local_extents(_image_map(backend, disk) or [])
