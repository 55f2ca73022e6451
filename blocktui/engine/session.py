"""A session: the connected hosts, their domains and one tracker of every block job on them.

The session sits between the backends and whoever shows the jobs (the dashboard, the CLI). Its
action methods block on host calls, so the dashboard calls them from its own threads. Connecting
and polling run on one worker per host (``HostWorker``): a host that stops answering holds up only
its own work, and the snapshot says how long it has been silent. The internal lock keeps the
tracker consistent and is never held across a host call. Events from backends only queue up and
wake the poller: the tracker is changed in ``step`` and in the action methods.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future
from dataclasses import replace
from functools import partial
from typing import TypeVar

from blocktui.backends.base import Backend
from blocktui.core.errors import (
    BlocktuiError,
    InvalidInput,
    NeedsAuthentication,
    NotFound,
)
from blocktui.core.model import (
    BackendEvent,
    BlockJob,
    ConnectionState,
    Domain,
    HostInfo,
    JobKey,
)
from blocktui.core.tracker import JobTracker
from blocktui.core.views import HostJobs, JobView, Snapshot
from blocktui.engine.hostwork import Doorbell, HostWorker, wait_for
from blocktui.engine.session_actions import SessionActions
from blocktui.engine.session_polling import SessionPolling

T = TypeVar("T")

#: A host whose current call has run this long is shown as not answering. With polls every 0.5 s,
#: a host that stops answering is marked within 2 s.
SILENT_AFTER = 1.0
#: A host that could not be opened is tried again after this many seconds, doubling up to the
#: ceiling, so a host that was down when blocktui started joins by itself once it is up.
RETRY_FIRST = 1.0
RETRY_MAX = 30.0


class Session(SessionPolling, SessionActions):
    """Backends plus one ``JobTracker``; every public method may block on a host."""

    def __init__(
        self,
        backends: Iterable[Backend],
        *,
        readonly: bool = False,
        poll_interval: float = 0.5,
        scan_interval: float = 0.9,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create a session; nothing is contacted until ``open``.

        Args:
            readonly: refuse every change, whatever the connections allow.
            poll_interval: seconds between progress polls of running jobs.
            scan_interval: seconds between scans of every disk, which find jobs started by
                other clients (libvirt sends no event when a job starts). Just under a second,
                so a scan falls on every other poll and such a job shows within a second.
        """
        self._backends: dict[str, Backend] = {}
        for backend in backends:
            if backend.uri in self._backends:
                raise InvalidInput(f"host {backend.uri} is given twice")
            self._backends[backend.uri] = backend
        self._readonly = readonly
        self.poll_interval = poll_interval
        self.scan_interval = scan_interval
        self._clock = clock
        self._tracker = JobTracker(clock)
        self._lock = threading.RLock()
        self._events: queue.SimpleQueue[BackendEvent] = queue.SimpleQueue()
        self._doorbell = Doorbell()
        self._hosts: dict[str, HostInfo] = {
            uri: HostInfo(uri=uri, state=ConnectionState.CONNECTING, readonly=self._readonly)
            for uri in self._backends
        }
        self._domains: dict[str, tuple[Domain, ...]] = {uri: () for uri in self._backends}
        self._stale_hosts: set[str] = set(self._backends)
        self._stale_domains: dict[str, set[str]] = {uri: set() for uri in self._backends}
        self._opened = False
        self._closed = False
        self._next_poll: dict[JobKey, float] = {}
        self.always_poll: set[JobKey] = set()
        #: The last step returned at once to show jobs that ended (it polled nothing).
        self.showing_ends = False
        self._last_scan: dict[str, float] = {}
        self._workers = {uri: HostWorker(f"blocktui-host-{uri}", clock) for uri in self._backends}
        self._order = {uri: index for index, uri in enumerate(self._backends)}
        # The host's poll (or connect) in flight, so polls of one host never overlap or pile up.
        self._polls: dict[str, Future[None]] = {}
        #: Hosts whose open failed: when to try again, and the delay that led there.
        self._retry: dict[str, tuple[float, float]] = {}

    # -- connections ------------------------------------------------------------------------

    @property
    def readonly(self) -> bool:
        """True when the user asked for a read-only session."""
        return self._readonly

    @property
    def hosts(self) -> list[str]:
        """The host identifiers (URIs), in the order given."""
        return list(self._backends)

    def backend(self, host: str) -> Backend:
        """The backend serving ``host``.

        Raises:
            NotFound: no such host in this session.
        """
        try:
            return self._backends[host]
        except KeyError:
            raise NotFound(f"host {host!r} is not connected in this session") from None

    def open(self, timeout: float | None = None) -> None:
        """Connect every host in parallel; a host that fails is shown as disconnected, not raised.

        Args:
            timeout: wait at most this long for the hosts (None: until each has answered); a host
                still connecting then stays "connecting" and carries on in its worker.

        Opening an open session does nothing, so a caller may open early (to stage work) and
        hand the session to the dashboard, which opens it too.
        """
        if not self._opened:
            self._opened = True
            for uri, backend in self._backends.items():
                backend.set_listener(self._on_event)
                self._polls[uri] = self._workers[uri].submit(partial(self._connect, uri))
        wait_for(self._polls.values(), timeout)

    def _connect(self, uri: str) -> None:
        backend = self._backends[uri]
        try:
            backend.connect()
        except BlocktuiError as exc:
            auth = isinstance(exc, NeedsAuthentication)
            with self._lock:
                delay = min(self._retry.get(uri, (0.0, RETRY_FIRST / 2))[1] * 2, RETRY_MAX)
                self._retry[uri] = (self._clock() + delay, delay)
                state = ConnectionState.NEEDS_AUTH if auth else ConnectionState.DISCONNECTED
                self._set_host(uri, state, str(exc))
            return
        with self._lock:
            self._retry.pop(uri, None)
        info = backend.host_info()
        with self._lock:
            self._hosts[uri] = info
        self._refresh_host(uri)

    def close(self) -> None:
        """Close every connection (once; again does nothing); jobs keep running on their hosts."""
        if self._closed:
            return
        self._closed = True
        self._opened = False
        for uri, backend in self._backends.items():
            backend.set_listener(None)
            self._workers[uri].stop()
            try:
                backend.close()
            except BlocktuiError:
                continue

    def call(self, host: str, work: Callable[[], T], timeout: float | None = None) -> T:
        """Run ``work`` on ``host``'s worker, after what it has queued, and wait for its result.

        Raises:
            HostError: nothing back within ``timeout`` seconds (the work goes on in the worker).
        """
        return self._worker(host).call(work, timeout)

    def submit(self, host: str, work: Callable[[], T]) -> Future[T]:
        """Queue ``work`` on ``host``'s worker; its outcome arrives in the future."""
        return self._worker(host).submit(work)

    def _worker(self, host: str) -> HostWorker:
        self.backend(host)  # a host this session does not have is NotFound, said in one place
        return self._workers[host]

    # -- events and polling -----------------------------------------------------------------

    def _on_event(self, event: BackendEvent) -> None:
        # Runs on a backend's event thread: only queue and wake, never touch the tracker here.
        self._events.put(event)
        self._doorbell.ring()

    def wait(self, timeout: float) -> None:
        """Sleep until a backend event arrives or ``timeout`` seconds pass."""
        self._doorbell.wait(timeout)

    def wake(self) -> None:
        """End a ``wait`` early (after a user's action, or to stop the poller)."""
        self._doorbell.ring()

    def step(self) -> Snapshot:
        """Apply queued events, poll progress, settle vanished jobs; return what to show.

        Each host is polled in its own thread, so a host that stops answering delays only its
        own rows: its poll stays in flight and the others carry on at their pace.
        """
        with self._lock:
            self.showing_ends = self._drain_events()
            if self.showing_ends:
                # Show how a job ended at once, and poll right after: polling every running job
                # first would put the outcome behind a round trip per job.
                self._doorbell.ring()
                return self.snapshot()
        started = [poll for uri in self._backends if (poll := self._start_poll(uri)) is not None]
        # An event (a job that ended) arriving now cuts the wait short: its row need not wait for
        # the polls. A ring from before this step is for the next ``wait``, not for this one.
        rung = self._doorbell.rung
        wait_for(started, max(2 * self.poll_interval, 1.0), None if rung.done() else rung)
        with self._lock:
            self._drain_events()
            return self.snapshot()

    def _start_poll(self, uri: str) -> Future[None] | None:
        """Queue a poll of ``uri`` on its worker unless its last poll (or connect) is still running."""
        current = self._polls.get(uri)
        if current is not None and not current.done():
            return None

        def run() -> None:
            if self._retry_due(uri):
                self._connect(uri)
                return
            try:
                self._catch_up(uri)
                self._refresh_stale(uri)
                if self._hosts[uri].state is ConnectionState.CONNECTED:
                    self._poll_host(uri)
            except BlocktuiError as exc:
                # A failure the host explained: show it beside the host and poll again next time.
                with self._lock:
                    current = self._hosts[uri]
                    self._set_host(uri, current.state, str(exc))

        poll = self._polls[uri] = self._workers[uri].submit(run)
        return poll

    def _retry_due(self, uri: str) -> bool:
        """Whether ``uri`` failed to open and its next try has come."""
        with self._lock:
            retry = self._retry.get(uri)
            return retry is not None and not self._closed and self._clock() >= retry[0]

    def _catch_up(self, uri: str) -> None:
        """Take the backend's word that it is connected again (a failed poll marked it reconnecting).

        A backend reports its recovery with an event only when it had noticed the loss itself; a
        call that failed while the connection held (an error the host answered with) leaves no
        event to wait for. ``host_info`` never calls the host, so asking costs nothing.
        """
        if self._hosts[uri].state is not ConnectionState.RECONNECTING:
            return
        info = self._backends[uri].host_info()
        if info.state is ConnectionState.CONNECTED:
            with self._lock:
                self._hosts[uri] = info
                self._stale_hosts.add(uri)

    def poll_idle(self) -> None:
        """Start a poll of every host whose last poll has ended, without waiting (any thread).

        For a caller whose ``step`` is held up by a host that has just stopped answering: the
        other hosts' progress goes on reaching ``snapshot`` meanwhile.
        """
        for uri in self._backends:
            self._start_poll(uri)

    def host_states(self) -> tuple[HostInfo, ...]:
        """Every host as known now, with how long its current call has gone unanswered; no host call."""
        silent = {uri: worker.busy_for() for uri, worker in self._workers.items()}
        with self._lock:
            return tuple(
                replace(self._hosts[uri], silent_for=silent[uri])
                if silent[uri] >= SILENT_AFTER
                else self._hosts[uri]
                for uri in self._backends
            )

    def snapshot(self, host: str | None = None) -> Snapshot:
        """What the tracker and domain cache hold now, without contacting any host.

        ``host`` limits the domains and jobs to that host's (every host's state is still given).
        A planner step reads less still: ``host_jobs``, with a view of its plans' jobs only.
        """
        now = self._clock()
        hosts = self.host_states()
        uris = list(self._backends) if host is None else [host]
        with self._lock:
            records = [r for r in self._tracker.records() if host is None or r.key.host == host]
            return Snapshot(
                hosts=hosts,
                domains=tuple(d for uri in uris for d in self._domains[uri]),
                # Hosts in the order given, each host's jobs in the order first seen: polls of
                # several hosts finish in any order, the rows must not.
                jobs=tuple(
                    JobView.of(r, now) for r in sorted(records, key=lambda r: self._order[r.key.host])
                ),
            )

    def host_jobs(self, host: str, wanted: Collection[JobKey]) -> HostJobs:
        """``host``'s live jobs and the views of ``wanted``, without contacting it (a planner step)."""
        now = self._clock()
        with self._lock:
            records = [r for r in self._tracker.records() if r.key.host == host]
            return HostJobs(
                live=frozenset(r.key for r in records if not r.state.is_final),
                views={r.key: JobView.of(r, now) for r in records if r.key in wanted},
            )

    def job(self, key: JobKey) -> JobView | None:
        """The current view of one job, if the tracker has it."""
        with self._lock:
            record = self._tracker.get(key)
            return None if record is None else JobView.of(record, self._clock())

    def refresh_domains(self) -> None:
        """Re-read every connected host's domains, disks and chains (each on its worker, in parallel)."""
        refreshed = [self.submit(uri, partial(self._refresh_host, uri)) for uri in self._backends]
        for future in refreshed:
            future.result()

    def clear_finished(self) -> None:
        """Drop every finished job from the table."""
        with self._lock:
            self._tracker.clear_finished()
        self.wake()

    def domains(self) -> list[Domain]:
        """The cached domains of every host."""
        with self._lock:
            return [d for uri in self._backends for d in self._domains[uri]]

    def list_jobs(self) -> list[BlockJob]:
        """Every job on every connected host, straight from the hosts."""
        jobs: list[BlockJob] = []
        for uri, backend in self._backends.items():
            if self._hosts[uri].state is ConnectionState.CONNECTED:
                jobs.extend(backend.list_jobs())
        return jobs
