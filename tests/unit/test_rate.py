"""The rate a user reads is right for smooth progress and for QEMU's stepwise throttled progress."""

from __future__ import annotations

import pytest

from blocktui.core.rate import RateMeter

KIB = 1024
MIB = 1024**2
#: QEMU's stream copies this much at once, then sleeps as its limit asks.
STEP = 512 * KIB


def _feed(meter: RateMeter, interval: float, rate: float, seconds: float) -> None:
    t = 0.0
    while t <= seconds:
        meter.add(t, int(rate * t))
        t += interval


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


@pytest.mark.parametrize("limit", [64 * KIB, 1 * MIB, 100 * MIB])
@pytest.mark.parametrize("phase", [0.0, 0.13, 0.37])
def test_a_throttled_stream_moving_in_steps_reads_its_limit_from_the_first_minute(
    limit: int, phase: float
) -> None:
    """Polled every 0.5 s, a job that jumps 512 KiB at a time: rate and ETA within 5 % at every poll."""
    size = 64 * MIB
    meter = RateMeter()
    t = phase
    while t < 180:
        copied = min(size, int(t * limit) // STEP * STEP)  # whole steps only, as QEMU copies
        meter.add(t, copied)
        if t >= 60:
            assert meter.rate is not None
            assert abs(meter.rate - limit) <= 0.05 * limit, f"t={t:.2f}: {meter.rate / KIB:.1f} KiB/s"
            remaining = size - copied
            truth = remaining / limit
            eta = meter.eta(remaining)
            assert eta is not None and abs(eta - truth) <= 0.05 * truth + 8, f"t={t:.2f}: {eta} vs {truth}"
        if copied >= size:
            break
        t += 0.5


def test_a_job_that_stops_moving_reads_slower_and_slower() -> None:
    meter = RateMeter()
    _feed(meter, 0.5, 1000.0, 10)
    moving = meter.rate
    for t in range(11, 60):
        meter.add(float(t), 10_000)
    assert moving is not None and meter.rate is not None
    assert meter.rate < moving / 5


def test_counter_going_back_resets() -> None:
    meter = RateMeter()
    meter.add(0.0, 0)
    meter.add(1.0, 1000)
    meter.add(2.0, 10)
    assert meter.rate is None
    assert meter.eta(100) is None
    assert meter.eta(0) == 0.0
