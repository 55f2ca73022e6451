"""What a stream request must satisfy whichever backend runs it: a bandwidth in range, a disk with
something to pull into it, a base in its chain."""

from __future__ import annotations

from blocktui.core.errors import HostError, InvalidInput, NotFound, NothingToStream
from blocktui.core.model import Disk, Domain
from blocktui.core.units import MAX_BYTES


def check_bandwidth(bandwidth: int, action: str) -> None:
    """Refuse a limit libvirt and QEMU cannot carry (bytes/s as a signed 64-bit integer; 0 = unlimited).

    Raises:
        InvalidInput: negative, or larger than ``MAX_BYTES``.
    """
    if not 0 <= bandwidth <= MAX_BYTES:
        raise InvalidInput(
            f"{action}: bandwidth {bandwidth} is out of range (0 for unlimited, up to {MAX_BYTES} bytes/s)"
        )


def stream_target(info: Domain, disk: str, base: str | None, action: str) -> Disk:
    """The disk a stream would pull into, once it is known to exist and to have something to pull.

    Raises:
        HostError: the domain's description cannot be read.
        NotFound: no such disk, or ``base`` is not in its chain.
        NothingToStream: no backing file, or ``base`` is already the nearest one.
    """
    if info.error:
        raise HostError(f"{action}: {info.error}")
    target = info.disk(disk)
    if target is None:
        names = ", ".join(d.target for d in info.disks) or "none"
        raise NotFound(f"{action}: domain {info.name!r} has no disk {disk!r} (its disks: {names})")
    if not target.has_backing:
        raise NothingToStream(f"{action}: {disk} has no backing file, so there is nothing to pull into it")
    if base is not None:
        paths = [layer.path for layer in target.chain]
        if base not in paths:
            raise NotFound(f"{action}: {base!r} is not in the backing chain of {disk} ({', '.join(paths)})")
        if base == paths[0]:
            raise NothingToStream(
                f"{action}: {base} is already {disk}'s backing file, so there is nothing above it to pull"
            )
    return target
