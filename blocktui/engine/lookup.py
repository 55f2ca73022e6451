"""Finding a domain or a disk by name, on one host or across every host, with errors that say what to do."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from blocktui.backends.base import Backend
from blocktui.core.errors import Conflict, HostError, NotFound
from blocktui.core.model import Disk, Domain, JobKey
from blocktui.core.streams import stream_target
from blocktui.core.text import visible

if TYPE_CHECKING:
    from blocktui.engine.session import Session


def host_named(hosts: list[str], place: str) -> str:
    """The one host of ``hosts`` that ``place`` names: its URI, its host part (``fleet-2`` for
    ``qemu+ssh://user@fleet-2/session``), a QMP socket or folder, or ``lab``.

    Raises:
        NotFound: no host answers to it.
        Conflict: several do.
    """
    if place in hosts:
        return place
    matches = [uri for uri in hosts if is_named(uri, place)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise Conflict(
            f"{visible(place)!r} names several hosts ({', '.join(map(visible, matches))}); give a URI"
        )
    raise NotFound(f"no open host is called {visible(place)!r} (hosts: {', '.join(map(short_name, hosts))})")


def is_named(uri: str, place: str) -> bool:
    """Whether ``place`` (a URI, a host part, a QMP socket or folder, or ``lab``) names ``uri``."""
    if place == "lab":
        return uri.startswith("qemu:///embed")
    return place in (uri, short_name(uri)) or uri == f"qmp:{Path(place).absolute()}"


def short_name(uri: str) -> str:
    """The host part of a URI (``fleet-2``), else the URI itself."""
    try:
        return urlsplit(uri).hostname or uri
    except ValueError:  # a malformed URI (an unbalanced "[")
        return uri


def find_domain(session: Session, name: str, host: str | None = None) -> Domain:
    """The one domain called ``name`` on any host, or on ``host`` (which ``host_named`` resolves).

    Raises:
        NotFound: no host has it (or no host is called ``host``).
        Conflict: several hosts have it.
    """
    hosts = session.hosts if host is None else [host_named(session.hosts, host)]
    matches = [d for d in session.domains() if d.name == name and d.host in hosts]
    if not matches:
        where = ", ".join(map(short_name, hosts))
        raise NotFound(f"no domain {visible(name)!r} on {where}; 'blocktui ls' lists them")
    if len(matches) > 1:
        short = [short_name(d.host) for d in matches]
        # Two hosts may share a host part (qemu+ssh://far/system, qemu+tls://far/system).
        where = ", ".join(map(visible, short if len(set(short)) == len(short) else [d.host for d in matches]))
        raise Conflict(f"domain {visible(name)!r} exists on several hosts ({where}); name one with --on HOST")
    if matches[0].error:
        raise HostError(f"domain {visible(name)!r} on {matches[0].host}: {matches[0].error}")
    return matches[0]


def find_disk_key(session: Session, domain: str, disk: str, host: str | None = None) -> JobKey:
    """The job key for ``domain``/``disk`` (on ``host``, if given), checking both exist."""
    found = find_domain(session, domain, host)
    if found.disk(disk) is None:
        targets = ", ".join(visible(d.target) for d in found.disks) or "none listed"
        raise NotFound(f"domain {visible(domain)!r} has no disk {visible(disk)!r} (disks: {targets})")
    return JobKey(found.host, found.name, disk)


def disk_of(backend: Backend, domain: str, disk: str) -> Disk:
    """``domain``'s disk ``disk`` as the host describes it now (a host call).

    Raises:
        NotFound: no such domain, or it has no such disk.
    """
    found = backend.get_domain(domain).disk(disk)
    if found is None:
        raise NotFound(f"domain {domain!r} has no disk {disk!r}")
    return found


def disk_or_none(session: Session, key: JobKey) -> Disk | None:
    """``key``'s disk now, or None when it is gone, its domain dead, or its host not answering."""
    try:
        return disk_of(session.backend(key.host), key.domain, key.disk)
    except (NotFound, Conflict, HostError):  # gone, dead (a lost QEMU monitor), or not answering
        return None


def stream_disk(backend: Backend, key: JobKey, base: str | None) -> Disk:
    """``key``'s disk, read now, once it is known that a stream (to ``base``) has something to pull.

    Raises:
        NotFound: no such domain or disk, or ``base`` is not in its chain.
        NothingToStream: no backing file, or nothing above ``base``.
    """
    info = backend.get_domain(key.domain)
    return stream_target(info, key.disk, base, f"cannot stream {key.domain}/{key.disk}")
