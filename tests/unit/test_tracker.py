"""How the tracker decides what a job is doing and how it ended."""

from __future__ import annotations

from blocktui.core.model import BlockJob, ChainLayer, Disk, JobEvent, JobKey, JobKind, JobState
from blocktui.core.tracker import JobTracker

HOST = "qemu:///system"
KEY = JobKey(HOST, "web1", "vda")
MIB = 1024**2
CHAIN = (ChainLayer("/img/mid.qcow2", "qcow2"), ChainLayer("/img/base.qcow2", "qcow2"))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def job(
    cur: int, end: int = 64 * MIB, state: JobState = JobState.ACTIVE, kind: JobKind = JobKind.PULL
) -> BlockJob:
    return BlockJob(HOST, "web1", "vda", kind, state, cur=cur, end=end, bandwidth=10 * MIB)


def disk(chain: tuple[ChainLayer, ...]) -> Disk:
    return Disk("vda", "/img/top.qcow2", "qcow2", chain=chain)


def test_rate_and_eta_follow_progress() -> None:
    clock = Clock()
    tracker = JobTracker(clock)
    for second in range(6):
        clock.now = 100.0 + second
        tracker.observe_jobs(HOST, [job(second * 10 * MIB)])
    record = tracker.get(KEY)
    assert record is not None
    assert record.rate is not None and abs(record.rate - 10 * MIB) < 1
    # Steps of exactly 10 MiB a poll may each have landed any time in the second before it.
    assert record.eta is not None and 0.9 - 0.01 < record.eta < 1.4 + 0.01
    assert record.remaining == 14 * MIB


def test_completion_event_makes_it_completed_and_full() -> None:
    tracker = JobTracker(Clock())
    tracker.observe_jobs(HOST, [job(10 * MIB)])
    record = tracker.observe_event(JobEvent(HOST, "web1", "vda", JobKind.PULL, JobState.COMPLETED))
    assert record.state is JobState.COMPLETED
    assert record.cur == record.end == 64 * MIB
    assert record.rate is None and record.eta is None


def test_failed_event_keeps_bytes_done_and_reason() -> None:
    tracker = JobTracker(Clock())
    tracker.observe_jobs(HOST, [job(30 * MIB)])
    record = tracker.observe_event(
        JobEvent(HOST, "web1", "vda", JobKind.PULL, JobState.FAILED, error="Input/output error")
    )
    assert record.state is JobState.FAILED
    assert record.cur == 30 * MIB
    assert record.error == "Input/output error"


def test_vanished_pull_completed_only_when_chain_shrank() -> None:
    clock = Clock()
    tracker = JobTracker(clock)
    tracker.observe_jobs(HOST, [job(10 * MIB)], chains={KEY: CHAIN})
    assert tracker.observe_jobs(HOST, [], grace=1.0) == set()  # within the grace period
    clock.now += 2
    assert tracker.observe_jobs(HOST, [], grace=1.0) == {KEY}
    record = tracker.settle(KEY, disk(()))
    assert record is not None and record.state is JobState.COMPLETED


def test_vanished_pull_with_unchanged_chain_is_unknown_not_success() -> None:
    tracker = JobTracker(Clock())
    tracker.observe_jobs(HOST, [job(10 * MIB)], chains={KEY: CHAIN})
    assert tracker.observe_jobs(HOST, []) == {KEY}
    record = tracker.settle(KEY, disk(CHAIN))
    assert record is not None
    assert record.state is JobState.UNKNOWN
    assert record.cur == 10 * MIB
    assert "unchanged" in record.note


def test_vanished_pull_on_a_stopped_domain_is_unknown_though_no_chain_is_listed() -> None:
    # libvirt lists no backing chain for a shut-off domain: that is not a chain the pull emptied.
    tracker = JobTracker(Clock())
    tracker.observe_jobs(HOST, [job(10 * MIB)], chains={KEY: CHAIN})
    tracker.observe_jobs(HOST, [])
    unseen = Disk("vda", "/img/top.qcow2", "qcow2", chain=(), chain_known=False)
    record = tracker.settle(KEY, unseen, note="the domain is shutoff")
    assert record is not None
    assert (record.state, record.cur, record.note) == (JobState.UNKNOWN, 10 * MIB, "the domain is shutoff")


def test_vanished_job_on_a_gone_domain_is_unknown() -> None:
    tracker = JobTracker(Clock())
    tracker.observe_jobs(HOST, [job(10 * MIB)], chains={KEY: CHAIN})
    tracker.observe_jobs(HOST, [])
    record = tracker.settle(KEY, None)
    assert record is not None and record.state is JobState.UNKNOWN


def test_pull_to_a_base_completes_when_base_is_nearest() -> None:
    tracker = JobTracker(Clock())
    tracker.started(KEY, JobKind.PULL, chain_before=CHAIN, base="/img/base.qcow2")
    tracker.observe_jobs(HOST, [])
    record = tracker.settle(KEY, disk((ChainLayer("/img/base.qcow2", "qcow2"),)))
    assert record is not None and record.state is JobState.COMPLETED


def test_partial_poll_does_not_lose_jobs_outside_its_scope() -> None:
    tracker = JobTracker(Clock())
    other = BlockJob(HOST, "web1", "vdb", JobKind.COPY, JobState.ACTIVE, cur=1, end=2)
    tracker.observe_jobs(HOST, [job(1), other])
    assert tracker.observe_jobs(HOST, [job(2)], scope={KEY}) == set()
    vdb = tracker.get(JobKey(HOST, "web1", "vdb"))
    assert vdb is not None and vdb.state is JobState.ACTIVE


