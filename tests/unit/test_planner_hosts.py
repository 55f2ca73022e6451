"""The planner never lets one host's silence hold up another's plans, whatever the user asked.

On the deterministic fake backend: these prove how the planner waits, not that a stream works.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from demo_hosts import demo_backends, demo_jobs
from fake_backend import FakeBackend

from blocktui.core.errors import HostError, JobBusy
from blocktui.core.model import (
    BlockJob,
    ChainLayer,
    ConnectionState,
    Disk,
    Domain,
    DomainState,
    JobKey,
    JobState,
)
from blocktui.engine.journal import Journal
from blocktui.engine.planner import Plan, Planner, PlanStatus
from blocktui.engine.session import SILENT_AFTER, Session

#: Long enough for a loaded machine; each wait ends as soon as its condition holds.
DEADLINE = 60.0


class Clock:
    """A monotonic clock tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Planner, FakeBackend, FakeBackend, Clock]]:
    clock = Clock()
    alpha, beta = demo_backends(hostile=False)
    session = Session([alpha, beta], poll_interval=0.05, clock=clock)
    journal = Journal(tmp_path / "journal.sqlite3")
    planner = Planner(session, journal, guard=False, clock=clock)
    session.open()
    try:
        yield planner, alpha, beta, clock
    finally:
        alpha.unhang()
        beta.unhang()
        planner.close(timeout=DEADLINE)
        journal.close()
        session.close()


def step_until(planner: Planner, done: object) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        planner.step()


def test_cancelling_a_plan_on_a_silent_host_holds_up_only_that_host(
    hosts: tuple[Planner, FakeBackend, FakeBackend, Clock],
) -> None:
    planner, alpha, beta, clock = hosts
    on_alpha = JobKey(alpha.uri, "web01", "vda")
    on_beta = JobKey(beta.uri, "cache", "vda")
    planner.add_stream(on_alpha)
    planner.add_stream(on_beta)
    step_until(planner, lambda: all(planner.session.job(k) is not None for k in (on_alpha, on_beta)))

    alpha.hang()
    cancelled = threading.Thread(target=planner.cancel, args=(on_alpha,), daemon=True)
    cancelled.start()
    before = planner.session.job(on_beta)
    assert before is not None
    beta.advance(1.0)

    def alpha_silent_beta_moving() -> bool:
        clock.now += 0.25  # time passes for the session only when the test moves it
        silent = {h.uri: h.silent_for for h in planner.session.snapshot().hosts}
        after = planner.session.job(on_beta)
        return silent[alpha.uri] >= SILENT_AFTER and after is not None and after.cur > before.cur

    # Steps keep coming back while alpha is silent: beta's row moves, alpha is marked.
    step_until(planner, alpha_silent_beta_moving)
    assert {h.uri: h for h in planner.step().hosts}[beta.uri].silent_for == 0
    assert cancelled.is_alive()  # the user's cancel waits on alpha, in its own thread

    alpha.unhang()
    cancelled.join(DEADLINE)
    assert not cancelled.is_alive()
    step_until(planner, lambda: (planner.session.job(on_alpha) or before).state is JobState.CANCELLED)
    plan = planner.plan(on_alpha)
    assert plan is not None and plan.status is PlanStatus.DONE


MIB = 1024**2


@pytest.mark.parametrize(
    ("checkpointed", "cur", "expected"),
    [
        (0, 0, 64 * MIB),
        (64 * MIB, 0, 128 * MIB),  # a new pull starts from 0: it stops past what is recorded
        (192 * MIB, 100 * MIB, None),  # past the last boundary: the last chunk runs to the end
        (64 * MIB, 150 * MIB, 192 * MIB),  # progress past the record: the next boundary after it
    ],
)
def test_a_run_never_stops_at_a_boundary_already_recorded(
    checkpointed: int, cur: int, expected: int | None
) -> None:
    plan = Plan(1, JobKey("h", "d", "vda"), 0, None, 64 * MIB, 0.0, (), size=256 * MIB)
    plan.checkpointed = checkpointed
    assert plan.next_boundary(cur) == expected


def test_a_host_that_answered_one_poll_with_an_error_is_polled_again(
    hosts: tuple[Planner, FakeBackend, FakeBackend, Clock],
) -> None:
    """No event comes when the connection never dropped: the session asks the backend itself."""
    planner, alpha, _beta, clock = hosts
    session = planner.session
    planner.step()
    alpha.errors.append(HostError(f"{alpha.uri}: internal error: the host had a bad moment"))

    def state() -> ConnectionState:
        clock.now += 1.0  # time for the next scan of every disk
        return {h.uri: h for h in session.snapshot().hosts}[alpha.uri].state

    # The error is answered (consumed) by a poll, then the host is polled again all the same.
    step_until(planner, lambda: state() is not None and not alpha.errors)
    before = len(alpha.calls)
    step_until(planner, lambda: state() is ConnectionState.CONNECTED and "list_jobs" in alpha.calls[before:])


