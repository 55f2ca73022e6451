"""How often each job is polled: as often as its progress can change."""

from __future__ import annotations

import pytest

from blocktui.core.cadence import MAX_EVERY, poll_every
from blocktui.core.model import JobState

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
