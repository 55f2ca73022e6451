"""What a session changes on hosts: start, re-throttle, abort, pause and resume a job.

Mixed into ``Session``. Each host call runs on the host's worker, in order with its polls (from
that worker itself, as the planner's are, at once): a listing never races a change, and a host
that stopped answering holds up only the callers that asked it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

from blocktui.backends.base import Backend
from blocktui.core.errors import ReadOnly, Unsupported
from blocktui.core.model import JobKey, JobKind, JobState
from blocktui.core.tracker import JobTracker
from blocktui.core.windows import Window
from blocktui.engine.lookup import stream_disk

T = TypeVar("T")


class SessionActions:
    """The changes a session makes (the session's parts they use are declared here)."""

    _readonly: bool
    _lock: threading.RLock
    _tracker: JobTracker

    def backend(self, host: str) -> Backend:
        raise NotImplementedError

    def call(self, host: str, work: Callable[[], T], timeout: float | None = None) -> T:
        raise NotImplementedError

    def wake(self) -> None:
        raise NotImplementedError

    def _writable(self, host: str) -> Backend:
        backend = self.backend(host)
        if self._readonly or backend.readonly:
            raise ReadOnly(f"{host}: read-only session; restart without --readonly to change disks")
        return backend

    def start_stream(
        self, host: str, domain: str, disk: str, *, bandwidth: int = 0, base: str | None = None
    ) -> JobKey:
        """Start pulling ``disk``'s backing chain (down to ``base``) into it; return its key."""
        backend = self._writable(host)
        key = JobKey(host, domain, disk)
        found = self.call(host, partial(stream_disk, backend, key, base))
        since = self._asking()
        self.call(host, partial(backend.start_stream, domain, disk, bandwidth=bandwidth, base=base))
        with self._lock:
            self._tracker.started(
                key, JobKind.PULL, chain_before=found.chain, bandwidth=bandwidth, base=base, since=since
            )
        self.wake()
        return key

    def start_window(
        self, key: JobKey, window: Window, *, bandwidth: int = 0, local: Sequence[tuple[int, int]] = ()
    ) -> None:
        """Copy ``window`` of ``key``'s disk through a copy-on-read filter (a ``window`` job).

        Args:
            local: ranges the top image already holds (not read again).
        """
        backend = self._writable(key.host)
        found = self.call(key.host, partial(stream_disk, backend, key, None))
        start = partial(backend.start_window, key.domain, key.disk, window, bandwidth=bandwidth, local=local)
        since = self._asking()
        self.call(key.host, start)
        with self._lock:
            self._tracker.started(
                key, JobKind.WINDOW, chain_before=found.chain, bandwidth=bandwidth, since=since
            )
        self.wake()

    def _asking(self) -> int:
        """The tracker's mark before a start: the job may end (its event applied) before the call returns."""
        with self._lock:
            return self._tracker.mark()

    def set_speed(self, key: JobKey, bandwidth: int) -> None:
        """Change a job's limit in bytes/s (0 = unlimited)."""
        self.call(key.host, partial(self._writable(key.host).set_speed, key.domain, key.disk, bandwidth))
        with self._lock:
            record = self._tracker.get(key)
            if record is not None:
                record.bandwidth = bandwidth
        self.wake()

    def abort(self, key: JobKey) -> None:
        """Ask a job to stop; what a pull copied stays in the overlay."""
        self.call(key.host, partial(self._writable(key.host).abort, key.domain, key.disk))
        self.wake()

    def expect_stop(self, key: JobKey, state: JobState, note: str) -> None:
        """The next cancellation of ``key``'s job is deliberate: record it as ``state`` (a checkpoint)."""
        with self._lock:
            self._tracker.expect_stop(key, state, note)

    def end_checkpoint(self, key: JobKey, note: str, state: JobState = JobState.CANCELLED) -> None:
        """A job stopped at a checkpoint will not be carried on: show it as ``state`` (``note`` says why)."""
        with self._lock:
            self._tracker.end_checkpoint(key, note, state)
        self.wake()

    def pause(self, key: JobKey) -> None:
        """Hold a job in place (backends that support it)."""
        backend = self._pausable(key)
        self.call(key.host, partial(backend.pause, key.domain, key.disk))
        self.wake()

    def resume(self, key: JobKey) -> None:
        """Continue a paused job."""
        backend = self._pausable(key)
        self.call(key.host, partial(backend.resume, key.domain, key.disk))
        self.wake()

    def _pausable(self, key: JobKey) -> Backend:
        backend = self._writable(key.host)
        if not backend.supports_pause:
            raise Unsupported(f"{key.host}: this backend cannot pause a job in place")
        return backend
