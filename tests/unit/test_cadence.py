"""How often each job is polled: as often as its progress can change."""

from __future__ import annotations

import random

import pytest

from blocktui.core.cadence import MAX_EVERY, STEP, next_poll_at, poll_every
from blocktui.core.model import BlockJob, JobKey, JobKind, JobState
from blocktui.core.tracker import JobTracker

KIB, MIB = 1024, 1024**2


def test_a_slow_throttled_job_is_polled_about_twice_a_step() -> None:
    assert poll_every(JobState.ACTIVE, 64 * KIB, None, 64 * MIB, 0.5) == MAX_EVERY  # a step every 8 s
    # The ETA counts down from the last step seen: as the end nears, steps are seen sooner.
    assert poll_every(JobState.ACTIVE, 64 * KIB, None, 6 * MIB, 0.5) == pytest.approx(2.4)  # 96 s left
    assert poll_every(JobState.ACTIVE, 64 * KIB, None, 1 * MIB, 0.5) == 0.5  # 16 s left
    assert poll_every(JobState.ACTIVE, 256 * KIB, 256 * KIB, 64 * MIB, 0.5) == 1.0  # a step every 2 s
    assert poll_every(JobState.ACTIVE, 256 * KIB, 128 * KIB, 64 * MIB, 0.5) == 2.0  # the slower one counts


def test_fast_unknown_or_ending_jobs_are_polled_at_the_poll_interval() -> None:
    assert poll_every(JobState.ACTIVE, 100 * MIB, 99 * MIB, 10 * 1024 * MIB, 0.5) == 0.5
    assert poll_every(JobState.ACTIVE, 0, None, 64 * MIB, 0.5) == 0.5  # unlimited, rate not known yet
    assert poll_every(JobState.ACTIVE, 64 * KIB, 64 * KIB, 256 * KIB, 0.5) == 0.5  # 4 s from its end
    assert poll_every(JobState.READY, 64 * KIB, None, 0, 0.5) == 0.5


def test_a_paused_job_is_looked_at_now_and_then() -> None:
    assert poll_every(JobState.PAUSED, 100 * MIB, None, 64 * MIB, 0.5) == MAX_EVERY


def _stream_polled_as_scheduled(phase: float, seed: int) -> tuple[list[tuple[float, float, float]], int]:
    """A 16 MiB stream at 64 KiB/s (QEMU's 512 KiB steps) polled when ``next_poll_at`` asks, on a
    poll worker that ticks every 0.5-0.6 s: (time, ETA error in s, time left) from 60 s on, and the polls."""
    limit, size = 64 * KIB, 16 * MIB
    key = JobKey("h", "web1", "vda")
    now = 0.0
    tracker = JobTracker(lambda: now)
    tracker.started(key, JobKind.PULL, chain_before=None, bandwidth=limit)
    duration = (size // STEP - 1) * STEP / limit
    ticks = random.Random(seed)
    tick, due, polls = phase, 0.0, 0
    errors: list[tuple[float, float, float]] = []
    while tick < duration:
        now = tick
        if tick >= due:
            polls += 1
            cur = min(size, (int(tick * limit / STEP) + 1) * STEP)
            job = BlockJob("h", "web1", "vda", JobKind.PULL, JobState.ACTIVE, cur, size, limit)
            tracker.observe_jobs("h", [job])
            record = tracker.get(key)
            assert record is not None
            every = poll_every(record.state, record.bandwidth, record.rate, record.remaining, 0.5)
            due = next_poll_at(tick, every, record.meter.next_step(), 0.5) or tick
        record = tracker.get(key)
        assert record is not None
        if tick >= 60:
            eta = record.eta_at(tick)
            assert record.rate is not None and eta is not None
            assert abs(record.rate - limit) <= 0.03 * limit, f"t={tick:.1f}: {record.rate / KIB:.1f} KiB/s"
            errors.append((tick, eta - (duration - tick), duration - tick))
        tick += 0.5 + ticks.uniform(0, 0.1)
    return errors, polls


@pytest.mark.parametrize("phase", [0.05, 0.2, 0.37])
@pytest.mark.parametrize("seed", range(4))
def test_a_slow_stream_read_on_both_sides_of_its_steps_shows_its_eta_within_5_percent(
    phase: float, seed: int
) -> None:
    """Polled every half step, a step is placed anywhere in a 4 s gap: 9 % off at 64 KiB/s."""
    errors, polls = _stream_polled_as_scheduled(phase, seed)
    for tick, error, left in errors:
        if left >= 10:
            assert abs(error) <= 0.05 * left, f"t={tick:.1f}: ETA off by {error:.1f} s with {left:.1f} s left"
    # No dearer than a poll every half step: 2 a step, and more near the end.
    assert polls <= 3 * (16 * MIB // STEP)
