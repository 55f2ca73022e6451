"""How often a running job is worth polling: as often as its progress can change, no more.

QEMU moves a stream's progress counter one 512 KiB step at a time, so a job throttled to 64 KiB/s
shows the same figure for 8 s between steps: polling it twice a second buys nothing but host
calls (the ETA counts down between steps on its own, ``core.rate``). A job is polled at least
every ``MAX_EVERY`` seconds, and at the poll interval when it is fast, near its end, or its
speed is unknown; and as its end nears, often enough that the step last seen is never older than
``ETA_SHARE`` of the time left. Its end is reported by the host's event, not found by polling.

A slow job's steps come at a steady pace, so each can be read on both sides: just before it is
due and just after (``next_poll_at``). That places it within a poll of when it happened, where a
poll every half step leaves it anywhere in a 4 s gap at 64 KiB/s, and costs no more polls.
"""

from __future__ import annotations

from blocktui.core.model import JobState

#: QEMU's copy step for a stream: the counter moves by this much at a time.
STEP = 512 * 1024
#: The longest a running job goes unpolled.
MAX_EVERY = 4.0
#: A job is polled at least this often relative to the time it has left, so the ETA shown (which
#: counts down from the last step seen) is never late by more than this share of it.
ETA_SHARE = 0.025


def poll_every(state: JobState, bandwidth: int, rate: float | None, remaining: int, interval: float) -> float:
    """Seconds between polls of a job in ``state`` at ``bandwidth`` (0: none) and measured ``rate``.

    Args:
        remaining: bytes left (0 when unknown).
        interval: the session's poll interval (the shortest).
    """
    if state is JobState.PAUSED:
        return MAX_EVERY
    speeds = [s for s in (bandwidth, rate or 0) if s > 0]
    if state is not JobState.ACTIVE or not speeds:
        return interval
    speed = min(speeds)
    # Half a step: a step is seen at most half a step after it happened.
    every = STEP / speed / 2
    if remaining > 0:
        every = min(every, ETA_SHARE * remaining / speed)
    return min(MAX_EVERY, max(interval, every))


#: How long a job whose next step is predicted may still go unpolled (its probes come sooner for
#: any step of up to this long).
PROBED_EVERY = 2 * MAX_EVERY


def next_poll_at(now: float, every: float, step: tuple[float, float] | None, interval: float) -> float | None:
    """When to poll a job next, or None for at every poll.

    Args:
        now: this poll's time.
        every: ``poll_every``'s answer for the job.
        step: the window its next step is due in (``RateMeter.next_step``), or None.
        interval: the session's poll interval: a poll comes due at the next one, so up to that late.
    """
    if every <= interval:
        return None
    if step is not None:
        lo, hi = step
        # Read once before the window opens (a poll early: the one that comes due may be late), once
        # after it closes, and in its middle while it is wider than two polls: whichever side the
        # step falls on, the next window is half as wide.
        probes = (lo - interval, (lo + hi) / 2, hi) if hi - lo > 2 * interval else (lo - interval, hi)
        ahead = [probe for probe in probes if probe > now]
        if ahead:
            return min(ahead[0], now + PROBED_EVERY)
    # Half an interval early: the step that polls it next comes a little late.
    return now + every - interval / 2
