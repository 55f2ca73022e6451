"""The rules every backend applies to a stream request before asking its host (``core.streams``)."""

from __future__ import annotations

import pytest

from blocktui.core.errors import HostError, InvalidInput, NotFound, NothingToStream
from blocktui.core.model import ChainLayer, Disk, Domain, DomainState
from blocktui.core.streams import check_bandwidth, stream_target
from blocktui.core.units import MAX_BYTES

ACTION = "cannot stream vm/vda"
CHAIN = (ChainLayer("/v/mid.qcow2", "qcow2"), ChainLayer("/v/base.qcow2", "qcow2"))
VM = Domain(
    "h",
    "vm",
    DomainState.RUNNING,
    disks=(Disk("vda", "/v/top.qcow2", chain=CHAIN), Disk("vdb", "/v/flat.raw")),
)


@pytest.mark.parametrize("bandwidth", [0, 1, MAX_BYTES])
def test_bandwidths_libvirt_and_qemu_carry_are_accepted(bandwidth: int) -> None:
    check_bandwidth(bandwidth, ACTION)


@pytest.mark.parametrize("bandwidth", [-1, MAX_BYTES + 1])
def test_bandwidths_they_cannot_carry_are_refused_saying_what_was_asked(bandwidth: int) -> None:
    with pytest.raises(InvalidInput, match=f"^{ACTION}: bandwidth {bandwidth} is out of range"):
        check_bandwidth(bandwidth, ACTION)


def test_a_disk_with_a_backing_chain_is_the_target_with_or_without_a_base() -> None:
    assert stream_target(VM, "vda", None, ACTION).source == "/v/top.qcow2"
    assert stream_target(VM, "vda", "/v/base.qcow2", ACTION).target == "vda"


def test_a_base_outside_the_chain_is_not_found_and_the_chain_is_named() -> None:
    with pytest.raises(NotFound, match=r"'/v/other.qcow2' is not in .* \(/v/mid.qcow2, /v/base.qcow2\)"):
        stream_target(VM, "vda", "/v/other.qcow2", ACTION)


def test_the_nearest_backing_file_as_base_leaves_nothing_to_pull() -> None:
    with pytest.raises(NothingToStream, match="already vda's backing file"):
        stream_target(VM, "vda", "/v/mid.qcow2", ACTION)


def test_a_disk_without_backing_file_has_nothing_to_pull() -> None:
    with pytest.raises(NothingToStream, match="vdb has no backing file"):
        stream_target(VM, "vdb", None, ACTION)


def test_an_unknown_disk_is_not_found_and_the_domains_disks_are_named() -> None:
    with pytest.raises(NotFound, match=r"no disk 'vdz' \(its disks: vda, vdb\)"):
        stream_target(VM, "vdz", None, ACTION)


def test_a_domain_the_host_cannot_describe_says_why() -> None:
    broken = Domain("h", "vm", DomainState.RUNNING, error="libvirt's XML for it cannot be read")

    with pytest.raises(HostError, match=f"^{ACTION}: libvirt's XML for it cannot be read$"):
        stream_target(broken, "vda", None, ACTION)
