"""Transfer rate and ETA from a job's progress counter, right for smooth and for stepwise progress."""

from __future__ import annotations

from collections import deque

#: Samples closer together than this are merged: a counter read twice in a millisecond says nothing.
MIN_INTERVAL = 0.05


class RateMeter:
    """The rate over a window of progress changes, with a short history for sparklines.

    A throttled stream does not move smoothly: QEMU copies a whole chunk (512 KiB) and then sleeps,
    so at 64 KiB/s the counter jumps once every 8 s and reads the same in between. A rate taken
    between two polls (or smoothed over a few seconds) swings between twice the truth and zero.
    Here the rate is measured from change to change, over at least ``window`` seconds and at
    least ``steps`` changes, so a stepwise job is measured over whole steps; between steps the
    rate holds, and it falls only once the counter has been still for longer than its steps take.
    """

    def __init__(self, window: float = 5.0, steps: int = 4, history: int = 60) -> None:
        self.window = window
        self.steps = steps
        # (time, counter) where the counter changed, oldest first; the first sample too.
        self._changes: deque[tuple[float, int]] = deque()
        self._now = 0.0
        self.history: deque[float] = deque(maxlen=history)

    def add(self, now: float, cur: int) -> None:
        """Record that the counter read ``cur`` at monotonic time ``now``."""
        if not self._changes or cur < self._changes[-1][1]:
            # First sample, or the counter went back: a new job on the same disk.
            self._changes.clear()
            self._changes.append((now, cur))
            self._now = now
            return
        last_time, last_cur = self._changes[-1]
        if now - max(last_time, self._now) < MIN_INTERVAL and cur == last_cur:
            return
        self._now = now
        if cur != last_cur:
            self._changes.append((now, cur))
            # Forget changes older than the window, keeping enough to span ``steps`` of them.
            while len(self._changes) > self.steps + 1 and now - self._changes[1][0] >= self.window:
                self._changes.popleft()
        rate = self.rate
        if rate is not None:
            self.history.append(rate)

    @property
    def rate(self) -> float | None:
        """Bytes/s, or None until the counter has moved."""
        if len(self._changes) < 2:
            return None
        (first_time, first_cur), (last_time, last_cur) = self._changes[0], self._changes[-1]
        span = last_time - first_time
        if span < MIN_INTERVAL:
            return None
        # Still for longer than two of its usual steps: it is slowing down or stopped, so count
        # the time since as well.
        usual = span / (len(self._changes) - 1)
        if self._now - last_time > 2 * usual:
            span = self._now - first_time
        return (last_cur - first_cur) / span

    def eta(self, remaining: int) -> float | None:
        """Seconds to copy ``remaining`` bytes at the measured rate; None when it cannot be told."""
        if remaining <= 0:
            return 0.0
        rate = self.rate
        if not rate or rate <= 0:
            return None
        return remaining / rate