def test_expected_stop_reads_as_checkpoint_not_cancelled() -> None:
    tracker = JobTracker(Clock())
    tracker.observe_jobs(HOST, [job(16 * MIB)])
    tracker.expect_stop(KEY, JobState.PAUSED, "checkpoint")
    record = tracker.observe_event(JobEvent(HOST, "web1", "vda", JobKind.PULL, JobState.CANCELLED))
    assert record.state is JobState.PAUSED
    assert record.note == "checkpoint"


def test_cancel_is_its_own_state() -> None:
    tracker = JobTracker(Clock())
    tracker.observe_jobs(HOST, [job(16 * MIB)])
    record = tracker.observe_event(JobEvent(HOST, "web1", "vda", JobKind.PULL, JobState.CANCELLED))
    assert record.state is JobState.CANCELLED
    assert record.state.is_final


def test_a_new_job_after_an_ended_one_starts_a_new_record() -> None:
    tracker = JobTracker(Clock())
    tracker.observe_jobs(HOST, [job(16 * MIB)])
    tracker.observe_event(JobEvent(HOST, "web1", "vda", JobKind.PULL, JobState.CANCELLED))
    tracker.observe_jobs(HOST, [job(20 * MIB, kind=JobKind.COPY)])
    record = tracker.get(KEY)
    assert record is not None
    assert record.state is JobState.ACTIVE and record.kind is JobKind.COPY


def test_clear_finished_keeps_running_jobs() -> None:
    tracker = JobTracker(Clock())
    other = BlockJob(HOST, "web1", "vdb", JobKind.PULL, JobState.ACTIVE, cur=1, end=2)
    tracker.observe_jobs(HOST, [job(1), other])
    tracker.observe_event(JobEvent(HOST, "web1", "vda", JobKind.PULL, JobState.COMPLETED))
    assert tracker.clear_finished() == [KEY]
    assert [r.key.disk for r in tracker.records()] == ["vdb"]


def test_lost_event_keeps_its_reason() -> None:
    tracker = JobTracker(Clock())
    tracker.observe_jobs(HOST, [job(16 * MIB)])
    record = tracker.observe_event(
        JobEvent(HOST, "web1", "vda", JobKind.PULL, JobState.UNKNOWN, error="the QEMU process went away")
    )
    assert record.state is JobState.UNKNOWN
    assert record.cur == 16 * MIB
    assert record.error == "the QEMU process went away"


def test_a_completion_followed_by_the_domain_stopping_is_not_trusted() -> None:
    clock = Clock()
    tracker = JobTracker(clock)
    other = BlockJob(HOST, "db1", "vda", JobKind.PULL, JobState.ACTIVE, cur=1, end=2)
    tracker.observe_jobs(HOST, [job(60 * MIB), other])
    for domain in ("web1", "db1"):
        tracker.observe_event(JobEvent(HOST, domain, "vda", JobKind.PULL, JobState.COMPLETED))
    clock.now += 3
    assert tracker.distrust_completions(HOST, {"web1"}, window=10.0) == [KEY]
    record = tracker.get(KEY)
    assert record is not None and record.state is JobState.UNKNOWN
    assert "compare the disk" in record.note
    db1 = tracker.get(JobKey(HOST, "db1", "vda"))
    assert db1 is not None and db1.state is JobState.COMPLETED


def test_a_domain_stopping_long_after_a_completion_changes_nothing() -> None:
    clock = Clock()
    tracker = JobTracker(clock)
    tracker.observe_jobs(HOST, [job(60 * MIB)])
    tracker.observe_event(JobEvent(HOST, "web1", "vda", JobKind.PULL, JobState.COMPLETED))
    clock.now += 60
    assert tracker.distrust_completions(HOST, {"web1"}, window=10.0) == []
    record = tracker.get(KEY)
    assert record is not None and record.state is JobState.COMPLETED


def test_a_job_that_ended_during_its_start_keeps_its_outcome() -> None:
    # A window with nothing to read ends inside start_window: its event can be applied (a step on
    # another thread) before the session records the start.
    clock = Clock()
    tracker = JobTracker(clock)
    since = tracker.mark()
    clock.now += 0.01
    tracker.observe_event(JobEvent(HOST, "web1", "vda", JobKind.WINDOW, JobState.COMPLETED, cur=MIB, end=MIB))
    clock.now += 0.01
    record = tracker.started(KEY, JobKind.WINDOW, chain_before=CHAIN, since=since)

    assert record.state is JobState.COMPLETED
    clock.now += 10
    assert tracker.observe_jobs(HOST, [], grace=1.0) == set()  # nothing vanished to settle as unknown
    settled = tracker.get(KEY)
    assert settled is not None and settled.state is JobState.COMPLETED and settled.cur == MIB


def test_an_earlier_outcome_does_not_hide_a_new_start() -> None:
    clock = Clock()
    tracker = JobTracker(clock)
    tracker.observe_event(JobEvent(HOST, "web1", "vda", JobKind.PULL, JobState.COMPLETED, cur=MIB, end=MIB))
    # The clock has not moved (a coarse or frozen one): the order of events decides, not the time.
    record = tracker.started(KEY, JobKind.WINDOW, chain_before=CHAIN, since=tracker.mark())
    assert record.state is JobState.ACTIVE and record.kind is JobKind.WINDOW
