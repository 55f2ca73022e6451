"""The smoothed rate does not depend on how often it is sampled."""

from __future__ import annotations

from blocktui.core.rate import RateMeter


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


def test_rate_follows_a_change_within_a_few_half_lives() -> None:
    meter = RateMeter(half_life=1.0)
    for t in range(10):
        meter.add(float(t), t * 1000)
    for t in range(10, 20):
        meter.add(float(t), 10_000 + (t - 10) * 100)
    assert meter.rate is not None and meter.rate < 110


def test_counter_going_back_resets() -> None:
    meter = RateMeter()
    meter.add(0.0, 0)
    meter.add(1.0, 1000)
    meter.add(2.0, 10)
    assert meter.rate is None
    assert meter.eta(100) is None
    assert meter.eta(0) == 0.0
