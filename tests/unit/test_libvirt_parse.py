"""The libvirt backend's pure parts: domain XML to disks and chains, job info, libvirt errors to ours."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from blocktui.backends.libvirt import (
    UnreadableXml,
    embed_root,
    map_error,
    non_interactive,
    parse_disks,
    shared,
)
from blocktui.backends.libvirt.errors import is_connection_error
from blocktui.backends.libvirt.parse import REPLACEMENT, JobInfo, job_info_of, libvirt_version, well_formed
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
from blocktui.core.model import ChainLayer, JobKind, JobState

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
    assert (sda.source, sda.readonly, sda.has_backing) == ("rbd://mon1:6789/pool/image", True, False)
    assert (hdc.device, hdc.source) == ("cdrom", None)
    assert vda.chain_known and not sda.chain_known


def test_inactive_xml_says_the_chain_is_not_known_rather_than_empty() -> None:
    inactive = "<domain><name>vm</name><devices><disk type='file' device='disk'>"
    inactive += "<source file='/v/top.qcow2'/><target dev='vda'/></disk></devices></domain>"
    live = inactive.replace("<target", "<backingStore/><target")

    assert parse_disks(inactive)[0].chain_known is False
    assert parse_disks(live)[0].chain_known is True
    assert parse_disks(live)[0].chain == ()


def _domain(name: str, source: str = "/v/top.qcow2") -> str:
    """A domain document as libvirt writes it: names and paths copied in, only ``<>&'"`` escaped."""
    return (
        f"<domain type='qemu'><name>{name}</name><devices>"
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{source}'/><backingStore type='file'><format type='qcow2'/>"
        "<source file='/v/base.qcow2'/><backingStore/></backingStore>"
        "<target dev='vda' bus='virtio'/></disk></devices></domain>"
    )


@pytest.mark.parametrize(
    "name",
    [
        "esc\x1b[31mred",
        "osc\x1b]0;x\x07",
        "bell\x07and\x01soh",
        "vt\x0bff\x0c",
        "by reference &#27; and &#x1B;",
    ],
)
def test_characters_xml_forbids_in_a_name_do_not_hide_the_disks(name: str) -> None:
    (vda,) = parse_disks(_domain(name))

    assert (vda.target, vda.source, vda.has_backing) == ("vda", "/v/top.qcow2", True)


@pytest.mark.parametrize(
    "name",
    ["c1 \u009b", "bidi \u202e", "line\nbreak", "[@click=app.quit]", "x" * 200, "spaces and [brackets]"],
)
def test_names_xml_allows_parse_as_they_are(name: str) -> None:
    assert well_formed(_domain(name)) == _domain(name)
    assert parse_disks(_domain(name))[0].target == "vda"


def test_a_forbidden_character_in_a_path_is_replaced_visibly_not_dropped() -> None:
    (vda,) = parse_disks(_domain("vm", source="/v/odd\x1bname.qcow2"))

    assert vda.source == f"/v/odd{REPLACEMENT}name.qcow2"
    assert vda.chain[0].path == "/v/base.qcow2"


def test_newlines_and_tabs_in_a_path_survive_attribute_normalisation() -> None:
    (vda,) = parse_disks(_domain("vm", source="/v/two\nlines\tand tab.qcow2"))

    assert vda.source == "/v/two\nlines\tand tab.qcow2"


def test_xml_broken_otherwise_is_one_line_error() -> None:
    with pytest.raises(UnreadableXml) as caught:
        parse_disks("<domain><name>vm</name><devices><disk></devices></domain>")

    assert "\n" not in str(caught.value)
    assert "cannot be read" in str(caught.value)


def test_disks_without_a_file_are_listed_by_protocol_and_name() -> None:
    xml = """<domain><name>vm</name><devices>
      <disk type='network' device='disk'><driver name='qemu' type='raw'/>
        <source protocol='nbd'><host name='nbd.example' port='10809'/></source>
        <target dev='vdb' bus='virtio'/></disk>
      <disk type='network' device='disk'><driver name='qemu' type='raw'/>
        <source protocol='nbd' name='export1'><host transport='unix' socket='/run/nbd.sock'/></source>
        <target dev='vdc' bus='virtio'/></disk>
      <disk type='network' device='disk'><driver name='qemu' type='raw'/>
        <source protocol='iscsi' name='iqn.2013-07.com.example:t1/1'><host name='10.0.0.9'/></source>
        <target dev='sdb' bus='scsi'/></disk>
      <disk type='block' device='disk'><driver name='qemu' type='raw'/>
        <source dev='/dev/vg0/lv1'/><target dev='vdd' bus='virtio'/></disk>
      <disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>
        <source pool='default' volume='v1.qcow2'/><target dev='vde' bus='virtio'/></disk>
    </devices></domain>"""

    sources = {disk.target: disk.source for disk in parse_disks(xml)}

    assert sources == {
        "vdb": "nbd://nbd.example:10809/",
        "vdc": "nbd+unix:///export1?socket=/run/nbd.sock",
        "sdb": "iscsi://10.0.0.9/iqn.2013-07.com.example:t1/1",
        "vdd": "/dev/vg0/lv1",
        "vde": "default/v1.qcow2",
    }


