"""Reading domains over a libvirt connection: the listing, one domain by name, the kept handles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

# libvirt_events must be imported before libvirt: it routes libvirt's log output away from stderr.
import blocktui.backends.libvirt_events  # noqa: F401  # isort: skip

import libvirt

from blocktui.backends.bounded import bounded
from blocktui.backends.libvirt.clues import FailureClues
from blocktui.backends.libvirt.connection import LibvirtConnection
from blocktui.backends.libvirt.errors import DOMAIN_STATES, is_connection_error, map_error
from blocktui.backends.libvirt.parse import UnreadableXml, parse_disks
from blocktui.core.errors import HostError
from blocktui.core.model import Domain, DomainState

T = TypeVar("T")


def unreadable(host: str, dom: libvirt.virDomain, exc: libvirt.libvirtError) -> Domain:
    """A row for a domain the host refused to describe; its name and UUID are known without asking."""
    return Domain(
        host=host,
        name=dom.name(),
        state=DomainState.NOSTATE,
        uuid=dom.UUIDString(),
        error=str(map_error(exc, "cannot read this domain")),
    )


class LibvirtDomains(LibvirtConnection):
    """The domains half of the libvirt backend: libvirt calls with our errors, domains as core objects.

    Every read of a domain also tells ``_clues`` whether QEMU paused it on an I/O error, which is
    what explains a job's failure later.
    """

    def __init__(
        self, uri: str, *, readonly: bool = False, reconnect: bool = True, call_timeout: float | None = None
    ) -> None:
        super().__init__(uri, readonly=readonly, reconnect=reconnect, call_timeout=call_timeout)
        self._handles: dict[str, tuple[libvirt.virConnect, libvirt.virDomain]] = {}
        #: What tells why a job failed: libvirt's FAILED event says nothing (see ``clues``).
        self._clues = FailureClues()

    def _forget_link(self) -> None:
        self._forget_handles()

    def _call(self, action: str, function: Callable[[], T]) -> T:
        """Run one libvirt call, mapping its error into our tree."""
        try:
            return function()
        except libvirt.libvirtError as exc:
            error = map_error(exc, action)
            if isinstance(error, HostError) and not is_connection_error(exc):
                # The host answered, with a failure: the link is up, and a listener that takes
                # every host error for a lost link (the session does) must hear so.
                self._confirm_connected_soon()
            raise error from exc

    def _lookup(self, name: str) -> libvirt.virDomain:
        # Progress polls look up every running job's domain twice a second: keep the handles, and
        # forget them when libvirt says the domain changed (lifecycle events) or the link did.
        conn = self._connection()
        with self._lock:
            cached = self._handles.get(name)
        if cached is not None and cached[0] is conn:
            return cached[1]
        dom = self._call(f"domain {name!r} on {self.uri}", lambda: conn.lookupByName(name))
        with self._lock:
            self._handles[name] = (conn, dom)
        return dom

    def _forget_handles(self, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self._handles.clear()
            else:
                self._handles.pop(name, None)

    def _domain(self, dom: libvirt.virDomain) -> Domain:
        """One domain as libvirt describes it; XML that cannot be read becomes the domain's error.

        Raises:
            libvirt.libvirtError: the domain vanished, or the host failed the request.
        """
        name = dom.name()
        state, reason = dom.state()
        paused_on_error = state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_IOERROR
        self._clues.run_state(name, paused_on_error=paused_on_error)
        found = Domain(
            host=self.host,
            name=name,
            state=DOMAIN_STATES.get(state, DomainState.NOSTATE),
            uuid=dom.UUIDString(),
            persistent=bool(dom.isPersistent()),
        )
        try:
            # Live XML for a running domain carries the backing chain libvirt detected.
            return replace(found, disks=parse_disks(dom.XMLDesc(0)))
        except UnreadableXml as exc:
            return replace(found, error=str(exc))
        except UnicodeDecodeError as exc:
            return replace(found, error=f"libvirt's XML for it is not valid UTF-8 ({exc.reason})")

    @bounded
    def list_domains(self) -> list[Domain]:
        """Every domain in every state; one that cannot be read is listed with its ``error``.

        Domains that vanish while being read are skipped.
        """
        conn = self._connection()
        handles = self._call(f"listing domains on {self.uri}", lambda: conn.listAllDomains(0))
        domains: list[Domain] = []
        for dom in handles:
            try:
                domains.append(self._domain(dom))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue
                if is_connection_error(exc):
                    raise map_error(exc, f"reading domains on {self.uri}") from exc
                domains.append(unreadable(self.host, dom, exc))
        domains.sort(key=lambda d: d.name)
        return domains

    @bounded
    def get_domain(self, name: str) -> Domain:
        """One domain by name.

        Raises:
            NotFound: no such domain.
        """
        dom = self._lookup(name)
        return self._call(f"reading domain {name!r}", lambda: self._domain(dom))

    def free_bytes(self, path: str) -> int | None:
        """Space left in the storage pool that holds the volume ``path``; None without one.

        Storage pools are the host's own accounting (no QEMU command is sent), so this is safe
        beside a finishing stream.
        """
        conn = self._connection()
        try:
            pool = conn.storageVolLookupByPath(path).storagePoolLookupByVolume()
            return int(pool.info()[3])
        except libvirt.libvirtError:
            return None  # not in a pool, or no storage driver (the embedded one has none)

    def libvirt_connection(self) -> libvirt.virConnect:
        """The underlying connection, for the lab and for tests acting as another client.

        Raises:
            HostError: not connected.
        """
        return self._connection()
