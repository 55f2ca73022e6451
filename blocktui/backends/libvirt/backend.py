"""The libvirt backend: block pull/rebase jobs on any libvirt URI, with events and reconnection."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

# libvirt_events must be imported before libvirt: it routes libvirt's log output away from stderr.
import blocktui.backends.libvirt_events  # noqa: F401  # isort: skip

import libvirt

from blocktui.backends.bounded import bounded
from blocktui.backends.libvirt.checks import check_bandwidth, check_target, unreadable
from blocktui.backends.libvirt.clues import FAILURE_SETTLE, FailureClues
from blocktui.backends.libvirt.connection import LibvirtConnection
from blocktui.backends.libvirt.errors import (
    DOMAIN_STATES,
    EVENT_STATES,
    JOB_KINDS,
    MIRROR_KINDS,
    is_connection_error,
    map_error,
)
from blocktui.backends.libvirt.parse import UnreadableXml, parse_disks
from blocktui.backends.libvirt.seen import SeenJobs
from blocktui.core.errors import (
    BlocktuiError,
    Conflict,
    HostError,
    JobBusy,
    NoJob,
    NotFound,
    ReadOnly,
    Unsupported,
)
from blocktui.core.model import (
    BlockJob,
    Domain,
    DomainsChanged,
    DomainState,
    JobEvent,
    JobKind,
    JobState,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Lifecycle events that change whether a domain runs, and the one that says QEMU paused it on an I/O error.
_RUN_EVENTS = (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_RESUMED)
_PAUSED_ON_IO_ERROR = (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR)


class LibvirtBackend(LibvirtConnection):
    """Block jobs over libvirt-python, for any URI (system, session, ssh, embedded).

    Events arrive on libvirt's event thread (see ``libvirt_events``); the connection, keepalive and
    reconnection are ``LibvirtConnection``'s.
    """

    supports_pause = False
    supports_base = True

    def __init__(
        self, uri: str, *, readonly: bool = False, reconnect: bool = True, call_timeout: float | None = None
    ) -> None:
        super().__init__(uri, readonly=readonly, reconnect=reconnect, call_timeout=call_timeout)
        self._handles: dict[str, tuple[libvirt.virConnect, libvirt.virDomain]] = {}
        self._seen = SeenJobs()
        #: What tells why a job failed: libvirt's FAILED event says nothing (see ``clues``).
        self._clues = FailureClues()
        #: Set once the driver refuses block job queries (the test driver): no job can exist there.
        self._no_block_jobs = False

    def _forget_link(self) -> None:
        # Jobs may have ended while we were away, and those send no event: the core reconciles.
        self._seen.forget()
        self._forget_handles()

    # -- events -------------------------------------------------------------------------------------

    # fmt: off
    def _on_block_job(
        self, _conn: libvirt.virConnect, dom: libvirt.virDomain, disk: str, job_type: int, status: int,
        _o: object,
    ) -> None:
        # fmt: on
        state = EVENT_STATES.get(status)
        if state is None:
            return
        try:
            name = dom.name()
        except libvirt.libvirtError:
            log.debug("block job event for a domain that is gone")
            return
        kind = JOB_KINDS.get(job_type, JobKind.UNKNOWN)
        cur, end = self._seen.event((name, disk), kind, state)
        event = JobEvent(self.host, name, disk, kind, state, None, cur, end)
        if state is JobState.FAILED:
            # The guest's own I/O error (and QEMU pausing the domain on it) can follow the job's by
            # milliseconds: say why a moment later, well within the session's settling grace.
            timer = threading.Timer(FAILURE_SETTLE, self._report_failure, args=(event,))
            timer.daemon = True
            timer.start()
            return
        self._report_end(event)

    def _report_failure(self, event: JobEvent) -> None:
        why = self._clues.explain(event.domain, event.disk, local_files=self.sees_host_files)
        self._report_end(replace(event, error=why))

    def _report_end(self, event: JobEvent) -> None:
        self._safe_emit(event)
        if event.state.is_final:
            # A finished job changes the backing chain the dashboard shows.
            self._safe_emit(DomainsChanged(self.host, event.domain))

    def _on_lifecycle(
        self, _conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, _o: object
    ) -> None:
        try:
            name: str | None = dom.name()
        except libvirt.libvirtError:
            name = None
        if name is not None and event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self._clues.forget(name)
        elif name is not None and event in _RUN_EVENTS:
            self._clues.run_state(name, paused_on_error=(event, detail) == _PAUSED_ON_IO_ERROR)
        self._forget_handles(name)
        self._safe_emit(DomainsChanged(self.host, name))

    # fmt: off
    def _on_io_error(
        self, _conn: libvirt.virConnect, dom: libvirt.virDomain, src_path: str, dev_alias: str, action: int,
        reason: str, _o: object,
    ) -> None:
        # fmt: on
        try:
            name = dom.name()
        except libvirt.libvirtError:
            return
        paused = action == libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE
        self._clues.io_error(name, src_path or dev_alias, reason, paused=paused)

    # -- domains ------------------------------------------------------------------------------------

    def _call(self, action: str, function: Callable[[], T]) -> T:
        """Run one libvirt call, mapping its error into our tree."""
        try:
            return function()
        except libvirt.libvirtError as exc:
            error = map_error(exc, action)
            if isinstance(error, HostError) and not is_connection_error(exc):
                # The host answered, with a failure: the link is up, and a listener that takes
                # every host error for a lost link (the session does) must hear so.
                self._confirm_connected_soon()
            raise error from exc

    def _lookup(self, name: str) -> libvirt.virDomain:
        # Progress polls look up every running job's domain twice a second: keep the handles, and
        # forget them when libvirt says the domain changed (lifecycle events) or the link did.
        conn = self._connection()
        with self._lock:
            cached = self._handles.get(name)
        if cached is not None and cached[0] is conn:
            return cached[1]
        dom = self._call(f"domain {name!r} on {self.uri}", lambda: conn.lookupByName(name))
        with self._lock:
            self._handles[name] = (conn, dom)
        return dom

    def _forget_handles(self, name: str | None = None) -> None:
        with self._lock:
            if name is None:
                self._handles.clear()
            else:
                self._handles.pop(name, None)

    def _domain(self, dom: libvirt.virDomain) -> Domain:
        """One domain as libvirt describes it; XML that cannot be read becomes the domain's error.

        Raises:
            libvirt.libvirtError: the domain vanished, or the host failed the request.
        """
        name = dom.name()
        state, reason = dom.state()
        paused_on_error = state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_IOERROR
        self._clues.run_state(name, paused_on_error=paused_on_error)
        found = Domain(
            host=self.host,
            name=name,
            state=DOMAIN_STATES.get(state, DomainState.NOSTATE),
            uuid=dom.UUIDString(),
            persistent=bool(dom.isPersistent()),
        )
        try:
            # Live XML for a running domain carries the backing chain libvirt detected.
            return replace(found, disks=parse_disks(dom.XMLDesc(0)))
        except UnreadableXml as exc:
            return replace(found, error=str(exc))
        except UnicodeDecodeError as exc:
            return replace(found, error=f"libvirt's XML for it is not valid UTF-8 ({exc.reason})")

    @bounded
    def list_domains(self) -> list[Domain]:
        """Every domain in every state; one that cannot be read is listed with its ``error``.

        Domains that vanish while being read are skipped.
        """
        conn = self._connection()
        handles = self._call(f"listing domains on {self.uri}", lambda: conn.listAllDomains(0))
        domains: list[Domain] = []
        for dom in handles:
            try:
                domains.append(self._domain(dom))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue
                if is_connection_error(exc):
                    raise map_error(exc, f"reading domains on {self.uri}") from exc
                domains.append(unreadable(self.host, dom, exc))
        domains.sort(key=lambda d: d.name)
        return domains

    @bounded
    def get_domain(self, name: str) -> Domain:
        """One domain by name.

        Raises:
            NotFound: no such domain.
        """
        dom = self._lookup(name)
        return self._call(f"reading domain {name!r}", lambda: self._domain(dom))

    # -- jobs ---------------------------------------------------------------------------------------

    def _require_writable(self, action: str) -> None:
        if self.readonly:
            raise ReadOnly(f"{action}: the connection to {self.uri} is read-only (started with --readonly)")

    @bounded
    def start_stream(self, domain: str, disk: str, *, bandwidth: int = 0, base: str | None = None) -> None:
        """Start pulling the backing chain (down to ``base``) into ``disk``; returns once the job exists."""
        action = f"cannot stream {domain}/{disk}"
        self._require_writable(action)
        check_bandwidth(bandwidth, action)
        dom = self._lookup(domain)
        if not self._call(action, dom.isActive):
            raise Conflict(
                f"{action}: domain {domain!r} is not running; start it first (virsh start {domain}), "
                "block jobs run only in a live domain"
            )
        target = check_target(self._call(action, lambda: self._domain(dom)), disk, base, action)
        self._clues.source(domain, disk, target.source)
        if self._job_info(dom, domain, disk) is not None:
            raise JobBusy(f"{action}: {disk} already has a block job; wait for it or abort it first")
        # Recorded before the call: a short pull can end, and its event arrive, before the call returns.
        self._seen.starting((domain, disk), JobKind.PULL)
        try:
            if base is None:
                self._call(
                    action,
                    lambda: dom.blockPull(disk, bandwidth, libvirt.VIR_DOMAIN_BLOCK_PULL_BANDWIDTH_BYTES),
                )
            else:
                self._call(
                    action,
                    lambda: dom.blockRebase(
                        disk, base, bandwidth, libvirt.VIR_DOMAIN_BLOCK_REBASE_BANDWIDTH_BYTES
                    ),
                )
        except BlocktuiError:
            self._seen.forget((domain, disk))
            raise

    @bounded
    def set_speed(self, domain: str, disk: str, bandwidth: int) -> None:
        """Change a running job's limit (bytes/s, 0 = unlimited)."""
        action = f"cannot change the speed of {domain}/{disk}"
        self._require_writable(action)
        check_bandwidth(bandwidth, action)
        dom = self._lookup(domain)
        if self._job_info(dom, domain, disk) is None:
            raise NoJob(f"{action}: {disk} has no block job")
        self._call(
            action,
            lambda: dom.blockJobSetSpeed(disk, bandwidth, libvirt.VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES),
        )

    @bounded
    def abort(self, domain: str, disk: str) -> None:
        """Ask the job to stop and return at once; the CANCELLED event follows."""
        action = f"cannot abort the job on {domain}/{disk}"
        self._require_writable(action)
        dom = self._lookup(domain)
        if self._job_info(dom, domain, disk) is None:
            raise NoJob(f"{action}: {disk} has no block job")
        self._call(action, lambda: dom.blockJobAbort(disk, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_ASYNC))

    @bounded
    def job_info(self, domain: str, disk: str) -> BlockJob | None:
        """The disk's current job, or None.

        Raises:
            NotFound: no such domain or disk.
        """
        try:
            return self._job_info(self._lookup(domain), domain, disk)
        except NotFound:
            # A kept handle can outlive its domain (undefined and defined again before the event
            # arrives): look it up afresh once before believing it is gone.
            self._forget_handles(domain)
            return self._job_info(self._lookup(domain), domain, disk)

    def _job_info(self, dom: libvirt.virDomain, domain: str, disk: str) -> BlockJob | None:
        # Only virDomainGetBlockJobInfo: block info and block stats send query-named-block-nodes, which
        # crashes QEMU 7.2 when it lands while a stream finishes.
        raw: dict[str, int] = self._call(
            f"cannot read the job on {domain}/{disk}",
            lambda: dom.blockJobInfo(disk, libvirt.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES),
        )
        if not raw:
            # What we saw of a finished job stays until its event arrives, which reports it.
            return None
        kind = JOB_KINDS.get(int(raw.get("type", 0)), JobKind.UNKNOWN)
        cur = int(raw.get("cur", 0))
        end = int(raw.get("end", 0))
        ready = self._seen.polled((domain, disk), kind, cur, end)
        state = JobState.ACTIVE
        if kind in MIRROR_KINDS and (ready or (end > 0 and cur == end)):
            state = JobState.READY
        return BlockJob(
            host=self.host,
            domain=domain,
            disk=disk,
            kind=kind,
            state=state,
            cur=cur,
            end=end,
            bandwidth=int(raw.get("bandwidth", 0)),
        )

    @bounded
    def list_jobs(self) -> list[BlockJob]:
        """Every job on every disk of every running domain, whoever started it.

        On a driver without block jobs (``test:///default``) this is always empty, and after the first
        refusal it stops asking, so a poll loop does not fill libvirt's log with the same error.
        """
        conn = self._connection()
        if self._no_block_jobs:
            return []
        handles = self._call(
            f"listing domains on {self.uri}",
            lambda: conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE),
        )
        jobs: list[BlockJob] = []
        for dom in handles:
            try:
                name = dom.name()
                disks = parse_disks(dom.XMLDesc(0))
            except libvirt.libvirtError as exc:
                log.debug("domain vanished while listing jobs: %s", exc)
                continue
            except (UnreadableXml, UnicodeDecodeError) as exc:
                # Its disks are unknown, so are its jobs; ``list_domains`` shows it with the reason.
                log.debug("cannot read the disks of a domain: %s", exc)
                continue
            for disk in disks:
                if disk.source is None:
                    continue
                try:
                    job = self._job_info(dom, name, disk.target)
                except (NotFound, Conflict) as exc:
                    # The domain stopped or the disk went away between the listing and this query.
                    log.debug("skipping %s/%s: %s", name, disk.target, exc)
                    continue
                except Unsupported:
                    self._no_block_jobs = True
                    return []
                if job is not None:
                    self._clues.source(name, disk.target, disk.source)
                    jobs.append(job)
        return jobs

    def libvirt_connection(self) -> libvirt.virConnect:
        """The underlying connection, for the lab and for tests acting as another client.

        Raises:
            HostError: not connected.
        """
        return self._connection()
