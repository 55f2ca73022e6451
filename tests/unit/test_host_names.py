"""Naming one host among several: by URI, by the host part of its URI, by QMP path, or ``lab``."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocktui.core.errors import Conflict, NotFound
from blocktui.engine.lookup import host_named, short_name

FLEET = [f"qemu+ssh://blocktui-fleet-{n}@fleet-{n}/session?command=/f/ssh" for n in (1, 2, 3)]


def test_a_host_is_named_by_its_uri_or_by_the_host_part_of_it() -> None:
    assert host_named(FLEET, FLEET[1]) == FLEET[1]
    assert host_named(FLEET, "fleet-3") == FLEET[2]
    assert short_name(FLEET[0]) == "fleet-1"


def test_the_lab_and_qmp_sockets_are_named_as_the_options_name_them(tmp_path: Path) -> None:
    socket = tmp_path / "vm.sock"
    hosts = ["qemu:///embed?root=/tmp/lab", f"qmp:{socket}"]
    assert host_named(hosts, "lab") == hosts[0]
    assert host_named(hosts, str(socket)) == hosts[1]


def test_an_unknown_name_lists_the_hosts_and_a_shared_one_asks_for_the_uri() -> None:
    with pytest.raises(
        NotFound, match=r"no open host is called 'fleet-9' \(hosts: fleet-1, fleet-2, fleet-3\)"
    ):
        host_named(FLEET, "fleet-9")
    twins = ["qemu+ssh://root@box/system", "qemu+tls://box/system"]
    with pytest.raises(Conflict, match="names several hosts"):
        host_named(twins, "box")
    assert host_named(twins, twins[1]) == twins[1]
