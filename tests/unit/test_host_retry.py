"""A host that cannot be opened: marked (needs authentication, with the reason, or disconnected),
then tried again by itself with a growing delay, and listed once it lets blocktui in."""

from __future__ import annotations

import libvirt
from fake_backend import FakeBackend

from blocktui.backends.libvirt.shared import auth_refusal
from blocktui.core.errors import HostError, NeedsAuthentication
from blocktui.core.model import ConnectionState, Disk, Domain, DomainState, HostInfo
from blocktui.engine.session import Session

URI = "qemu+ssh://ops@far/system"
WEB = Domain(URI, "web1", DomainState.RUNNING, (Disk("vda", "/v/top.qcow2", "qcow2"),))


class Refusing(FakeBackend):
    """A host whose first ``refusals`` opens fail with ``error``."""

    def __init__(self, error: HostError, refusals: int) -> None:
        super().__init__(URI, [WEB])
        self.error, self.refusals = error, refusals

    def connect(self) -> None:
        if self.refusals:
            self.refusals -= 1
            raise self.error
        super().connect()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _host(session: Session) -> HostInfo:
    return session.snapshot().hosts[0]


def test_a_refused_key_is_marked_needs_authentication_and_the_host_joins_once_it_is_accepted() -> None:
    clock = Clock()
    refused = NeedsAuthentication(
        f"cannot connect to {URI}: needs authentication: Permission denied (publickey)"
    )
    session = Session([Refusing(refused, refusals=1)], clock=clock)
    session.open()
    try:
        host = _host(session)
        assert host.state is ConnectionState.NEEDS_AUTH
        assert "needs authentication: Permission denied" in host.message
        clock.now += 0.5  # not yet: the first try again comes after a second
        session.step()
        assert _host(session).state is ConnectionState.NEEDS_AUTH
        clock.now += 0.6
        session.step()
        assert _host(session).state is ConnectionState.CONNECTED
        assert [d.name for d in session.domains()] == ["web1"]
    finally:
        session.close()


def test_an_unreachable_host_is_tried_again_later_and_later() -> None:
    clock = Clock()
    backend = Refusing(HostError(f"cannot connect to {URI}: Connection refused"), refusals=2)
    session = Session([backend], clock=clock)
    session.open()
    try:
        assert _host(session).state is ConnectionState.DISCONNECTED
        clock.now += 1.0
        session.step()  # the second open fails too: the next comes 2 s later
        assert (_host(session).state, backend.refusals) == (ConnectionState.DISCONNECTED, 0)
        clock.now += 1.5
        session.step()
        assert _host(session).state is ConnectionState.DISCONNECTED
        clock.now += 0.6
        session.step()
        assert _host(session).state is ConnectionState.CONNECTED
    finally:
        session.close()


def _error(message: str, code: int = libvirt.VIR_ERR_SYSTEM_ERROR) -> libvirt.libvirtError:
    """A libvirt error as the remote driver raises it (``err`` is what ``get_error_code`` reads)."""
    exc = libvirt.libvirtError(message)
    exc.err = (code, libvirt.VIR_FROM_RPC, message, 2, "", "", "", 0, 0)
    return exc


def test_ssh_refusals_are_told_from_other_failures_in_ssh_s_own_words() -> None:
    refused = _error("Cannot recv data: ops@far: Permission denied (publickey).: Connection reset by peer")
    assert auth_refusal(refused) == "ops@far: Permission denied (publickey)"
    unknown = _error("Cannot recv data: Host key verification failed.: Connection reset by peer")
    assert auth_refusal(unknown) == "Host key verification failed"
    assert auth_refusal(_error("authentication failed: no agent", libvirt.VIR_ERR_AUTH_FAILED)) is not None
    assert (
        auth_refusal(_error("Cannot recv data: ssh: connect to host far port 22: Connection refused")) is None
    )


def test_a_local_socket_refused_is_no_matter_of_credentials() -> None:
    local = _error("Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied")
    assert auth_refusal(local) is None
