"""The throttle's closed loop against a limiter that delivers less than it is asked, as QEMU's does."""

from __future__ import annotations

import random

import pytest

from blocktui.core.throttle import MAX_FACTOR, STEP_CHANGE, RateTrim

MIB = 1024**2
STEP = 512 * 1024


class Limiter:
    """QEMU's stream as seen through polls: 512 KiB steps at ``shortfall`` below the speed asked."""

    def __init__(self, shortfall: float, seed: int = 1) -> None:
        self.shortfall = shortfall
        self.copied = 0.0
        self.random = random.Random(seed)

    def run(self, asked: int, seconds: float) -> None:
        self.copied += asked * (1 - self.shortfall) * seconds

    @property
    def cur(self) -> int:
        return int(self.copied) // STEP * STEP  # progress moves a whole step at a time


def drive(limit: int, shortfall: float, seconds: float, jitter: float = 0.03) -> list[tuple[float, float]]:
    """Poll every 0.5 s (late by up to ``jitter``); return (time, bytes really copied) at each poll.

    The trim sees only whole steps (``cur``); the test judges it by what was really copied.
    """
    limiter, trim = Limiter(shortfall), RateTrim()
    now, polls = 0.0, []
    trim.observe(now, limiter.cur, 0)
    asked = trim.speed(limit)
    while now < seconds:
        wait = 0.5 + limiter.random.uniform(0, jitter)
        limiter.run(asked, wait)
        now += wait
        polls.append((now, limiter.copied))
        trim.observe(now, limiter.cur, asked)
        asked = trim.speed(limit)
    return polls


def rate(polls: list[tuple[float, float]], start: float, end: float) -> float:
    window = [(t, c) for t, c in polls if start <= t <= end]
    (t0, c0), (t1, c1) = window[0], window[-1]
    return (c1 - c0) / (t1 - t0)


#: The shortfalls measured here through libvirt alone (bench, 2026-12-02): -1.4 % at 10 MiB/s,
#: -2.9 % at 50, -4.7 % at 100; and the small one of an idle host.
SHORTFALLS = [
    (10, 0.014),
    (50, 0.029),
    (100, 0.047),
    (200, 0.05),
    *((mib, 0.007) for mib in (10, 50, 100, 200)),
]


@pytest.mark.parametrize(("limit_mib", "shortfall"), SHORTFALLS)
def test_the_delivered_rate_meets_the_limit_and_never_runs_over_it(limit_mib: int, shortfall: float) -> None:
    limit = limit_mib * MIB
    polls = drive(limit, shortfall, 30.0)

    assert abs(rate(polls, 1.0, 11.0) / limit - 1) <= 0.01
    # Within one change of the speed: a smaller shortfall is not worth the burst a raise brings.
    assert abs(rate(polls, 10.0, 30.0) / limit - 1) <= STEP_CHANGE
    windows = [rate(polls, t, t + 2.0) for t, _ in polls if t + 2.0 <= polls[-1][0]]
    assert max(windows) <= limit * 1.01


