"""The rate and ETA a user reads are right for smooth progress and for QEMU's stepwise throttled progress."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blocktui.core.model import BlockJob, JobEvent, JobKey, JobKind, JobState
from blocktui.core.rate import RateMeter
from blocktui.core.tracker import JobTracker

KIB = 1024
MIB = 1024**2
#: QEMU's stream copies this much at once, then sleeps as its limit asks.
STEP = 512 * KIB
HOST = "qemu:///system"
KEY = JobKey(HOST, "web1", "vda")


def _feed(meter: RateMeter, interval: float, rate: float, seconds: float) -> None:
    t = 0.0
    while t <= seconds:
        meter.add(t, int(rate * t))
        t += interval


def qemu_copied(t: float, limit: int, size: int) -> int:
    """What a throttled QEMU stream has copied ``t`` s after it started: a first step at once, then
    one ``STEP`` each ``STEP / limit`` seconds (at 100 MiB/s that is 200 steps a second: smooth)."""
    return min(size, (int(t * limit / STEP) + 1) * STEP)


def qemu_duration(limit: int, size: int) -> float:
    """The real duration of that stream: it ends with its last step."""
    return (size // STEP - 1) * STEP / limit


def polls(phase: float, period: float, until: float) -> Iterator[float]:
    """The dashboard's poll times: a step, then a wait of the poll interval (so a little over it)."""
    t = phase
    while t < until:
        yield t
        t += period


def test_steady_rate_is_reported_whatever_the_poll_interval() -> None:
    fast, slow = RateMeter(), RateMeter()
    _feed(fast, 0.1, 1000.0, 10)
    _feed(slow, 1.0, 1000.0, 10)
    assert fast.rate is not None and abs(fast.rate - 1000.0) < 1
    assert slow.rate is not None and abs(slow.rate - 1000.0) < 1


def test_rate_follows_a_change_within_its_window() -> None:
    meter = RateMeter(window=5.0)
    for t in range(10):
        meter.add(float(t), t * 1000)
    for t in range(10, 20):
        meter.add(float(t), 10_000 + (t - 10) * 100)
    assert meter.rate is not None and meter.rate < 110


@pytest.mark.parametrize(
    ("limit", "size", "since"),
    [
        (64 * KIB, 16 * MIB, 60.0),  # 512 KiB every 8 s
        (1 * MIB, 224 * MIB, 60.0),  # 512 KiB every 0.5 s: as often as the polls, beating with them
        (100 * MIB, 3 * 1024 * MIB, 1.0),  # 200 steps a second: smooth to a poll
    ],
    ids=["64K", "1M", "100M"],
)
@pytest.mark.parametrize(("phase", "period"), [(0.05, 0.5), (0.37, 0.5), (0.13, 0.52), (0.3, 0.61)])
def test_a_throttled_stream_shows_the_truth_within_5_percent(
    limit: int, size: int, since: float, phase: float, period: float
) -> None:
    """Rate against bytes over the real duration; ETA against the real end, to a poll near it.

    A step can be seen up to a poll late, so in the last seconds, where 5 % of the time left is
    less than that, the ETA is held to half a poll (and a little for the rate's own error).
    """
    tracker = JobTracker(lambda: now)
    now = 0.0
    tracker.started(KEY, JobKind.PULL, chain_before=None, bandwidth=limit)
    duration = qemu_duration(limit, size)
    truth = size / duration
    for now in polls(phase, period, duration):
        job = BlockJob(
            HOST, "web1", "vda", JobKind.PULL, JobState.ACTIVE, qemu_copied(now, limit, size), size, limit
        )
        tracker.observe_jobs(HOST, [job])
        record = tracker.get(KEY)
        assert record is not None and (record.rate is None or record.rate <= limit)
        if now < since:
            continue
        assert record.rate is not None
        assert abs(record.rate - truth) <= 0.05 * truth, f"t={now:.2f}: {record.rate / KIB:.1f} KiB/s"
        left = duration - now
        assert record.eta is not None
        assert abs(record.eta - left) <= max(0.05 * left, 0.6 * period), (
            f"t={now:.2f}: ETA {record.eta:.1f} s, {left:.1f} s left"
        )


def test_a_throttled_stream_never_reads_above_its_limit_in_its_first_steps() -> None:
    meter = RateMeter()
    meter.set_limit(64 * KIB)
    for t in polls(0.4, 0.5, 30):
        meter.add(t, qemu_copied(t, 64 * KIB, 16 * MIB))
        assert meter.rate is None or meter.rate <= 64 * KIB


