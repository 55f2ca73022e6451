"""Holding a stream to its limit: the speed to ask of QEMU so the rate it delivers is the limit.

QEMU's limiter delivers less than the speed it is given, by a few per cent that grow with the
speed and with how busy the host is: each 100 ms slice restarts when the job wakes, and a late
wake-up is lost time (measured here: -0.7 % at 10 MiB/s, -3.5 % to -4.9 % at 100 MiB/s). A
``RateTrim`` learns what fraction of the speed asked the limiter delivers, from the job's
progress between polls, and asks that much more.

Only the limiter's own shortfall is made up, never a stall: a poll interval in which the job
moved far less (or more) than in most is left out, so a pause while qcow2 allocates metadata, or
the burst after it, does not push the job over its limit once it runs freely again. What is made
up is only what is certain given the counter's 512 KiB steps and the polls' timing; the speed is
never raised past ``MAX_FACTOR`` times the limit, and is lowered at once when the job certainly
runs faster than its limit (by more than a step: less, the counter cannot tell from on time).

A raise costs a burst: QEMU wakes a sleeping job when its speed goes up (not when it goes down),
and the job copies up to three steps at once (traced at 10 MiB/s), over its limit in any short
window. So the speed goes up only by whole ``STEP_CHANGE`` fractions, and never comes down on a
reading that cannot tell (which would only raise it again). A reading taken just after a change is
joined to the next interval, for a burst left out as an outlier would read as a shortfall.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

#: The most a speed is raised over the limit (QEMU's own shortfall stays well under this).
MAX_FACTOR = 1.08
#: A delivered fraction below this means something else holds the job back (the disks, the
#: host): asking more of the limiter would not help, and would overshoot once it clears.
LIMITER_BOUND = 0.9
#: Poll intervals remembered (at two a second: the last 20 s).
MEMORY = 40
#: Nothing is learnt from fewer intervals, or fewer of QEMU's copy steps, than this.
MIN_INTERVALS = 2
MIN_STEPS = 16
STEP = 512 * 1024
#: An interval whose delivered fraction is this far from the median one is a stall or a burst.
OUTLIER = 0.15
#: How far from the poll's time the counter may have been read.
TIMING = 0.01
#: Readings further apart than this do not follow one run (the job was paused, or not polled).
BREAK = 5.0
#: Readings closer than this are one interval: a re-read just after a speed change sees the steps
#: the change made QEMU copy at once, which belong to the interval that follows.
MIN_SPAN = 0.2
#: The smallest raise of the speed asked: a smaller shortfall is not worth the burst a raise
#: brings. Measured by the bench on 2026-12-04, the highest 2 s window while queued streams start
#: under a budget: +5.6 % and +6.9 % with raises of 0.5 % (and lowering on any reading over),
#: +2.5 % and +2.3 % with 1 %, +2.2 % with this.
STEP_CHANGE = 0.0075


@dataclass
class RateTrim:
    """The speed to ask for one job so the rate it delivers is its limit; told every poll."""

    factor: float = 1.0
    _asked_factor: float = 1.0
    _last: tuple[float, int] | None = None
    # (seconds, bytes moved, bytes the speed asked would have moved) per poll interval.
    _intervals: deque[tuple[float, int, float]] = field(default_factory=lambda: deque(maxlen=MEMORY))

    def observe(self, now: float, cur: int, asked: int) -> None:
        """Progress reads ``cur`` at ``now``, the job having run at ``asked`` bytes/s since the last reading.

        ``asked`` 0 (unlimited) teaches nothing; a counter that went back is a new job, and a
        long silence (a pause) a new run: both are measured afresh.
        """
        last, self._last = self._last, (now, cur)
        if last is None or cur < last[1] or asked <= 0 or now - last[0] > BREAK:
            self._intervals.clear()
            return
        dt = now - last[0]
        if dt < MIN_SPAN:
            self._last = last  # counted with the next reading
            return
        self._intervals.append((dt, cur - last[1], asked * dt))
        self._learn(asked)

    def speed(self, limit: int) -> int:
        """The speed to set for a job limited to ``limit`` bytes/s (0, unlimited, stays 0)."""
        if abs(self.factor / self._asked_factor - 1) >= STEP_CHANGE or self.factor < self._asked_factor:
            self._asked_factor = self.factor
        return limit if limit <= 0 else round(limit * self._asked_factor)

    def _learn(self, asked: int) -> None:
        fractions = [moved / would for _dt, moved, would in self._intervals if would > 0]
        if len(fractions) < MIN_INTERVALS:
            return
        typical = statistics.median(fractions)
        # Two steps either way are the counter's own granularity, not a stall.
        steady = [
            (moved, would)
            for _dt, moved, would in self._intervals
            if abs(moved - typical * would) <= OUTLIER * typical * would + 2 * STEP
        ]
        moved = sum(m for m, _w in steady)
        would = sum(w for _m, w in steady)
        if moved < MIN_STEPS * STEP or would <= 0:
            return
        delivered = moved / would  # of each byte/s asked, while the job ran freely
        at_least = max(moved - STEP, 0) / (would + TIMING * asked)
        if at_least * self.factor > 1.0:
            self.factor = max(1.0, 1.0 / delivered)  # faster than its limit: down at once
            return
        if delivered * self.factor > 1.0:
            return  # over by less than the counter can tell: a change now would be undone
        if delivered < LIMITER_BOUND:
            return  # held back by something other than the limiter
        # Only the shortfall that is certain is made up: one step more and a late poll counted
        # in the job's favour, so a low reading never pushes it over its limit.
        at_most = (moved + STEP) / max(would - TIMING * asked, 1.0)
        self.factor = min(MAX_FACTOR, max(self.factor, 1.0 / at_most))