def feed(trim: RateTrim, limit: int, rate: float, seconds: float) -> list[int]:
    """Tell ``trim`` of a job that moves at ``rate`` whatever it is asked; the speeds it asks."""
    asked, speeds = trim.speed(limit), []
    for tick in range(int(seconds * 2) + 1):
        now = tick * 0.5
        trim.observe(now, int(now * rate) // STEP * STEP, asked)
        asked = trim.speed(limit)
        speeds.append(asked)
    return speeds


def test_a_job_held_back_by_its_disks_is_not_pushed_beyond_the_limit_for_it() -> None:
    assert max(feed(RateTrim(), 100 * MIB, 40 * MIB, 20)) == 100 * MIB  # the limiter is not what holds it


def test_never_more_than_max_factor_and_unlimited_stays_unlimited() -> None:
    trim = RateTrim()
    assert max(feed(trim, 10 * MIB, 9.2 * MIB, 30)) <= round(10 * MIB * MAX_FACTOR)
    assert trim.speed(0) == 0


def test_a_job_faster_than_its_limit_is_brought_down_to_it_at_once() -> None:
    trim = RateTrim(factor=1.05)
    speeds = feed(trim, 10 * MIB, 11 * MIB, 3)  # the disk's unallocated ranges go by unthrottled
    assert speeds[-1] == 10 * MIB


def test_a_new_job_on_the_disk_is_measured_afresh() -> None:
    trim = RateTrim()
    feed(trim, 20 * MIB, 19 * MIB, 10)
    learnt = trim.factor
    assert learnt > 1.03
    trim.observe(100.0, 0, trim.speed(20 * MIB))  # the counter went back: a new job
    assert trim.factor == learnt  # what the limiter delivers is kept, the measurement restarts


def test_time_paused_is_not_taken_for_a_shortfall() -> None:
    trim = RateTrim()
    feed(trim, 20 * MIB, 20 * MIB, 10)
    assert trim.factor == 1.0
    trim.observe(60.0, 200 * MIB, trim.speed(20 * MIB))  # 50 s later, barely moved: it was paused
    trim.observe(60.5, 210 * MIB, trim.speed(20 * MIB))
    assert trim.factor == 1.0


def test_a_stall_is_not_made_up_by_running_over_the_limit_afterwards() -> None:
    trim, limit = RateTrim(), 100 * MIB
    asked, copied, speeds = trim.speed(limit), 0.0, []
    for tick in range(1, 61):
        stalled = tick % 20 in (10, 11)  # qcow2 allocating: a second in every ten without progress
        copied += 0 if stalled else asked * 0.97 * 0.5
        trim.observe(tick * 0.5, int(copied) // STEP * STEP, asked)
        asked = trim.speed(limit)
        speeds.append(asked)
    assert max(speeds) <= limit / 0.97 * 1.006  # only the limiter's 3 % is made up, not the stalls


def test_the_steps_a_speed_change_copies_at_once_do_not_raise_the_speed_again() -> None:
    # As traced at 10 MiB/s: a new speed wakes QEMU's job, which copies three steps at once and
    # then that much less; the engine reads the job again just after setting it.
    trim, limit, shortfall = RateTrim(), 10 * MIB, 0.013
    copied, debt, now, asked = 0.0, 0.0, 0.0, trim.speed(limit)
    trim.observe(now, 0, asked)
    polls = []
    for _tick in range(60):
        moved = asked * (1 - shortfall) * 0.5
        copied, debt = copied + moved - min(debt, moved), debt - min(debt, moved)
        now += 0.5
        polls.append((now, copied))
        trim.observe(now, int(copied) // STEP * STEP, asked)
        speed = trim.speed(limit)
        if speed != asked:
            asked, copied, debt = speed, copied + 3 * STEP, debt + 3 * STEP
            trim.observe(now + 0.01, int(copied) // STEP * STEP, asked)

    assert rate(polls, 5.0, 30.0) <= limit * 1.005
    assert abs(rate(polls, 1.0, 11.0) / limit - 1) <= 0.013  # never worse than no trim at all


def test_readings_that_swing_by_steps_bring_few_raises_and_so_few_bursts() -> None:
    # As traced at 10 MiB/s: QEMU delivers half-second intervals of about 4.5 and 6 MiB in turn,
    # and each raise copies three steps at once. A swing read as running over brought the speed
    # down and, at the next short interval, up again: a burst every second or two.
    for shortfall in (0.013, 0.05):
        trim, limit = RateTrim(), 10 * MIB
        copied, debt, now, asked = 0.0, 0.0, 0.0, trim.speed(limit)
        trim.observe(now, 0, asked)
        raises, polls = 0, []
        for tick in range(60):
            moved = asked * (1 - shortfall) * 0.5 + (1.5 if tick % 2 else -1.5) * STEP
            copied, debt = copied + moved - min(debt, moved), debt - min(debt, moved)
            now += 0.5
            polls.append((now, copied))
            trim.observe(now, int(copied) // STEP * STEP, asked)
            speed = trim.speed(limit)
            if speed > asked:
                raises += 1
                copied, debt = copied + 3 * STEP, debt + 3 * STEP
            if speed != asked:
                asked = speed
                trim.observe(now + 0.01, int(copied) // STEP * STEP, asked)

        assert raises <= 2, f"{raises} raises at a {shortfall:.1%} shortfall"
        assert abs(rate(polls, 1.0, 11.0) / limit - 1) <= 0.01
