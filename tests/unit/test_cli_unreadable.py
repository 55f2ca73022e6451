"""A domain the host cannot describe is one row with its reason; the rest of the host is listed."""

from __future__ import annotations

import argparse
import json
from typing import Any

import libvirt
import pytest
from fake_backend import FakeBackend

from blocktui.backends.libvirt.backend import LibvirtBackend
from blocktui.cli.commands import cmd_ls
from blocktui.core.errors import HostError
from blocktui.core.model import Disk, Domain, DomainState
from blocktui.engine.facade import Engine
from blocktui.engine.session import Session

HOST = "qemu:///system"
GOOD = Domain(HOST, "web1", DomainState.RUNNING, (Disk("vda", "/v/top.qcow2", "qcow2"),))
BAD = Domain(HOST, "odd\x1b]0;x\x07", DomainState.NOSTATE, error="libvirt's XML for it cannot be read (x)")


def _ls(capsys: pytest.CaptureFixture[str], *, as_json: bool) -> tuple[int, str, str]:
    session = Session([FakeBackend(HOST, [GOOD, BAD])])
    session.open()
    try:
        code = cmd_ls(Engine(session), argparse.Namespace(json=as_json))
    finally:
        session.close()
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_json_lists_every_domain_and_says_which_cannot_be_read(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _ls(capsys, as_json=True)

    assert code == 0
    records: dict[str, Any] = {d["name"]: d for d in json.loads(out)}
    assert records["web1"]["disks"][0]["target"] == "vda" and "error" not in records["web1"]
    assert records[BAD.name]["error"] == BAD.error and records[BAD.name]["disks"] == []
    (line,) = err.splitlines()
    assert line.startswith("blocktui: domain ") and "cannot be read" in line
    assert "\x1b" not in err and "\x07" not in err


def test_ls_text_shows_the_row_without_its_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _ls(capsys, as_json=False)

    assert code == 0
    assert "web1" in out and "odd\\e]0;x\\x07" in out
    assert "\x1b" not in out + err
    assert len(err.splitlines()) == 1


def test_a_command_on_the_unreadable_domain_says_why() -> None:
    session = Session([FakeBackend(HOST, [GOOD, BAD])])
    session.open()
    try:
        engine = Engine(session)
        assert engine.find_disk("web1", "vda").domain == "web1"
        with pytest.raises(HostError, match="cannot be read"):
            engine.find_disk(BAD.name, "vda")
    finally:
        session.close()


class _Dom:
    """A libvirt domain handle whose XML is broken beyond repair (as a stand-in for a real one)."""

    def name(self) -> str:
        return "vm\x1b"

    def state(self) -> tuple[int, int]:
        return (1, 1)

    def UUIDString(self) -> str:
        return "00000000-0000-0000-0000-000000000001"

    def isPersistent(self) -> int:
        return 1

    def XMLDesc(self, _flags: int) -> str:
        return "<domain><name>vm\x1b</name><devices><disk></devices>"


def test_the_backend_turns_unreadable_xml_into_the_domains_error_keeping_its_real_name() -> None:
    domain = LibvirtBackend(HOST)._domain(_Dom())

    assert (domain.name, domain.state, domain.disks) == ("vm\x1b", DomainState.RUNNING, ())
    assert "cannot be read" in domain.error and "\n" not in domain.error


class _Refusing(_Dom):
    """A domain handle whose description the host refuses (not a link failure)."""

    def __init__(self, code: int, source: int = libvirt.VIR_FROM_QEMU) -> None:
        self.code = code
        self.source = source

    def XMLDesc(self, _flags: int) -> str:
        exc = libvirt.libvirtError("cannot describe")
        exc.err = (self.code, self.source, "internal error: cannot describe", 2, "", "", "", 0, 0)
        raise exc


class _Conn:
    def __init__(self, *doms: _Dom) -> None:
        self.doms = list(doms)

    def listAllDomains(self, _flags: int) -> list[_Dom]:
        return self.doms


def _backend_over(*doms: _Dom) -> LibvirtBackend:
    backend = LibvirtBackend(HOST)
    backend._conn = _Conn(*doms)  # a stand-in connection: no daemon needed to test the listing rule
    return backend


def test_a_domain_the_host_refuses_to_describe_is_one_row_among_the_others() -> None:
    good = _Dom()
    good.XMLDesc = lambda _flags: "<domain><name>vm</name><devices/></domain>"  # type: ignore[method-assign]
    listed = _backend_over(_Refusing(libvirt.VIR_ERR_INTERNAL_ERROR), good).list_domains()

    assert len(listed) == 2
    assert [bool(d.error) for d in listed] == [True, False]
    assert "cannot read this domain: internal error" in listed[0].error


def test_a_lost_link_while_listing_is_still_a_host_error() -> None:
    with pytest.raises(HostError, match="reachable"):
        _backend_over(_Refusing(libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC)).list_domains()
