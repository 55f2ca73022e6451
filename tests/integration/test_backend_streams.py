"""Streams on real QEMU through a backend: content survives, limits hold, errors change nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from blocktui.backends.base import Backend
from blocktui.core.errors import InvalidInput, JobBusy, NotFound, NothingToStream, ReadOnly
from blocktui.core.model import BlockJob, DomainState, JobKind, JobState
from blocktui.core.units import parse_bandwidth
from blocktui.lab import DiskSpec, Lab, LabDisk
from blocktui.lab.images import backing_file, check, compare

from .conftest import ALL_LAB_KINDS, MIB, DomainFactory, EventLog, SaveContent

# Every way of starting QEMU the QMP backend serves: -blockdev, -drive, Proxmox's, libvirt's.
pytestmark = [pytest.mark.integration, pytest.mark.parametrize("lab", ALL_LAB_KINDS, indirect=True)]


def wait_progress(backend: Backend, disk: LabDisk, at_least: int, timeout: float = 60.0) -> BlockJob:
    """Poll until the disk's job has copied ``at_least`` bytes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = backend.job_info(disk.domain, disk.target)
        assert job is not None, "the job ended before reaching the expected progress"
        if job.cur >= at_least:
            return job
        time.sleep(0.05)
    raise AssertionError(f"{disk.domain}/{disk.target} did not reach {at_least} bytes in {timeout} s")


def assert_unchanged(lab: Lab, disk: LabDisk, saved: Path) -> None:
    """The disk still reads what it read before and still has its backing file."""
    lab.flush(disk.domain)
    assert backing_file(disk.top) is not None
    assert compare(disk.top, saved)
    assert check(disk.top)


def assert_streamed(lab: Lab, disk: LabDisk, saved: Path, base: Path | None = None) -> None:
    """The disk reads what it read before the stream and names ``base`` (or nothing) as backing."""
    lab.flush(disk.domain)
    assert backing_file(disk.top) == (str(base) if base is not None else None)
    assert compare(disk.top, saved)
    assert check(disk.top)


def test_full_stream_completes_with_identical_content(
    lab: Lab, backend: Backend, events: EventLog, make_domain: DomainFactory, save_content: SaveContent
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 48 * MIB, 3)])
    saved = save_content(disk)

    backend.start_stream(disk.domain, disk.target)
    outcome = events.wait_job(disk.domain, disk.target)

    assert outcome.state is JobState.COMPLETED
    assert outcome.kind is JobKind.PULL
    assert backend.job_info(disk.domain, disk.target) is None
    assert_streamed(lab, disk, saved)
    live = backend.get_domain(disk.domain).disk(disk.target)
    assert live is not None and not live.has_backing


def test_stream_to_base_keeps_the_base(
    lab: Lab, backend: Backend, events: EventLog, make_domain: DomainFactory, save_content: SaveContent
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 32 * MIB, 3)])
    saved = save_content(disk)
    base = disk.backing[-1]

    backend.start_stream(disk.domain, disk.target, base=str(base))

    assert events.wait_job(disk.domain, disk.target).state is JobState.COMPLETED
    assert_streamed(lab, disk, saved, base)


def test_throttled_stream_progresses_near_its_limit(
    backend: Backend, events: EventLog, make_domain: DomainFactory
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 96 * MIB, 2)])
    limit = parse_bandwidth("20M")

    backend.start_stream(disk.domain, disk.target, bandwidth=limit)
    first = wait_progress(backend, disk, 1)
    started = time.monotonic()
    time.sleep(2.0)
    second = backend.job_info(disk.domain, disk.target)
    elapsed = time.monotonic() - started

    assert second is not None
    assert second.bandwidth == limit
    rate = (second.cur - first.cur) / elapsed
    assert 10 * MIB <= rate <= 30 * MIB, f"rate {rate / MIB:.1f} MiB/s"
    backend.abort(disk.domain, disk.target)
    assert events.wait_job(disk.domain, disk.target).state is JobState.CANCELLED


def test_set_speed_changes_the_limit(backend: Backend, events: EventLog, make_domain: DomainFactory) -> None:
    (disk,) = make_domain([DiskSpec("vda", 64 * MIB, 2)])
    backend.start_stream(disk.domain, disk.target, bandwidth=MIB)

    backend.set_speed(disk.domain, disk.target, 0)

    assert events.wait_job(disk.domain, disk.target).state is JobState.COMPLETED
    assert backing_file(disk.top) is None


