"""Transfer rate and ETA from a job's progress counter, right for smooth and for stepwise progress."""

from __future__ import annotations

import math
from collections import deque

#: Samples closer together than this are merged: a counter read twice in a millisecond says nothing.
MIN_INTERVAL = 0.05
#: A new limit closer than this (relative) to the old one is the same limit: the guard marks a
#: speed in its last few bytes without changing the pace.
SAME_LIMIT = 0.01
#: Still for this long (and for longer than its steps take) is a pause, not a hiccup: the pace
#: after it is measured afresh rather than averaged with the pause for a whole window.
PAUSE = 5.0


class RateMeter:
    """The rate over a window of progress changes, the ETA it gives, and a short history for sparklines.

    A throttled stream does not move smoothly: QEMU copies a whole chunk (512 KiB) and then sleeps,
    so at 64 KiB/s the counter jumps once every 8 s and reads the same in between. A rate taken
    between two polls (or smoothed over a few seconds) swings between twice the truth and zero.
    Here the rate is measured from change to change, over at least ``window`` seconds and at
    least ``steps`` changes, so a stepwise job is measured over whole steps; between steps the
    rate holds, and it falls only once the counter has been still for longer than its steps take.

    A poll sees a step up to one poll interval late, so the window is long enough for that to stay
    small (0.5 s in 30 s), and a change seen after a poll that saw none is placed between the two.
    A job's limit caps what it can do (QEMU never runs faster), so the rate never reads above it,
    and a new limit starts a new window rather than blending the old pace with the new.
    """

    def __init__(self, window: float = 30.0, steps: int = 8, history: int = 60) -> None:
        self.window = window
        self.steps = steps
        #: The job's limit in bytes/s; 0 when it has none.
        self.limit = 0
        # (time, counter, width) where the counter changed, oldest first, and how wide the gap
        # between polls it was placed in; the first sample too, as wide as its counter stood still.
        self._changes: deque[tuple[float, int, float]] = deque()
        self._now = 0.0
        # The last sample read the same as the one before it.
        self._still = False
        # The largest step every change is a whole number of (QEMU moves in chunks), and how long
        # before its sample the last change can have happened when no still poll pinned it down.
        self._quantum = 0
        self._gap = 0.0
        # Where the window starts afresh at the next change (after a new limit, or a pause).
        self._restart: tuple[float, int, float] | None = None
        # The last change happened after the first of these samples and by the second; None when
        # that change was more than one step (the counter moves faster than it is read).
        self._bracket: tuple[float, float] | None = None
        # ``_fit()`` of the changes as they stand.
        self._fitted: tuple[float, float] | None = None
        self.history: deque[float] = deque(maxlen=history)

    def set_limit(self, limit: int) -> None:
        """Note the job's limit (bytes/s, 0 for none); a different one measures afresh from the next step."""
        if self._changes and abs(limit - self.limit) > SAME_LIMIT * max(limit, self.limit):
            # It changed since the last sample, at the counter's value then; until the next step
            # shows the new pace, the old window (capped by the new limit) stands.
            self._restart = (self._now, self._changes[-1][1], math.inf)
        self.limit = limit

    def add(self, now: float, cur: int) -> None:
        """Record that the counter read ``cur`` at monotonic time ``now``."""
        if not self._changes or cur < self._changes[-1][1]:
            # First sample, or the counter went back: a new job on the same disk.
            self._changes.clear()
            self._changes.append((now, cur, math.inf))
            self._fitted = None
            self._now = now
            self._still = False
            self._quantum = 0
            self._restart = None
            self._bracket = None
            return
        last_time, last_cur, _ = self._changes[-1]
        if now - max(last_time, self._now) < MIN_INTERVAL and cur == last_cur:
            return
        if cur != last_cur:
            # After a poll that saw it still, the step landed somewhere between that poll and this one.
            at = (self._now + now) / 2 if self._still else now
            self._quantum = math.gcd(self._quantum, cur - last_cur)
            self._bracket = (self._now, now) if cur - last_cur == self._quantum else None
            self._gap = 0.0 if self._still else now - self._now
            restart, self._restart = self._restart, None
            if restart is not None:
                # The pace changed (a new limit, or it moved again after a stall): measure from then.
                self._changes.clear()
                self._changes.append(restart)
            elif self._stalled() and self._now - last_time >= PAUSE:
                # It moves again after a pause: its pace from this step on, from the next.
                self._restart = (at, cur, math.inf)
            if len(self._changes) == 1 and math.isinf(self._changes[0][2]):
                # A first sample is no step: it is as uncertain as the time it stood still.
                first_time, first_cur, _ = self._changes[0]
                self._changes[0] = (first_time, first_cur, at - first_time)
            self._changes.append((at, cur, now - self._now))
            # Forget changes older than the window, keeping enough to span ``steps`` of them.
            while len(self._changes) > self.steps + 1 and at - self._changes[1][0] >= self.window:
                self._changes.popleft()
            # The line moves only with a change; rate and ETA are read far more often.
            self._fitted = self._fit()
        self._still = cur == last_cur
        self._now = now
        rate = self.rate
        if rate is not None:
            self.history.append(rate)

    def _stalled(self) -> bool:
        """Whether the counter has been still, as of the last sample, for over two of its usual steps."""
        if len(self._changes) < 2:
            return False
        span = self._changes[-1][0] - self._changes[0][0]
        return self._now - self._changes[-1][0] > 2 * span / (len(self._changes) - 1)

    def _measure(self) -> tuple[float, float] | None:
        """(bytes/s, seconds since the last step while the next is not yet overdue), or None."""
        if len(self._changes) < 2:
            return None
        if self._stalled():
            # Slowing down or stopped: count the time since as well.
            (first_time, first_cur, _), last = self._changes[0], self._changes[-1]
            span = self._now - first_time
            if span < MIN_INTERVAL:
                return None
            rate, since = (last[1] - first_cur) / span, 0.0
        else:
            fitted = self._fitted
            if fitted is None:
                return None
            rate, last_time = fitted
            since = max(0.0, self._now - last_time)
        return (min(rate, float(self.limit)) if self.limit > 0 else rate), since

    def _fit(self) -> tuple[float, float] | None:
        """(bytes/s, when the last change happened) from the line through the window's changes.

        Each change is weighted by how narrowly its gap placed it, so a step read on both sides
        counts for more than one that fell in a long gap (or a first sample, which is no step).
        Two changes give the line through them.
        """
        weights = [1 / max(width, MIN_INTERVAL) ** 2 for _, _, width in self._changes]
        total = sum(weights)
        mean_time = sum(w * t for w, (t, _, _) in zip(weights, self._changes, strict=True)) / total
        mean_cur = sum(w * c for w, (_, c, _) in zip(weights, self._changes, strict=True)) / total
        spread = sum(w * (t - mean_time) ** 2 for w, (t, _, _) in zip(weights, self._changes, strict=True))
        if spread < MIN_INTERVAL**2 * total:
            return None
        slope = (
            sum(
                w * (t - mean_time) * (c - mean_cur)
                for w, (t, c, _) in zip(weights, self._changes, strict=True)
            )
            / spread
        )
        if slope <= 0:
            return None
        return slope, mean_time + (self._changes[-1][1] - mean_cur) / slope

    def next_step(self) -> tuple[float, float] | None:
        """When the next step is due: the last step's bracket (the sample before it, the one that
        saw it) one step's time on; None unless the counter moves one step at a time at a steady pace.

        Read on both sides of that window (and in its middle while it is wide), each step is placed
        within half its width, and the window narrows from step to step (``core.cadence.next_poll_at``).
        """
        measured = self._measure()
        if self._bracket is None or measured is None or measured[0] <= 0 or self._stalled():
            return None
        period = self._quantum / measured[0]
        lo, hi = self._bracket
        return lo + period, hi + period

    @property
    def rate(self) -> float | None:
        """Bytes/s, or None until the counter has moved."""
        measured = self._measure()
        return None if measured is None else measured[0]

    def eta(self, remaining: int, now: float | None = None) -> float | None:
        """Seconds to copy ``remaining`` bytes at the measured rate, as of ``now`` (default: the
        last sample); None when it cannot be told.

        Between two steps the counter stands still while time runs on: the ETA counts down from
        the last step, between samples too, rather than holding for a whole step and then
        dropping by it. A step seen
        on a poll right after another may be up to a poll old: half of that (or of one step's
        time, when steps are shorter) is counted as gone.
        """
        if remaining <= 0:
            return 0.0
        measured = self._measure()
        if measured is None or measured[0] <= 0:
            return None
        rate, since = measured
        if now is not None and since > 0:
            since += max(0.0, now - self._now)
        # Seen right after another change, the last one landed up to a poll (or one step) before.
        late = min(self._gap, self._quantum / rate) / 2
        return max(0.0, remaining / rate - since - late)
