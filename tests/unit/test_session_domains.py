"""What the session reads again when a host's domains change: only the domains named, when named."""

from __future__ import annotations

from dataclasses import replace

from demo_hosts import demo_backends
from fake_backend import FakeBackend, FakeJob

from blocktui.core.model import DomainsChanged, DomainState
from blocktui.engine.session import Session

MIB = 1024**2


def opened() -> tuple[FakeBackend, Session]:
    backend = demo_backends(hostile=False)[0]
    session = Session([backend], poll_interval=0.5, scan_interval=3600)
    session.open()
    session.step()
    session.step()  # the connection's own event has every domain read again
    backend.calls.clear()
    return backend, session


def chain_of(session: Session, domain: str, disk: str) -> int:
    [found] = [d for d in session.domains() if d.name == domain]
    target = found.disk(disk)
    assert target is not None
    return len(target.chain)


def test_a_pull_that_ends_has_only_its_domain_read_again_and_its_new_chain_shown() -> None:
    backend, session = opened()
    try:
        assert chain_of(session, "web01", "vda") > 0
        backend.add_job(FakeJob("web01", "vda", end=4 * MIB, cur=0, bandwidth=4 * MIB))
        session.step()
        backend.advance(2.0)  # done: its completion event arrives
        session.step()
        session.step()
        assert chain_of(session, "web01", "vda") == 0  # the pulled layers are gone
        assert backend.calls.count("get_domain") >= 1
        assert "list_domains" not in backend.calls  # the other domains were not read again
        assert [d.name for d in session.domains()] == ["web01", "db01", "build"]
    finally:
        session.close()


def test_a_named_domain_that_appears_stops_or_vanishes_is_shown_so() -> None:
    backend, session = opened()
    try:
        [web] = [d for d in session.domains() if d.name == "web01"]
        backend.add_domain(replace(web, name="web02"))
        backend.emit(DomainsChanged(backend.uri, "web02"))
        session.step()
        assert [d.name for d in session.domains()] == ["web01", "db01", "build", "web02"]

        backend.add_domain(replace(web, name="web02", state=DomainState.SHUTOFF))
        backend.emit(DomainsChanged(backend.uri, "web02"))
        session.step()
        [web02] = [d for d in session.domains() if d.name == "web02"]
        assert web02.state is DomainState.SHUTOFF

        backend.remove_domain("web02")  # a transient domain that stopped is gone
        backend.emit(DomainsChanged(backend.uri, "web02"))
        session.step()
        assert [d.name for d in session.domains()] == ["web01", "db01", "build"]
        assert "list_domains" not in backend.calls
    finally:
        session.close()


def test_an_unnamed_change_reads_every_domain_again() -> None:
    backend, session = opened()
    try:
        backend.emit(DomainsChanged(backend.uri, None))
        session.step()
        assert backend.calls.count("list_domains") == 1
    finally:
        session.close()
