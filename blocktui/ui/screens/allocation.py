"""When the detail pane re-reads where the selected disk's data lives, and what it last read.

A read runs ``qemu-img map`` (through the engine, off the UI thread), so it happens only when its
answer can have changed: a disk seen for the first time, a job starting, pausing or ending on it,
its chain changing, and every few seconds while a job copies into it. A disk nothing happens to
is read once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from blocktui.core.model import Disk, JobKey, JobState
from blocktui.core.views import JobView
from blocktui.ui.widgets.allocation import MapShown


@dataclass(frozen=True, slots=True)
class _Read:
    shown: MapShown | None  # None while the first read of the disk is under way
    at: float
    phase: object  # what the answer depends on, as it was when the read started


class AllocationWatch:
    """Decides when a disk's map is read again; one read at a time, each handed to ``read``."""

    #: Seconds between reads while a job copies into the disk.
    EVERY = 3.0
    #: Disks whose last map is kept (the ones a user has looked at lately).
    KEEP = 256

    def __init__(self, read: Callable[[JobKey, Disk], None], clock: Callable[[], float] = time.monotonic):
        """Start with nothing read.

        Args:
            read: starts reading ``key``'s map in the background; ``took`` gets the outcome.
        """
        self._read = read
        self.clock = clock
        self._reads: dict[JobKey, _Read] = {}
        self.reading: JobKey | None = None

    def look(self, key: JobKey, disk: Disk, job: JobView | None) -> MapShown | None:
        """What to show for ``key`` now (None: not read yet); starts a read when one is due."""
        phase = (disk.source, disk.chain, None if job is None else job.state)
        last = self._reads.get(key)
        copying = job is not None and job.state is JobState.ACTIVE
        now = self.clock()
        due = last is None or last.phase != phase or (copying and now - last.at >= self.EVERY)
        if due and self.reading is None:
            if len(self._reads) >= self.KEEP:
                self._reads.clear()
            self.reading = key
            self._reads[key] = _Read(last.shown if last else None, now, phase)
            self._read(key, disk)
        return last.shown if last else None

    def took(self, key: JobKey, shown: MapShown) -> None:
        """Keep a read's outcome (on the UI thread, from the worker's message)."""
        last = self._reads.get(key)
        if last is not None:
            self._reads[key] = _Read(shown, last.at, last.phase)
        if self.reading == key:
            self.reading = None