def test_a_job_that_stalls_reads_slower_and_its_eta_grows() -> None:
    """Steps at 64 KiB/s, then none: the ETA first counts down, then rises instead of sitting at 0."""
    meter = RateMeter()
    meter.set_limit(64 * KIB)
    size = 16 * MIB
    for t in polls(0.2, 0.5, 80):
        meter.add(t, qemu_copied(t, 64 * KIB, size))
    stuck = qemu_copied(80, 64 * KIB, size)
    moving_rate, moving_eta = meter.rate, meter.eta(size - stuck)
    etas = []
    for t in polls(80, 0.5, 200):
        meter.add(t, stuck)
        etas.append(meter.eta(size - stuck))
    assert moving_rate is not None and meter.rate is not None
    assert meter.rate < moving_rate / 2
    assert moving_eta is not None and etas[-1] is not None and etas[-1] > moving_eta
    assert all(eta is not None and eta > 0 for eta in etas)


def test_a_job_that_moves_again_after_a_pause_reads_its_pace_again() -> None:
    """1 MiB/s, paused (or stuck) for 20 s, then 1 MiB/s again: 15 s on, the pause no longer counts."""
    meter = RateMeter()
    meter.set_limit(MIB)
    size = 224 * MIB
    for t in polls(0.3, 0.5, 60):
        meter.add(t, qemu_copied(t, MIB, size))
    for t in polls(60.3, 0.5, 80):
        meter.add(t, qemu_copied(60, MIB, size))
    for t in polls(80.3, 0.5, 95):
        meter.add(t, qemu_copied(t - 20, MIB, size))
    assert meter.rate is not None and abs(meter.rate - MIB) <= 0.05 * MIB


def test_a_job_that_stops_moving_reads_slower_and_slower() -> None:
    meter = RateMeter()
    _feed(meter, 0.5, 1000.0, 10)
    moving = meter.rate
    for t in range(11, 60):
        meter.add(float(t), 10_000)
    assert moving is not None and meter.rate is not None
    assert meter.rate < moving / 5


def test_a_new_limit_is_read_within_a_few_steps() -> None:
    """64 KiB/s, then the user sets 1 MiB/s: the rate is the new pace 5 s later, not a blend."""
    meter = RateMeter()
    meter.set_limit(64 * KIB)
    t, copied = 0.0, STEP
    while t < 80:
        meter.add(t, copied)
        t += 0.5
        if t % 8 == 0:
            copied += STEP
    meter.set_limit(1 * MIB)
    while t < 85:
        t += 0.5
        copied += STEP
        meter.add(t, copied)
    assert meter.rate is not None and abs(meter.rate - MIB) <= 0.05 * MIB


def test_a_new_job_on_the_same_disk_is_measured_on_its_own() -> None:
    """A stream at 64 KiB/s completes; a new one at 1 MiB/s on the same disk reads 1 MiB/s, not a blend."""
    tracker = JobTracker(lambda: now)
    now = 0.0
    for now in polls(0.1, 0.5, qemu_duration(64 * KIB, 4 * MIB)):
        cur = qemu_copied(now, 64 * KIB, 4 * MIB)
        tracker.observe_jobs(
            HOST, [BlockJob(HOST, "web1", "vda", JobKind.PULL, JobState.ACTIVE, cur, 4 * MIB, 64 * KIB)]
        )
    tracker.observe_event(JobEvent(HOST, "web1", "vda", JobKind.PULL, JobState.COMPLETED))
    begun = now + 1
    tracker.started(KEY, JobKind.PULL, chain_before=None, bandwidth=MIB)
    for now in polls(begun, 0.5, begun + 20):
        cur = qemu_copied(now - begun, MIB, 64 * MIB)
        tracker.observe_jobs(
            HOST, [BlockJob(HOST, "web1", "vda", JobKind.PULL, JobState.ACTIVE, cur, 64 * MIB, MIB)]
        )
    record = tracker.get(KEY)
    assert record is not None and record.rate is not None
    assert abs(record.rate - MIB) <= 0.05 * MIB


def test_counter_going_back_resets() -> None:
    meter = RateMeter()
    meter.add(0.0, 0)
    meter.add(1.0, 1000)
    meter.add(2.0, 10)
    assert meter.rate is None
    assert meter.eta(100) is None
    assert meter.eta(0) == 0.0
