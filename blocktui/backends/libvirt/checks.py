"""What the libvirt backend checks before asking libvirt, and the row for a domain it cannot read."""

from __future__ import annotations

# libvirt_events must be imported before libvirt: it routes libvirt's log output away from stderr.
import blocktui.backends.libvirt_events  # noqa: F401  # isort: skip

import libvirt

from blocktui.backends.libvirt.errors import map_error
from blocktui.core.errors import HostError, InvalidInput, NotFound, NothingToStream
from blocktui.core.model import Disk, Domain, DomainState
from blocktui.core.units import MAX_BYTES


def check_bandwidth(bandwidth: int, action: str) -> None:
    if not 0 <= bandwidth <= MAX_BYTES:
        raise InvalidInput(f"{action}: bandwidth {bandwidth} is out of range (0 to {MAX_BYTES} bytes/s)")


def check_target(info: Domain, disk: str, base: str | None, action: str) -> Disk:
    """The disk a stream would pull into, once it is known to exist and to have something to pull.

    Raises:
        HostError: the domain's description cannot be read.
        NotFound: no such disk, or ``base`` is not in its chain.
        NothingToStream: no backing file, or ``base`` is already the nearest one.
    """
    domain = info.name
    if info.error:
        raise HostError(f"{action}: {info.error}")
    target = info.disk(disk)
    if target is None:
        names = ", ".join(d.target for d in info.disks) or "none"
        raise NotFound(f"{action}: domain {domain!r} has no disk {disk!r} (its disks: {names})")
    if not target.has_backing:
        raise NothingToStream(f"{action}: {disk} has no backing file, so there is nothing to pull into it")
    if base is not None and base not in {layer.path for layer in target.chain}:
        chain = ", ".join(layer.path for layer in target.chain)
        raise NotFound(f"{action}: {base!r} is not in the backing chain of {disk} ({chain})")
    if base is not None and base == target.chain[0].path:
        raise NothingToStream(
            f"{action}: {base} is already {disk}'s backing file, so there is nothing above it to pull"
        )
    return target


def unreadable(host: str, dom: libvirt.virDomain, exc: libvirt.libvirtError) -> Domain:
    """A row for a domain the host refused to describe; its name and UUID are known without asking."""
    return Domain(
        host=host,
        name=dom.name(),
        state=DomainState.NOSTATE,
        uuid=dom.UUIDString(),
        error=str(map_error(exc, "cannot read this domain")),
    )
