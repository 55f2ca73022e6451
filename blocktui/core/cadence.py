"""How often a running job is worth polling: as often as its progress can change, no more.

QEMU moves a stream's progress counter one 512 KiB step at a time, so a job throttled to 64 KiB/s
shows the same figure for 8 s between steps: polling it twice a second buys nothing but host
calls (the ETA counts down between steps on its own, ``core.rate``). A job is polled at least
every ``MAX_EVERY`` seconds, and at the poll interval when it is fast, near its end, or its
speed is unknown; and as its end nears, often enough that the step last seen is never older than
``ETA_SHARE`` of the time left. Its end is reported by the host's event, not found by polling.
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
