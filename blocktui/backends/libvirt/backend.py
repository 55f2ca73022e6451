"""The libvirt backend: block pull/rebase jobs on any libvirt URI, with events and reconnection."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

# libvirt_events must be imported before libvirt: it routes libvirt's log output away from stderr.
import blocktui.backends.libvirt_events  # noqa: F401  # isort: skip

import libvirt

from blocktui.backends.bounded import bounded
from blocktui.backends.libvirt.clues import FAILURE_SETTLE
from blocktui.backends.libvirt.domains import LibvirtDomains
from blocktui.backends.libvirt.errors import EVENT_STATES, JOB_KINDS
from blocktui.backends.libvirt.parse import UnreadableXml, job_info_of, parse_disks
from blocktui.backends.libvirt.seen import SeenJobs
from blocktui.backends.libvirt.shared import subscribe
from blocktui.core.errors import BlocktuiError, Conflict, JobBusy, NoJob, NotFound, Unsupported
from blocktui.core.model import BlockJob, Disk, DomainsChanged, JobEvent, JobKind, JobState
from blocktui.core.streams import check_bandwidth, stream_target

log = logging.getLogger(__name__)

#: Lifecycle events that change whether a domain runs, and the one that says QEMU paused it on an I/O error.
_RUN_EVENTS = (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_RESUMED)
_PAUSED_ON_IO_ERROR = (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR)


class LibvirtBackend(LibvirtDomains):
    """Block jobs over libvirt-python, for any URI (system, session, ssh, embedded).

    Events arrive on libvirt's event thread (see ``libvirt_events``); the connection, keepalive and
    reconnection are ``LibvirtConnection``'s, reading domains is ``LibvirtDomains``'.
    """

    supports_pause = False
    supports_base = True

    def __init__(
        self, uri: str, *, readonly: bool = False, reconnect: bool = True, call_timeout: float | None = None
    ) -> None:
        super().__init__(uri, readonly=readonly, reconnect=reconnect, call_timeout=call_timeout)
        self._seen = SeenJobs()
        #: Set once the driver refuses block job queries (the test driver): no job can exist there.
        self._no_block_jobs = False

    def _forget_link(self) -> None:
        # Jobs may have ended while we were away, and those send no event: the core reconciles.
        self._seen.forget()
        super()._forget_link()

    # -- events -------------------------------------------------------------------------------------

    def _subscribe(self, conn: libvirt.virConnect) -> list[int]:
        return subscribe(conn, self)

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
        self._emit_safely(event)
        if event.state.is_final:
            # A finished job changes the backing chain the dashboard shows.
            self._emit_safely(DomainsChanged(self.host, event.domain))

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
        self._emit_safely(DomainsChanged(self.host, name))

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

    # -- jobs ---------------------------------------------------------------------------------------

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
        target = stream_target(self._call(action, lambda: self._domain(dom)), disk, base, action)
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
        info = job_info_of(raw)
        if info is None:
            # What we saw of a finished job stays until its event arrives, which reports it.
            return None
        ready = self._seen.polled((domain, disk), info.kind, info.cur, info.end)
        return BlockJob(
            host=self.host,
            domain=domain,
            disk=disk,
            kind=info.kind,
            state=info.state(ready),
            cur=info.cur,
            end=info.end,
            bandwidth=info.bandwidth,
        )

    @bounded
    def list_jobs(
        self, *, known: Mapping[str, Sequence[Disk]] | None = None, skip: Collection[tuple[str, str]] = ()
    ) -> list[BlockJob]:
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
                # A domain the caller knows needs no description read: its XML is the costly part.
                disks = known[name] if known and name in known else parse_disks(dom.XMLDesc(0))
            except libvirt.libvirtError as exc:
                log.debug("domain vanished while listing jobs: %s", exc)
                continue
            except (UnreadableXml, UnicodeDecodeError) as exc:
                # Its disks are unknown, so are its jobs; ``list_domains`` shows it with the reason.
                log.debug("cannot read the disks of a domain: %s", exc)
                continue
            for disk in disks:
                if disk.source is None or (name, disk.target) in skip:
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
