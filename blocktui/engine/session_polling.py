"""How a session reads its hosts: events, domains, running jobs, and how a job that went away ended.

Mixed into ``Session``; ``_drain_events`` runs in the stepping thread under the session's lock,
the rest on each host's worker.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from blocktui.backends.base import Backend
from blocktui.core.cadence import next_poll_at, poll_every
from blocktui.core.errors import BlocktuiError, Conflict, HostError, NotFound
from blocktui.core.model import (
    BackendEvent,
    BlockJob,
    ChainLayer,
    ConnectionEvent,
    ConnectionState,
    Disk,
    Domain,
    DomainsChanged,
    DomainState,
    HostInfo,
    JobEvent,
    JobKey,
    JobState,
)
from blocktui.core.tracker import JobTracker

#: How long a job may be missing from polls before its chain decides how it ended: the
#: backend's own event normally arrives within milliseconds and is the better witness.
SETTLE_GRACE = 1.0

#: A domain that stops this soon after one of its streams completed casts doubt on that stream.
AFTERMATH = 10.0

_STOPPED = frozenset({DomainState.SHUTOFF, DomainState.CRASHED, DomainState.LOST})


class SessionPolling:
    """Refreshes and polls of one host (the session's state they change is declared here)."""

    _backends: dict[str, Backend]
    _hosts: dict[str, HostInfo]
    _lock: threading.RLock
    _tracker: JobTracker
    _domains: dict[str, tuple[Domain, ...]]
    _stale_hosts: set[str]
    _stale_domains: dict[str, set[str]]
    _last_scan: dict[str, float]
    _clock: Callable[[], float]
    _events: queue.SimpleQueue[BackendEvent]
    _next_poll: dict[JobKey, float]
    scan_interval: float
    poll_interval: float
    #: Jobs polled at every step whatever their pace (the planner's: it stops them at boundaries).
    always_poll: set[JobKey]

    def _drain_events(self) -> bool:
        """Apply queued events; return whether any of them ended a job."""
        ended = False
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return ended
            if isinstance(event, JobEvent):
                record = self._tracker.observe_event(event)
                if record.state.is_final:
                    # The chain changed: the tree must show it.
                    self._stale(event.host, event.domain)
                    ended = True
            elif isinstance(event, ConnectionEvent):
                self._set_host(event.host, event.state, event.message)
                if event.state is ConnectionState.CONNECTED:
                    # Jobs may have ended while we were away, without events: rescan now.
                    self._stale_hosts.add(event.host)
                    self._last_scan.pop(event.host, None)
            elif isinstance(event, DomainsChanged):
                self._stale(event.host, event.domain)

    def _stale(self, uri: str, domain: str | None) -> None:
        """Have ``domain`` (None: every domain of ``uri``) read again before the next poll."""
        if domain is None:
            self._stale_hosts.add(uri)
        else:
            self._stale_domains[uri].add(domain)

    def _refresh_stale(self, uri: str) -> None:
        """Read again what changed on ``uri``: every domain, or only those named since the last
        poll (a job that ended, a domain that started or stopped: a host can have hundreds)."""
        with self._lock:
            whole = uri in self._stale_hosts
            names, self._stale_domains[uri] = self._stale_domains[uri], set()
        if whole:
            self._refresh_host(uri)
        elif names and self._hosts[uri].state is ConnectionState.CONNECTED:
            self._refresh_domains(uri, names)

    def _refresh_domains(self, uri: str, names: set[str]) -> None:
        read: dict[str, Domain | None] = {}
        try:
            for name in sorted(names):
                try:
                    read[name] = self._backends[uri].get_domain(name)
                except NotFound:
                    read[name] = None  # gone (a transient domain that stopped)
        except BlocktuiError:
            # Unreadable now: the whole listing says why, domain by domain (or that the host left).
            with self._lock:
                self._stale_hosts.add(uri)
            return
        with self._lock:
            domains = {d.name: d for d in self._domains[uri]}
            stopped = {name for name, d in read.items() if d is None and name in domains}
            stopped |= {name for name, d in read.items() if d is not None and d.state in _STOPPED}
            for name, domain in read.items():
                if domain is None:
                    domains.pop(name, None)
                else:
                    domains[name] = domain  # in its place, or last when new
            self._domains[uri] = tuple(domains.values())
            self._tracker.distrust_completions(uri, stopped, AFTERMATH)

    def _set_host(self, uri: str, state: ConnectionState, message: str = "") -> None:
        current = self._hosts.get(uri)
        if current is None:
            return
        if state is ConnectionState.CONNECTED:
            try:
                self._hosts[uri] = self._backends[uri].host_info()
                return
            except BlocktuiError:
                pass
        self._hosts[uri] = HostInfo(
            uri=uri,
            state=state,
            readonly=current.readonly,
            hypervisor=current.hypervisor,
            message=message,
        )

    def _refresh_host(self, uri: str) -> None:
        with self._lock:
            self._stale_hosts.discard(uri)
            self._stale_domains[uri].clear()
        if self._hosts[uri].state is not ConnectionState.CONNECTED:
            return
        try:
            domains = tuple(self._backends[uri].list_domains())
        except HostError as exc:
            with self._lock:
                self._stale_hosts.add(uri)
                self._set_host(uri, ConnectionState.RECONNECTING, str(exc))
            return
        stopped = {d.name for d in domains if d.state in _STOPPED}
        with self._lock:
            stopped |= {d.name for d in self._domains[uri]} - {d.name for d in domains}
            self._domains[uri] = domains
            self._tracker.distrust_completions(uri, stopped, AFTERMATH)

    def _chains(self, uri: str, keys: set[JobKey]) -> dict[JobKey, tuple[ChainLayer, ...]]:
        """The backing chains of ``keys``' disks, as last listed (only the polled disks: a host
        can have hundreds, and the tracker needs a chain only for a job it has not seen yet)."""
        domains = {key.domain for key in keys}
        return {
            key: disk.chain
            for domain in self._domains[uri]
            if domain.name in domains
            for disk in domain.disks
            if (key := JobKey(uri, domain.name, disk.target)) in keys
        }

    def _poll_host(self, uri: str) -> None:
        backend = self._backends[uri]
        now = self._clock()
        full = now - self._last_scan.get(uri, float("-inf")) >= self.scan_interval
        with self._lock:
            running = [
                r.key
                for r in self._tracker.records()
                if r.key.host == uri and not r.state.is_final and r.state is not JobState.QUEUED
            ]
            known = {d.name: d.disks for d in self._domains[uri] if not d.error}
        due = [key for key in running if key in self.always_poll or self._next_poll.get(key, now) <= now]
        excused: set[JobKey] = set()
        try:
            if full:
                # Every disk but the running jobs', whose polls come when due (core.cadence).
                jobs = backend.list_jobs(known=known, skip={(k.domain, k.disk) for k in running})
                listed = {job.key for job in jobs}
                jobs += [j for key in due if key not in listed and (j := self._job_info(backend, key))]
                excused = set(running) - set(due) - listed
                self._last_scan[uri] = now
                scope = None
            else:
                jobs = [j for key in due if (j := self._job_info(backend, key))]
                scope = set(due)
        except HostError as exc:
            with self._lock:
                self._set_host(uri, ConnectionState.RECONNECTING, str(exc))
            return
        except NotFound:
            # A domain went away between listing and polling: the full scan will settle it.
            self._last_scan.pop(uri, None)
            return
        with self._lock:
            vanished = self._tracker.observe_jobs(
                uri,
                jobs,
                chains=self._chains(uri, {job.key for job in jobs}),
                scope=scope,
                grace=SETTLE_GRACE,
                excused=excused,
            )
            alive = set(running)
            for key in [k for k in self._next_poll if k.host == uri and k not in alive]:
                del self._next_poll[key]  # ended (or gone): no schedule to keep
            for job in jobs:
                record = self._tracker.get(job.key)
                if record is not None:
                    every = poll_every(
                        record.state, record.bandwidth, record.rate, record.remaining, self.poll_interval
                    )
                    step = record.meter.next_step() if record.state is JobState.ACTIVE else None
                    at = next_poll_at(now, every, step, self.poll_interval)
                    if at is None:
                        self._next_poll.pop(job.key, None)  # at every step
                    else:
                        self._next_poll[job.key] = at
        for key in vanished:
            self._settle(key)

    @staticmethod
    def _job_info(backend: Backend, key: JobKey) -> BlockJob | None:
        """One disk's job; a domain that stopped or vanished simply has none (settling explains)."""
        try:
            return backend.job_info(key.domain, key.disk)
        except (NotFound, Conflict):
            return None

    def _settle(self, key: JobKey) -> None:
        backend = self._backends[key.host]
        disk: Disk | None
        note = ""
        try:
            domain = backend.get_domain(key.domain)
        except NotFound:
            disk = None
        except HostError:
            return  # try again on the next poll
        else:
            disk = domain.disk(key.disk)
            if domain.state is not DomainState.RUNNING and domain.state is not DomainState.PAUSED:
                note = f"the domain is {domain.state.value}"
        with self._lock:
            self._tracker.settle(key, disk, note=note)
            self._stale(key.host, key.domain)
