"""Domain events on the process's shared embedded connection reach every backend using it, once."""

from __future__ import annotations

from collections.abc import Callable

import libvirt
import pytest

from blocktui.backends.libvirt import shared


class _Conn:
    """A stand-in connection that records the callbacks registered on it."""

    def __init__(self) -> None:
        self.callbacks: dict[int, Callable[..., None]] = {}

    def domainEventRegisterAny(
        self, _dom: object, event_id: int, callback: Callable[..., None], _o: object
    ) -> int:
        self.callbacks[event_id] = callback
        return event_id

    def domainEventDeregisterAny(self, callback_id: int) -> None:
        del self.callbacks[callback_id]

    def block_job_event(self, disk: str) -> None:
        """Deliver a BLOCK_JOB_2 event as libvirt's event thread does."""
        self.callbacks[libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2](self, None, disk, 1, 0, None)


class _Backend:
    """A subscriber that notes the disks of the block job events it hears."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    def _on_block_job(
        self, _conn: object, _dom: object, disk: str, _job_type: int, _status: int, _o: object
    ) -> None:
        self.heard.append(disk)

    def _on_lifecycle(self, _conn: object, _dom: object, _event: int, _detail: int, _o: object) -> None:
        pass

    def _on_io_error(
        self, _conn: object, _dom: object, _src: str, _alias: str, _action: int, _reason: str, _o: object
    ) -> None:
        pass


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> _Conn:
    conn = _Conn()
    monkeypatch.setattr(shared, "shared", shared.SharedConnection(conn=conn, users=2))
    return conn


def test_every_backend_on_the_shared_connection_hears_each_event_and_libvirt_holds_one_set(
    embedded: _Conn,
) -> None:
    first, second = _Backend(), _Backend()
    ids = [shared.subscribe(embedded, backend) for backend in (first, second)]
    embedded.block_job_event("vda")

    assert ids == [[], []]  # the shared callbacks stay while others use the connection
    assert len(embedded.callbacks) == 3
    assert (first.heard, second.heard) == (["vda"], ["vda"])


def test_a_backend_that_let_go_hears_nothing_more_while_the_other_still_does(embedded: _Conn) -> None:
    first, second = _Backend(), _Backend()
    shared.subscribe(embedded, first)
    shared.subscribe(embedded, second)

    assert shared.release_shared(embedded, first)
    embedded.block_job_event("vdb")

    assert (first.heard, second.heard) == ([], ["vdb"])
    assert not shared.release_shared(embedded, second)
    assert embedded.callbacks == {}  # the last user gone: the callbacks are deregistered