def test_abort_part_way_keeps_the_disk_whole_and_a_second_stream_finishes(
    lab: Lab, backend: Backend, events: EventLog, make_domain: DomainFactory, save_content: SaveContent
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 64 * MIB, 3)])
    saved = save_content(disk)
    backend.start_stream(disk.domain, disk.target, bandwidth=16 * MIB)
    wait_progress(backend, disk, 8 * MIB)

    backend.abort(disk.domain, disk.target)
    outcome = events.wait_job(disk.domain, disk.target)

    assert outcome.state is JobState.CANCELLED
    assert outcome.cur is not None and outcome.cur > 0
    assert backend.job_info(disk.domain, disk.target) is None
    assert_unchanged(lab, disk, saved)

    backend.start_stream(disk.domain, disk.target)
    assert events.wait_job(disk.domain, disk.target).state is JobState.COMPLETED
    assert_streamed(lab, disk, saved)


def test_two_disks_of_one_domain_stream_together(
    lab: Lab, backend: Backend, events: EventLog, make_domain: DomainFactory, save_content: SaveContent
) -> None:
    # Different sizes and limits: two streams finishing at the same moment crash QEMU 7.2.
    first, second = make_domain([DiskSpec("vda", 32 * MIB, 2), DiskSpec("vdb", 48 * MIB, 3)])
    saved = {disk.target: save_content(disk) for disk in (first, second)}

    backend.start_stream(first.domain, first.target, bandwidth=32 * MIB)
    backend.start_stream(second.domain, second.target, bandwidth=64 * MIB)
    running = {job.disk for job in backend.list_jobs() if job.domain == first.domain}
    outcomes = [events.wait_job(disk.domain, disk.target) for disk in (first, second)]

    assert running <= {first.target, second.target}
    assert [outcome.state for outcome in outcomes] == [JobState.COMPLETED, JobState.COMPLETED]
    for disk in (first, second):
        assert_streamed(lab, disk, saved[disk.target])
    assert backend.get_domain(first.domain).state is DomainState.RUNNING


def test_refusals_leave_disks_unchanged(
    lab: Lab, backend: Backend, events: EventLog, make_domain: DomainFactory, save_content: SaveContent
) -> None:
    disk, standalone = make_domain([DiskSpec("vda", 32 * MIB, 2), DiskSpec("vdb", 16 * MIB, 1)])
    saved = save_content(disk)
    saved_standalone = save_content(standalone)

    with pytest.raises(NothingToStream):
        backend.start_stream(standalone.domain, standalone.target)
    with pytest.raises(NotFound):
        backend.start_stream("no-such-domain", "vda")
    with pytest.raises(NotFound):
        backend.start_stream(disk.domain, "vdz")
    with pytest.raises(NotFound):
        backend.start_stream(disk.domain, disk.target, base="/not/in/the/chain.qcow2")
    with pytest.raises(InvalidInput):
        backend.start_stream(disk.domain, disk.target, bandwidth=parse_bandwidth("-5M"))
    with pytest.raises(InvalidInput):
        backend.start_stream(disk.domain, disk.target, bandwidth=-1)
    readonly = lab.backend(readonly=True)
    try:
        assert readonly.list_domains()
        with pytest.raises(ReadOnly):
            readonly.start_stream(disk.domain, disk.target)
    finally:
        readonly.close()

    assert_unchanged(lab, disk, saved)
    assert compare(standalone.top, saved_standalone)
    assert backing_file(standalone.top) is None


def test_second_stream_on_a_busy_disk_is_refused(
    lab: Lab, backend: Backend, events: EventLog, make_domain: DomainFactory, save_content: SaveContent
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 32 * MIB, 2)])
    saved = save_content(disk)
    backend.start_stream(disk.domain, disk.target, bandwidth=MIB)

    with pytest.raises(JobBusy):
        backend.start_stream(disk.domain, disk.target)
    job = backend.job_info(disk.domain, disk.target)
    assert job is not None and job.bandwidth == MIB

    backend.abort(disk.domain, disk.target)
    assert events.wait_job(disk.domain, disk.target).state is JobState.CANCELLED
    assert_unchanged(lab, disk, saved)
