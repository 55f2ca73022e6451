"""The libvirt backend's pure parts: domain XML to disks and chains, libvirt errors to ours."""

from __future__ import annotations

import libvirt
import pytest

from blocktui.backends.libvirt import _embed_root, _non_interactive, map_error, parse_disks
from blocktui.core.errors import (
    BlocktuiError,
    Conflict,
    HostError,
    InvalidInput,
    JobBusy,
    NoJob,
    NotFound,
    ReadOnly,
    Unsupported,
)
from blocktui.core.model import ChainLayer

LIVE_XML = """<domain type='kvm'><name>vm</name><devices>
  <disk type='file' device='disk'>
    <driver name='qemu' type='qcow2'/>
    <source file='/v/top.qcow2' index='3'/>
    <backingStore type='file' index='2'>
      <format type='qcow2'/>
      <source file='/v/mid.qcow2'/>
      <backingStore type='block' index='1'>
        <format type='raw'/>
        <source dev='/dev/vg/base'/>
        <backingStore/>
      </backingStore>
    </backingStore>
    <target dev='vda' bus='virtio'/>
  </disk>
  <disk type='network' device='disk'>
    <driver name='qemu' type='raw'/>
    <source protocol='rbd' name='pool/image'><host name='mon1' port='6789'/></source>
    <target dev='sda' bus='scsi'/>
    <readonly/>
  </disk>
  <disk type='file' device='cdrom'>
    <target dev='hdc' bus='ide'/>
    <readonly/>
  </disk>
</devices></domain>"""


def test_live_xml_gives_targets_sources_and_chains_nearest_first() -> None:
    vda, sda, hdc = parse_disks(LIVE_XML)

    assert (vda.target, vda.source, vda.format, vda.bus, vda.device) == (
        "vda",
        "/v/top.qcow2",
        "qcow2",
        "virtio",
        "disk",
    )
    assert vda.chain == (ChainLayer("/v/mid.qcow2", "qcow2"), ChainLayer("/dev/vg/base", "raw"))
    assert (sda.source, sda.readonly, sda.has_backing) == ("rbd://mon1/pool/image", True, False)
    assert (hdc.device, hdc.source) == ("cdrom", None)


def _error(code: int, message: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, libvirt.VIR_FROM_QEMU, message, 2, "", "", "", 0, 0)
    return exc


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (libvirt.VIR_ERR_NO_DOMAIN, "Domain not found: no domain with matching name 'x'", NotFound),
        (libvirt.VIR_ERR_BLOCK_COPY_ACTIVE, "block copy still active", JobBusy),
        (
            libvirt.VIR_ERR_OPERATION_INVALID,
            "Operation not valid: disk 'vda' already in active block job",
            JobBusy,
        ),
        (libvirt.VIR_ERR_OPERATION_INVALID, "Operation not valid: No active block job 'vda'", NoJob),
        (libvirt.VIR_ERR_OPERATION_INVALID, "Operation not valid: domain is not running", Conflict),
        (libvirt.VIR_ERR_OPERATION_DENIED, "read only access prevents virDomainBlockPull", ReadOnly),
        (libvirt.VIR_ERR_INVALID_ARG, "invalid argument: bandwidth must be less than ...", InvalidInput),
        (libvirt.VIR_ERR_INVALID_ARG, "could not find image '/x' in chain for '/top'", NotFound),
        (libvirt.VIR_ERR_INVALID_ARG, "invalid argument: disk 'vdz' not found in domain", NotFound),
        (libvirt.VIR_ERR_NO_SUPPORT, "this function is not supported by the connection driver", Unsupported),
        (libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot recv data: Connection reset by peer", HostError),
        (libvirt.VIR_ERR_INTERNAL_ERROR, "unable to execute QEMU command", HostError),
    ],
)
def test_libvirt_errors_map_to_one_line_errors_of_our_tree(
    code: int, message: str, expected: type[BlocktuiError]
) -> None:
    mapped = map_error(_error(code, message + "\nsecond line"), "cannot stream vm/vda")

    assert type(mapped) is expected
    assert str(mapped).startswith("cannot stream vm/vda: ")
    assert "\n" not in str(mapped)


def test_ssh_uris_never_prompt_on_the_terminal() -> None:
    assert _non_interactive("qemu+ssh://root@h/system") == "qemu+ssh://root@h/system?no_tty=1"
    assert _non_interactive("qemu+ssh://h/system?keyfile=/k") == "qemu+ssh://h/system?keyfile=/k&no_tty=1"
    assert _non_interactive("qemu+ssh://h/system?no_tty=0") == "qemu+ssh://h/system?no_tty=0"
    assert _non_interactive("qemu:///embed?root=/tmp/l") == "qemu:///embed?root=/tmp/l"


def test_only_embed_uris_name_an_embedded_root() -> None:
    assert _embed_root("qemu:///embed?root=/tmp/btl/libvirt") == "/tmp/btl/libvirt"
    assert _embed_root("qemu:///system") is None
    assert _embed_root("qemu+ssh://h/embed?root=/x") is None
