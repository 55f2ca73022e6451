"""The QMP backend against real QEMU processes of the QMP lab (``-machine none``, qcow2 chains)."""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import QMPClient

from blocktui.backends.qmp import QmpBackend
from blocktui.backends.qmp.greeting import connect_greeted
from blocktui.core.errors import JobBusy, NotFound, NothingToStream, ReadOnly
from blocktui.core.model import (
    BackendEvent,
    BlockJob,
    DomainState,
    JobEvent,
    JobKind,
    JobState,
)
from blocktui.lab import LAB_DIR_ENV, DiskSpec, LabDisk
from blocktui.lab.images import backing_file, compare, flatten_copy
from blocktui.lab.qmp_lab import QmpLab

pytestmark = pytest.mark.integration

MIB = 1024 * 1024

_names = itertools.count(1)


@pytest.fixture(scope="module")
def qlab() -> Iterator[QmpLab]:
    """A QMP lab of this module's own, under ``$BLOCKTUI_LAB_DIR`` (default /tmp/btq)."""
    root = Path(os.environ.get(LAB_DIR_ENV) or "/tmp/btq") / "own"
    lab = QmpLab(root)
    lab.down()
    try:
        yield lab
    finally:
        lab.down()


Make = Callable[..., tuple[str, list[LabDisk]]]


@pytest.fixture
def make(qlab: QmpLab) -> Iterator[Make]:
    """Create a QEMU for one test (``qN``); it and its images go when the test ends."""
    created: list[str] = []

    def create(disks: list[DiskSpec], **options: Any) -> tuple[str, list[LabDisk]]:
        name = f"q{next(_names)}"
        created.append(name)
        return name, qlab.create_domain(name, disks, **options)

    yield create
    for name in created:
        qlab.destroy_domain(name)


class Events:
    """Backend events from the QMP thread, for tests to wait on."""

    def __init__(self) -> None:
        self.queue: queue.Queue[BackendEvent] = queue.Queue()
        self.jobs: list[JobEvent] = []

    def __call__(self, event: BackendEvent) -> None:
        self.queue.put(event)

    def wait(self, predicate: Callable[[JobEvent], bool], timeout: float = 60.0) -> JobEvent:
        deadline = time.monotonic() + timeout
        for event in self.jobs:
            if predicate(event):
                return event
        while (left := deadline - time.monotonic()) > 0:
            try:
                received = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(received, JobEvent):
                self.jobs.append(received)
                if predicate(received):
                    return received
        raise AssertionError(f"no matching job event within {timeout} s; saw {self.jobs}")

    def final(self, domain: str, disk: str, timeout: float = 60.0) -> JobEvent:
        return self.wait(lambda e: e.domain == domain and e.disk == disk and e.state.is_final, timeout)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def backend(qlab: QmpLab, events: Events) -> Iterator[QmpBackend]:
    qlab.socket_dir.mkdir(parents=True, exist_ok=True)
    opened = QmpBackend(directory=qlab.socket_dir, timeout=5.0, hold=True)
    opened.set_listener(events)
    opened.connect()
    try:
        yield opened
    finally:
        opened.close()


def _job(backend: QmpBackend, domain: str, disk: str) -> BlockJob:
    job = backend.job_info(domain, disk)
    assert job is not None, f"{domain}/{disk} has no job"
    return job


def _rate_over(backend: QmpBackend, domain: str, since: int, seconds: float) -> float:
    """Bytes/s a job moves over at least ``seconds`` (measured: a busy machine may sleep longer)."""
    started = time.monotonic()
    time.sleep(seconds)
    moved = _job(backend, domain, "vda").cur - since
    return moved / (time.monotonic() - started)


def _wait_cur(backend: QmpBackend, domain: str, disk: str, at_least: int, timeout: float = 60.0) -> BlockJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _job(backend, domain, disk)
        if job.cur >= at_least:
            return job
        time.sleep(0.05)
    raise AssertionError(f"{domain}/{disk} did not reach {at_least} bytes in {timeout} s")


