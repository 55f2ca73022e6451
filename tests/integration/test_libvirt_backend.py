"""libvirt-only behaviour: jobs other clients start, stopped domains, the lab's own shape."""

from __future__ import annotations

import time
from collections.abc import Iterator

import libvirt
import pytest

from blocktui.backends.base import Backend
from blocktui.backends.libvirt import LibvirtBackend
from blocktui.core.errors import Conflict, NotFound, NothingToStream
from blocktui.core.model import BlockJob, DomainState, JobKind, JobState
from blocktui.lab import DiskSpec, Lab, LabDisk
from blocktui.lab.images import backing_file, check

from .conftest import MIB, DomainFactory, EventLog

pytestmark = pytest.mark.integration


@pytest.fixture
def libvirt_backend(lab: Lab, backend: Backend) -> Iterator[LibvirtBackend]:
    """The backend, when the lab is a libvirt one (these tests drive libvirt directly)."""
    if lab.kind != "libvirt":
        pytest.skip("libvirt-only test")
    assert isinstance(backend, LibvirtBackend)
    yield backend


def other_client(backend: LibvirtBackend, disk: LabDisk) -> libvirt.virDomain:
    """The domain as a client other than blocktui sees it (a raw libvirt handle)."""
    return backend.libvirt_connection().lookupByName(disk.domain)


def job_on(backend: Backend, disk: LabDisk, timeout: float = 60.0) -> BlockJob:
    """The job ``list_jobs`` shows on ``disk``, waiting for it to appear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in backend.list_jobs():
            if (job.domain, job.disk) == (disk.domain, disk.target):
                return job
        time.sleep(0.05)
    raise AssertionError(f"no job listed on {disk.domain}/{disk.target}")


def test_jobs_started_by_other_clients_are_listed_with_their_kind(
    libvirt_backend: LibvirtBackend, events: EventLog, make_domain: DomainFactory
) -> None:
    commit_disk, active_disk, copy_disk = make_domain(
        [DiskSpec("vda", 32 * MIB, 3), DiskSpec("vdb", 16 * MIB, 2), DiskSpec("vdc", 16 * MIB, 1)]
    )
    dom = other_client(libvirt_backend, commit_disk)

    # One job at a time: jobs of one domain ending together can crash QEMU 7.2.
    dom.blockCommit(
        "vda",
        str(commit_disk.backing[1]),
        str(commit_disk.backing[0]),
        MIB,
        libvirt.VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES,
    )
    job = job_on(libvirt_backend, commit_disk)
    assert (job.kind, job.state, job.bandwidth) == (JobKind.COMMIT, JobState.ACTIVE, MIB)
    libvirt_backend.abort(commit_disk.domain, commit_disk.target)
    assert events.wait_job(commit_disk.domain, commit_disk.target).state is JobState.CANCELLED

    dom.blockCommit("vdb", None, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
    ready = events.wait_job(active_disk.domain, active_disk.target)
    assert (ready.kind, ready.state) == (JobKind.ACTIVE_COMMIT, JobState.READY)
    job = job_on(libvirt_backend, active_disk)
    assert (job.kind, job.state) == (JobKind.ACTIVE_COMMIT, JobState.READY)
    libvirt_backend.abort(active_disk.domain, active_disk.target)
    assert events.wait_job(active_disk.domain, active_disk.target).state is JobState.CANCELLED

    destination = copy_disk.top.with_name("vdc-copy.qcow2")
    dom.blockCopy(
        "vdc",
        f"<disk type='file'><source file='{destination}'/><driver type='qcow2'/></disk>",
        None,
        libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB,
    )
    ready = events.wait_job(copy_disk.domain, copy_disk.target)
    assert (ready.kind, ready.state) == (JobKind.COPY, JobState.READY)
    job = job_on(libvirt_backend, copy_disk)
    assert (job.kind, job.state) == (JobKind.COPY, JobState.READY)
    libvirt_backend.abort(copy_disk.domain, copy_disk.target)
    assert events.wait_job(copy_disk.domain, copy_disk.target).state is JobState.CANCELLED

    assert libvirt_backend.list_jobs() == []
    assert libvirt_backend.get_domain(commit_disk.domain).state is DomainState.RUNNING


def test_stopped_domain_is_listed_and_refuses_a_stream(
    libvirt_backend: LibvirtBackend, make_domain: DomainFactory
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 16 * MIB, 2)])
    other_client(libvirt_backend, disk).destroy()

    listed = {domain.name: domain for domain in libvirt_backend.list_domains()}
    assert listed[disk.domain].state is DomainState.SHUTOFF
    with pytest.raises(Conflict, match="not running"):
        libvirt_backend.start_stream(disk.domain, disk.target)
    assert backing_file(disk.top) == str(disk.backing[0])
    assert check(disk.top)


def test_lab_up_builds_staggered_chains_and_a_standalone_disk(lab: Lab) -> None:
    disks = lab.up(domains=2, disks=2, size=8 * MIB)
    try:
        by_domain: dict[str, list[LabDisk]] = {}
        for disk in disks:
            by_domain.setdefault(disk.domain, []).append(disk)
        assert {"lab-1", "lab-2"} <= set(by_domain)
        first = {disk.target: disk for disk in by_domain["lab-1"]}
        assert len(first["vda"].backing) == 2
        assert len(first["vdb"].backing) == 1
        assert first["vdc"].backing == ()
        assert len({disk.size for disk in by_domain["lab-1"]}) == len(by_domain["lab-1"])
        for disk in disks:
            assert disk.top.is_relative_to(lab.root)
            assert all(path.is_relative_to(lab.root) for path in disk.backing)
        assert lab.up(domains=2, disks=2, size=8 * MIB) == lab.status()
    finally:
        lab.destroy_domain("lab-1")
        lab.destroy_domain("lab-2")
    assert not any(disk.domain in {"lab-1", "lab-2"} for disk in lab.status())
    assert not any(disk.top.exists() or any(path.exists() for path in disk.backing) for disk in disks)


def test_pull_down_to_the_nearest_layer_and_unknown_disks_are_refused(
    libvirt_backend: LibvirtBackend, make_domain: DomainFactory
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 16 * MIB, 3)])

    with pytest.raises(NothingToStream):
        libvirt_backend.start_stream(disk.domain, disk.target, base=str(disk.backing[0]))
    with pytest.raises(NotFound):
        libvirt_backend.job_info(disk.domain, "vdz")
    assert backing_file(disk.top) == str(disk.backing[0])