GIB = 1024**3


def test_a_pause_mid_chunk_records_no_boundary_and_every_boundary_is_recorded_once(
    hosts: tuple[Planner, FakeBackend, FakeBackend, Clock],
) -> None:
    """On a host that cannot pause in place (a checkpoint stops the job), pausing between two
    boundaries records none; after resuming, each boundary is recorded once, in order."""
    planner, alpha, _beta, clock = hosts
    key = JobKey(alpha.uri, "web01", "vda")
    plan = planner.add_stream(key, bandwidth=GIB, chunk=4 * GIB)

    def run(seconds: float) -> None:
        clock.now += seconds
        alpha.advance(seconds)

    step_until(planner, lambda: planner.session.job(key) is not None)
    run(1.0)
    planner.step()
    planner.pause(key)
    step_until(planner, lambda: plan.status is PlanStatus.PAUSED)
    entry = planner.journal.get(plan.entry_id)
    assert entry is not None and entry.checkpoints == ()

    planner.resume(key)

    def finished() -> bool:
        run(0.25)
        return plan.status is PlanStatus.DONE

    step_until(planner, finished)
    entry = planner.journal.get(plan.entry_id)
    assert entry is not None and entry.status == "completed"
    assert [c.boundary for c in entry.checkpoints] == [4 * GIB, 8 * GIB, 10 * GIB]


def test_a_snapshot_of_one_host_holds_only_its_jobs_and_domains_and_every_host_state(
    hosts: tuple[Planner, FakeBackend, FakeBackend, Clock],
) -> None:
    planner, alpha, beta, _clock = hosts
    demo_jobs([alpha, beta])
    planner.step()
    session = planner.session

    whole, beta_only = session.snapshot(), session.snapshot(beta.uri)

    assert {v.key.host for v in whole.jobs} == {alpha.uri, beta.uri}
    assert [v for v in whole.jobs if v.key.host == beta.uri] == list(beta_only.jobs)
    assert {d.host for d in beta_only.domains} == {beta.uri}
    assert [h.uri for h in beta_only.hosts] == [alpha.uri, beta.uri]


class LaggingPause(FakeBackend):
    """A host whose reports show a pause one poll late, and that refuses to pause a paused job (QEMU)."""

    def __init__(self) -> None:
        chain = (ChainLayer("/i/top.qcow2", "qcow2"), ChainLayer("/i/base.qcow2", "qcow2"))
        disk = Disk(target="vda", source="/i/top.qcow2", format="qcow2", bus="virtio", chain=chain)
        super().__init__("qmp:/lag", [Domain("", "vm", DomainState.RUNNING, (disk,))], supports_pause=True)
        self.stale_reports = 0

    def pause(self, domain: str, disk: str) -> None:
        job = self.job(domain, disk)
        if job is not None and job.state is JobState.PAUSED:
            raise JobBusy(f"{domain}/{disk}: pause refused: Job is already paused")
        self.calls.append("pause")
        with self._lock:
            if job is not None:
                job.state = JobState.PAUSED
        self.stale_reports = 2

    def list_jobs(
        self, *, known: Mapping[str, Sequence[Disk]] | None = None, skip: Collection[tuple[str, str]] = ()
    ) -> list[BlockJob]:
        jobs = super().list_jobs(known=known, skip=skip)
        return [self._late(job) for job in jobs]

    def job_info(self, domain: str, disk: str) -> BlockJob | None:
        job = super().job_info(domain, disk)
        return None if job is None else self._late(job)

    def _late(self, job: BlockJob) -> BlockJob:
        if self.stale_reports and job.state is JobState.PAUSED:
            self.stale_reports -= 1
            return replace(job, state=JobState.ACTIVE)
        return job


def test_a_pause_the_host_shows_late_is_asked_once_and_the_plan_pauses(tmp_path: Path) -> None:
    host = LaggingPause()
    session = Session([host], poll_interval=0.05, clock=Clock())
    journal = Journal(tmp_path / "journal.sqlite3")
    planner = Planner(session, journal, guard=False)
    session.open()
    try:
        key = JobKey(host.uri, "vm", "vda")
        plan = planner.add_stream(key)
        step_until(planner, lambda: (session.job(key) is not None) and plan.status is PlanStatus.ACTIVE)
        planner.pause(key)
        step_until(planner, lambda: plan.status is PlanStatus.PAUSED)
        assert host.calls.count("pause") == 1
    finally:
        planner.close(timeout=DEADLINE)
        journal.close()
        session.close()