def _error(code: int, message: str, source: int = libvirt.VIR_FROM_QEMU) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, source, message, 2, "", "", "", 0, 0)
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
        (libvirt.VIR_ERR_SYSTEM_ERROR, "Unable to read from monitor: Connection reset by peer", Conflict),
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


def test_a_lost_link_is_a_host_error_but_a_dead_qemu_is_that_domains_conflict() -> None:
    link = _error(
        libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot recv data: Connection reset by peer", libvirt.VIR_FROM_RPC
    )
    monitor = _error(libvirt.VIR_ERR_SYSTEM_ERROR, "Unable to read from monitor: Connection reset by peer")

    assert type(map_error(link, "x")) is HostError and is_connection_error(link)
    assert type(map_error(monitor, "x")) is Conflict and not is_connection_error(monitor)


def test_ssh_uris_never_prompt_on_the_terminal() -> None:
    assert non_interactive("qemu+ssh://root@h/system") == "qemu+ssh://root@h/system?no_tty=1"
    assert non_interactive("qemu+ssh://h/system?keyfile=/k") == "qemu+ssh://h/system?keyfile=/k&no_tty=1"
    assert non_interactive("qemu+ssh://h/system?no_tty=0") == "qemu+ssh://h/system?no_tty=0"
    assert non_interactive("qemu:///embed?root=/tmp/l") == "qemu:///embed?root=/tmp/l"


def test_only_embed_uris_name_an_embedded_root() -> None:
    assert embed_root("qemu:///embed?root=/tmp/btl/libvirt") == "/tmp/btl/libvirt"
    assert embed_root("qemu:///system") is None
    assert embed_root("qemu+ssh://h/embed?root=/x") is None


def test_the_system_daemon_stays_reachable_once_an_embedded_root_is_open(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sockets = (str(tmp_path / "libvirt-sock"), str(tmp_path / "virtqemud-sock"))
    monkeypatch.setattr(shared, "SYSTEM_SOCKETS", sockets)
    monkeypatch.setitem(shared.embedded, "root", "")
    assert shared.beside_embedded("qemu:///system") == "qemu:///system"  # nothing embedded: as given

    monkeypatch.setitem(shared.embedded, "root", "/tmp/btl/libvirt")
    # No daemon socket yet: the monolithic daemon's (an open fails, and a retry finds it).
    assert shared.beside_embedded("qemu:///system") == f"qemu+unix:///system?socket={sockets[0]}"
    assert shared.beside_embedded("qemu:///system", True) == f"qemu+unix:///system?socket={sockets[0]}-ro"
    Path(sockets[1]).touch()  # only the modular QEMU daemon runs
    assert shared.beside_embedded("qemu:///system") == f"qemu+unix:///system?socket={sockets[1]}"
    assert shared.beside_embedded("qemu:///system?socket=/s") == "qemu+unix:///system?socket=/s"
    for other in ("qemu:///session", "qemu+ssh://h/system", "qemu:///embed?root=/x", "test:///default"):
        assert shared.beside_embedded(other) == other


# virDomainGetBlockJobInfo's replies (with the BANDWIDTH_BYTES flag) as libvirt-python returns them.
PULL_INFO = {
    "type": libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_PULL,
    "bandwidth": 32 * 2**20,
    "cur": 2**24,
    "end": 2**26,
}
COPY_DONE_INFO = {"type": libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COPY, "bandwidth": 0, "cur": 2**26, "end": 2**26}


def test_a_pull_in_progress_reads_as_its_kind_progress_and_limit() -> None:
    info = job_info_of(PULL_INFO)

    assert info == JobInfo(JobKind.PULL, cur=2**24, end=2**26, bandwidth=32 * 2**20)
    assert info.state(ready=False) is JobState.ACTIVE


def test_a_disk_without_a_job_reads_as_none() -> None:
    assert job_info_of({}) is None


def test_a_mirror_is_ready_once_it_said_so_or_copied_everything_but_a_pull_never_is() -> None:
    copy = job_info_of(COPY_DONE_INFO)
    pull_done = job_info_of({**PULL_INFO, "cur": 2**26})
    copy_part = job_info_of({**COPY_DONE_INFO, "cur": 2**20})
    assert copy is not None and pull_done is not None and copy_part is not None

    assert copy.state(ready=False) is JobState.READY
    assert copy_part.state(ready=True) is JobState.READY
    assert copy_part.state(ready=False) is JobState.ACTIVE
    assert pull_done.state(ready=True) is JobState.ACTIVE


def test_a_job_type_libvirt_adds_later_is_unknown_not_an_error() -> None:
    info = job_info_of({"type": 99, "cur": 1, "end": 2})

    assert info == JobInfo(JobKind.UNKNOWN, cur=1, end=2, bandwidth=0)


def test_libvirt_versions_unpack_to_dotted_text() -> None:
    assert libvirt_version(9_000_000) == "9.0.0"
    assert libvirt_version(7_002_015) == "7.2.15"