def test_stream_completes_and_keeps_content(
    make: Make, qlab: QmpLab, backend: QmpBackend, events: Events, tmp_path: Path
) -> None:
    name, disks = make([DiskSpec("vda", 48 * MIB, 3)])
    disk = disks[0]
    saved = tmp_path / "before.raw"
    flatten_copy(disk.top, saved)
    before = backend.get_domain(name).disk("vda")
    assert before is not None and [layer.path for layer in before.chain] == [str(p) for p in disk.backing]

    backend.start_stream(name, "vda")
    done = events.final(name, "vda")

    assert done.state is JobState.COMPLETED and done.kind is JobKind.PULL
    assert done.cur == done.end == 48 * MIB
    after = backend.get_domain(name).disk("vda")
    assert after is not None and after.chain == ()
    assert backend.job_info(name, "vda") is None  # dismissed once recorded
    qlab.stop(name)
    assert backing_file(disk.top) is None
    assert compare(disk.top, saved)


def test_stream_down_to_a_base_keeps_it(
    make: Make, qlab: QmpLab, backend: QmpBackend, events: Events, tmp_path: Path
) -> None:
    name, disks = make([DiskSpec("vda", 32 * MIB, 3)])
    disk = disks[0]
    saved = tmp_path / "before.raw"
    flatten_copy(disk.top, saved)
    base = str(disk.backing[-1])

    backend.start_stream(name, "vda", base=base)
    assert events.final(name, "vda").state is JobState.COMPLETED

    after = backend.get_domain(name).disk("vda")
    assert after is not None and [layer.path for layer in after.chain] == [base]
    qlab.stop(name)
    assert backing_file(disk.top) == base
    assert compare(disk.top, saved)


def test_refusals(make: Make, qlab: QmpLab, backend: QmpBackend, events: Events) -> None:
    name, _disks = make([DiskSpec("vda", 32 * MIB, 2), DiskSpec("vdb", 40 * MIB, 1)])
    with pytest.raises(NotFound):
        backend.start_stream("no-such-qemu", "vda")
    with pytest.raises(NotFound):
        backend.start_stream(name, "vdz")
    with pytest.raises(NothingToStream):
        backend.start_stream(name, "vdb")
    with pytest.raises(NotFound):
        backend.start_stream(name, "vda", base="/not/in/the/chain.qcow2")
    readonly = QmpBackend(directory=qlab.spare_dir, readonly=True)
    readonly.connect()
    try:
        with pytest.raises(ReadOnly):
            readonly.start_stream(name, "vda")
        assert readonly.list_jobs() == []
    finally:
        readonly.close()

    backend.start_stream(name, "vda", bandwidth=4 * MIB)
    with pytest.raises(JobBusy):
        backend.start_stream(name, "vda")
    backend.abort(name, "vda")
    assert events.final(name, "vda").state is JobState.CANCELLED


def test_pause_freezes_and_resume_finishes(make: Make, backend: QmpBackend, events: Events) -> None:
    name, _disks = make([DiskSpec("vda", 64 * MIB, 2)])
    backend.start_stream(name, "vda", bandwidth=16 * MIB)
    _wait_cur(backend, name, "vda", 4 * MIB)

    backend.pause(name, "vda")
    events.wait(lambda e: e.domain == name and e.state is JobState.PAUSED, timeout=60)
    first = _job(backend, name, "vda")
    time.sleep(1.0)
    second = _job(backend, name, "vda")
    assert first.state is second.state is JobState.PAUSED
    assert first.cur == second.cur < second.end

    backend.resume(name, "vda")
    backend.set_speed(name, "vda", 0)
    done = events.final(name, "vda")
    assert done.state is JobState.COMPLETED


