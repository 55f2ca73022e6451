"""Smoothed transfer rate and ETA from a job's progress counter."""

from __future__ import annotations

from collections import deque

#: Samples closer together than this are merged: a counter read twice in a millisecond says nothing.
MIN_INTERVAL = 0.05


class RateMeter:
    """An exponentially weighted rate over progress samples, with a short history for sparklines.

    The weight of a sample decays with its age (``half_life`` seconds), not with the number of
    samples, so the estimate is the same whether the dashboard polls twice a second or once.
    """

    def __init__(self, half_life: float = 3.0, history: int = 60) -> None:
        self.half_life = half_life
        self._last: tuple[float, int] | None = None
        self._rate: float | None = None
        self.history: deque[float] = deque(maxlen=history)

    def add(self, now: float, cur: int) -> None:
        """Record that the counter read ``cur`` at monotonic time ``now``."""
        if self._last is None or cur < self._last[1]:
            # First sample, or the counter went back: a new job on the same disk.
            self._last = (now, cur)
            self._rate = None
            return
        last_time, last_cur = self._last
        elapsed = now - last_time
        if elapsed < MIN_INTERVAL:
            return
        instant = (cur - last_cur) / elapsed
        if self._rate is None:
            self._rate = instant
        else:
            weight = 1.0 - 0.5 ** (elapsed / self.half_life)
            self._rate += weight * (instant - self._rate)
        self._last = (now, cur)
        self.history.append(self._rate)

    @property
    def rate(self) -> float | None:
        """Smoothed bytes/s, or None until two samples are apart."""
        return self._rate

    def eta(self, remaining: int) -> float | None:
        """Seconds to copy ``remaining`` bytes at the smoothed rate; None when it cannot be told."""
        if remaining <= 0:
            return 0.0
        if not self._rate or self._rate <= 0:
            return None
        return remaining / self._rate
