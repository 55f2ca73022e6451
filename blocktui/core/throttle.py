"""Holding a stream to its limit: the speed to ask of QEMU so the rate it delivers is the limit.

QEMU's limiter delivers less than the speed it is given, by a few per cent that grow with the
speed and with how busy the host is: each 100 ms slice restarts when the job wakes, and a late
wake-up is lost time (measured here: -0.7 % at 10 MiB/s, -3.5 % to -4.9 % at 100 MiB/s). A
``RateTrim`` learns what fraction of the speed asked the limiter delivers, from the job's
progress, and asks that much more: only as much as is certain given the progress counter's
512 KiB steps and the polls' timing, never more than ``MAX_FACTOR`` times the limit, and at once
less when the job runs faster than its limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The most a speed is raised over the limit (QEMU's own shortfall stays well under this).
MAX_FACTOR = 1.08
#: A delivered fraction below this means something else holds the job back (the disks, the
#: host): asking more of the limiter would not help, and would overshoot once it clears.
LIMITER_BOUND = 0.9
#: Seconds over which old progress is forgotten, so the fraction follows the host's load.
MEMORY = 20.0
#: Nothing is learnt before this much time and this many of QEMU's copy steps.
MIN_SPAN = 1.0
MIN_STEPS = 16
STEP = 512 * 1024
#: How far from the poll's time the counter may have been read.
TIMING = 0.01
#: Readings further apart than this do not follow one run (the job was paused, or not polled).
BREAK = 5.0


@dataclass
class RateTrim:
    """The speed to ask for one job so the rate it delivers is its limit; told every poll."""

    factor: float = 1.0
    _last: tuple[float, int] | None = None
    _moved: float = 0.0  # bytes copied, older ones forgotten by MEMORY
    _asked: float = 0.0  # bytes the speeds asked over the same time would have copied
    _span: float = 0.0

    def observe(self, now: float, cur: int, asked: int) -> None:
        """Progress reads ``cur`` at ``now``, the job having run at ``asked`` bytes/s since the last reading.

        ``asked`` 0 (unlimited) teaches nothing; a counter that went back is a new job, and a
        long silence (a pause) a new run: both are measured afresh.
        """
        last, self._last = self._last, (now, cur)
        if last is None or cur < last[1] or asked <= 0 or now - last[0] > BREAK:
            self._moved = self._asked = self._span = 0.0
            return
        dt = now - last[0]
        if dt <= 0:
            return
        keep = math.exp(-dt / MEMORY)
        self._moved = self._moved * keep + (cur - last[1])
        self._asked = self._asked * keep + asked * dt
        self._span = self._span * keep + dt
        self._learn(asked)

    def speed(self, limit: int) -> int:
        """The speed to set for a job limited to ``limit`` bytes/s (0, unlimited, stays 0)."""
        return limit if limit <= 0 else round(limit * self.factor)

    def _learn(self, asked: int) -> None:
        if self._span < MIN_SPAN or self._moved < MIN_STEPS * STEP:
            return
        delivered = self._moved / self._asked  # of each byte/s asked
        if delivered * self.factor > 1.0:
            self.factor = max(1.0, 1.0 / delivered)  # faster than its limit: down at once
            return
        if delivered < LIMITER_BOUND:
            return  # held back by something other than the limiter
        # Only the shortfall that is certain is made up: one step more and a late poll counted
        # in the job's favour, so a low reading never pushes it over its limit.
        at_most = (self._moved + STEP) / max(self._asked - TIMING * asked, 1.0)
        self.factor = min(MAX_FACTOR, max(self.factor, 1.0 / at_most))
