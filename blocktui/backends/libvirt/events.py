"""The domain events a libvirt backend listens to, and how they are registered on a connection.

A connection of its own gets the backend's callbacks directly. libvirt tracks one callback per event
and connection, so the process's shared embedded connection (see ``shared``) gets one ``FanOut``
that hands each event to every backend using it.
"""

from __future__ import annotations

from typing import Protocol

# libvirt_events must be imported before libvirt: it routes libvirt's log output away from stderr.
import blocktui.backends.libvirt_events  # noqa: F401  # isort: skip

import libvirt


class DomainEvents(Protocol):
    """libvirt's callbacks for BLOCK_JOB_2, LIFECYCLE and IO_ERROR_REASON, run on its event thread."""

    # fmt: off
    def _on_block_job(  # noqa: PLR0917 - libvirt's callback signature
        self, conn: libvirt.virConnect, dom: libvirt.virDomain, disk: str, job_type: int, status: int,
        opaque: object,
    ) -> None: ...

    def _on_lifecycle(
        self, conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, opaque: object
    ) -> None: ...

    def _on_io_error(  # noqa: PLR0917 - libvirt's callback signature
        self, conn: libvirt.virConnect, dom: libvirt.virDomain, src_path: str, dev_alias: str, action: int,
        reason: str, opaque: object,
    ) -> None: ...
    # fmt: on


def register(conn: libvirt.virConnect, events: DomainEvents) -> list[int]:
    """Register ``events``' callbacks on ``conn``; the ids that deregister them.

    Raises:
        libvirt.libvirtError: the connection refused a registration.
    """
    return [
        conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, events._on_block_job, None
        ),
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, events._on_lifecycle, None),
        conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON, events._on_io_error, None
        ),
    ]


class FanOut:
    """One set of callbacks that hands every event to each subscriber, in subscription order."""

    def __init__(self) -> None:
        self.subscribers: list[DomainEvents] = []

    def unsubscribe(self, events: object) -> None:
        """Stop handing events to ``events`` (nothing changes when it never subscribed)."""
        self.subscribers = [subscriber for subscriber in self.subscribers if subscriber is not events]

    # fmt: off
    def _on_block_job(  # noqa: PLR0917 - libvirt's callback signature
        self, conn: libvirt.virConnect, dom: libvirt.virDomain, disk: str, job_type: int, status: int,
        opaque: object,
    ) -> None:
        # fmt: on
        for events in list(self.subscribers):
            events._on_block_job(conn, dom, disk, job_type, status, opaque)

    def _on_lifecycle(
        self, conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, opaque: object
    ) -> None:
        for events in list(self.subscribers):
            events._on_lifecycle(conn, dom, event, detail, opaque)

    # fmt: off
    def _on_io_error(  # noqa: PLR0917 - libvirt's callback signature
        self, conn: libvirt.virConnect, dom: libvirt.virDomain, src_path: str, dev_alias: str, action: int,
        reason: str, opaque: object,
    ) -> None:
        # fmt: on
        for events in list(self.subscribers):
            events._on_io_error(conn, dom, src_path, dev_alias, action, reason, opaque)