def test_set_speed_changes_rate_and_cancel(make: Make, backend: QmpBackend, events: Events) -> None:
    name, _disks = make([DiskSpec("vda", 128 * MIB, 2)])
    backend.start_stream(name, "vda", bandwidth=2 * MIB)
    start = _wait_cur(backend, name, "vda", 1)
    slow = _rate_over(backend, name, start.cur, 1.0)

    backend.set_speed(name, "vda", 32 * MIB)
    assert _job(backend, name, "vda").bandwidth == 32 * MIB
    fast = _rate_over(backend, name, _job(backend, name, "vda").cur, 1.0)

    # Rates over the time that really passed, so a busy machine does not skew them.
    assert slow <= 4 * MIB
    assert fast >= 4 * slow
    backend.abort(name, "vda")
    cancelled = events.final(name, "vda")
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.cur is not None and 0 < cancelled.cur < 128 * MIB


def test_read_error_fails_the_job_and_keeps_the_overlay(
    make: Make, qlab: QmpLab, backend: QmpBackend, events: Events, tmp_path: Path
) -> None:
    # Every read touching file offset 20 MiB of the base image fails with EIO.
    name, disks = make([DiskSpec("vda", 32 * MIB, 2)], read_error_at={"vda": 20 * MIB})
    disk = disks[0]
    saved = tmp_path / "before.raw"
    flatten_copy(disk.top, saved)

    backend.start_stream(name, "vda")
    failed = events.final(name, "vda")

    assert failed.state is JobState.FAILED
    assert failed.error is not None and "Input/output error" in failed.error
    assert failed.cur is not None and 0 < failed.cur < 32 * MIB
    assert backend.job_info(name, "vda") is None  # dismissed after the error was recorded
    qlab.stop(name)
    assert backing_file(disk.top) == str(disk.backing[0])
    assert compare(disk.top, saved)


def test_killed_qemu_is_lost_not_completed(
    make: Make, qlab: QmpLab, backend: QmpBackend, events: Events
) -> None:
    name, disks = make([DiskSpec("vda", 64 * MIB, 2)])
    backend.start_stream(name, "vda", bandwidth=8 * MIB)
    _wait_cur(backend, name, "vda", 1)

    qlab.kill(name)
    lost = events.final(name, "vda", timeout=60)

    assert lost.state is JobState.UNKNOWN
    assert lost.error is not None and "went away" in lost.error
    assert backend.get_domain(name).state is DomainState.LOST
    assert all(job.domain != name for job in backend.list_jobs())
    assert backing_file(disks[0].top) == str(disks[0].backing[0])


async def _start_foreign_jobs(socket: Path, images: Path) -> None:
    """Start a commit and a mirror the way another management tool would, on the spare monitor."""
    client = QMPClient("other")
    await connect_greeted(client, str(socket), 10.0)
    try:
        await client.execute("block-commit", {"job-id": "ext-commit", "device": "vdb", "speed": MIB})
        await client.execute(
            "drive-mirror",
            {
                "job-id": "ext-mirror",
                "device": "vda",
                "target": str(images / "mirror.qcow2"),
                "format": "qcow2",
                "sync": "full",
                "speed": MIB,
            },
        )
    finally:
        await client.disconnect()


def test_jobs_started_by_others_show_their_kind(
    make: Make, qlab: QmpLab, backend: QmpBackend, events: Events
) -> None:
    name, _disks = make([DiskSpec("vda", 32 * MIB, 1), DiskSpec("vdb", 40 * MIB, 2)])
    backend.get_domain(name)  # chains cached before the jobs start
    asyncio.run(_start_foreign_jobs(qlab.spare_socket(name), qlab.image_dir / name))

    jobs = {job.disk: job for job in backend.list_jobs() if job.domain == name}
    assert jobs["vda"].kind is JobKind.COPY and jobs["vda"].job_id == "ext-mirror"
    assert jobs["vdb"].kind is JobKind.COMMIT and jobs["vdb"].job_id == "ext-commit"
    assert not jobs["vda"].state.is_final
    with pytest.raises(JobBusy):
        backend.start_stream(name, "vdb")
    # Chains stay readable (from the cache) while others' jobs run.
    domain = backend.get_domain(name)
    vdb = domain.disk("vdb")
    assert vdb is not None and len(vdb.chain) == 1
    for disk in ("vda", "vdb"):
        backend.abort(name, disk)
