"""The session polls each job as often as its progress can change: slow throttled jobs less often."""

from __future__ import annotations

import threading
import time

from demo_hosts import demo_backends
from fake_backend import FakeBackend, FakeJob

from blocktui.core.model import JobEvent, JobKey, JobKind, JobState
from blocktui.core.views import Snapshot
from blocktui.engine.session import Session

KIB, MIB = 1024, 1024**2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def polls_of(backend: FakeBackend, steps: int, clock: Clock, session: Session) -> int:
    """How many single-job polls ``steps`` steps half a second apart made."""
    before = backend.calls.count("job_info")
    for _ in range(steps):
        clock.now += 0.5
        session.step()
    return backend.calls.count("job_info") - before


def polled(bandwidth: int, steps: int) -> int:
    """Single-job polls of one job at ``bandwidth`` over ``steps`` steps half a second apart."""
    backend = demo_backends(hostile=False)[0]
    clock = Clock()
    # No scans after the first: they would read every job anyway.
    session = Session([backend], poll_interval=0.5, scan_interval=3600, clock=clock)
    session.open()
    try:
        backend.add_job(FakeJob("web01", "vda", end=64 * 1024 * MIB, cur=MIB, bandwidth=bandwidth))
        session.step()  # the first scan finds it
        return polls_of(backend, steps, clock, session)
    finally:
        session.close()


def test_a_slow_job_is_polled_every_few_seconds_a_fast_one_every_step() -> None:
    assert 4 <= polled(64 * KIB, 40) <= 8  # a step every 8 s: about every 4 s, not 40 times in 20 s
    assert polled(100 * MIB, 20) == 20


def test_a_job_the_planner_drives_is_polled_every_step_however_slow() -> None:
    backend = demo_backends(hostile=False)[0]
    clock = Clock()
    session = Session([backend], poll_interval=0.5, scan_interval=3600, clock=clock)
    session.open()
    try:
        backend.add_job(FakeJob("web01", "vda", end=64 * MIB, cur=MIB, bandwidth=64 * KIB))
        session.step()
        session.always_poll = {JobKey(backend.uri, "web01", "vda")}
        assert polls_of(backend, 10, clock, session) == 10
    finally:
        session.close()


def test_a_job_that_ends_while_its_host_is_being_polled_is_shown_without_waiting_for_the_poll() -> None:
    """The end comes as an event; a poll in flight (a host slow to answer) must not hold it back."""
    backend = demo_backends(hostile=False)[0]
    # A long poll interval: a step that waited for the poll would wait a minute.
    session = Session([backend], poll_interval=30, scan_interval=3600)
    session.open()
    key = JobKey(backend.uri, "web01", "vda")
    shown: list[Snapshot] = []
    try:
        backend.add_job(FakeJob("web01", "vda", end=64 * MIB, cur=MIB))
        session.step()
        backend.hang()  # the next poll blocks inside the host call
        stepping = threading.Thread(target=lambda: shown.append(session.step()), daemon=True)
        stepping.start()
        while "job_info" not in backend.calls[-1:] and stepping.is_alive():
            time.sleep(0.01)  # until the poll is in flight
        backend.emit(
            JobEvent(
                backend.uri, "web01", "vda", JobKind.PULL, JobState.COMPLETED, cur=64 * MIB, end=64 * MIB
            )
        )
        stepping.join(10)
        assert not stepping.is_alive(), "the step waited for the hung poll"
        assert [job.state for job in shown[0].jobs if job.key == key] == [JobState.COMPLETED]
    finally:
        backend.unhang()
        session.close()


def test_a_planner_step_reads_which_jobs_live_and_the_views_it_asks_for_only() -> None:
    backend = demo_backends(hostile=False)[0]
    session = Session([backend], poll_interval=0.5, scan_interval=3600, clock=Clock())
    session.open()
    web_a, web_b, db_a = (
        JobKey(backend.uri, d, k) for d, k in (("web01", "vda"), ("web01", "vdb"), ("db01", "vda"))
    )
    try:
        for key in (web_a, web_b, db_a):
            backend.add_job(FakeJob(key.domain, key.disk, end=64 * MIB, cur=MIB, bandwidth=64 * KIB))
        session.step()
        backend.emit(
            JobEvent(backend.uri, "db01", "vda", JobKind.PULL, JobState.COMPLETED, cur=64 * MIB, end=64 * MIB)
        )
        session.step()

        jobs = session.host_jobs(backend.uri, {web_a, db_a})

        assert jobs.live == {web_a, web_b}  # db01's ended
        assert set(jobs.views) == {web_a, db_a}
        assert jobs.views[web_a].cur == MIB
        assert jobs.others_live(web_a) and jobs.others_live(web_b) and not jobs.others_live(db_a)
        assert session.host_jobs("qemu+ssh://elsewhere/system", {web_a}).views == {}
    finally:
        session.close()
