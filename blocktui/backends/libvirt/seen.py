"""What the libvirt backend last saw of each disk's job: libvirt's events carry no progress of their own."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from blocktui.core.model import JobKind, JobState


@dataclass
class Seen:
    """The last poll of one disk's job."""

    kind: JobKind
    cur: int
    end: int
    ready: bool = False


class SeenJobs:
    """Last polls by (domain, disk); safe to use from the poll threads and libvirt's event thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], Seen] = {}

    def starting(self, key: tuple[str, str], kind: JobKind) -> None:
        """A job is being started: its event may arrive before the call that starts it returns."""
        with self._lock:
            self._seen[key] = Seen(kind, 0, 0)

    def forget(self, key: tuple[str, str] | None = None) -> None:
        """Forget one disk, or every disk (after the link was lost)."""
        with self._lock:
            if key is None:
                self._seen.clear()
            else:
                self._seen.pop(key, None)

    def polled(self, key: tuple[str, str], kind: JobKind, cur: int, end: int) -> bool:
        """Record a poll; True when the job already reported READY (a mirror waiting for a pivot)."""
        with self._lock:
            seen = self._seen.get(key)
            ready = seen is not None and seen.ready and seen.kind is kind
            self._seen[key] = Seen(kind, cur, end, ready)
        return ready

    def event(self, key: tuple[str, str], kind: JobKind, state: JobState) -> tuple[int | None, int | None]:
        """Record an event; return the progress (cur, end) to report with it, when known."""
        with self._lock:
            seen = self._seen.get(key)
            if state is JobState.READY:
                if seen is None:
                    seen = self._seen[key] = Seen(kind, 0, 0)
                seen.ready = True
            elif seen is not None:
                del self._seen[key]
        if seen is None or seen.end <= 0:
            return None, None
        return (seen.end if state is JobState.COMPLETED else seen.cur), seen.end
