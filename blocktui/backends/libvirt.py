"""The libvirt backend: block pull/rebase jobs on any libvirt URI, with events and reconnection."""

from __future__ import annotations

import logging
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

# libvirt_events must be imported before libvirt: it routes libvirt's log output away from stderr.
from blocktui.backends.libvirt_events import ensure_event_loop  # isort: skip

import libvirt

from blocktui.backends.base import Backend
from blocktui.core.errors import (
    BlocktuiError,
    Conflict,
    HostError,
    InvalidInput,
    JobBusy,
    NoJob,
    NotFound,
    NothingToStream,
    ReadOnly,
    Unsupported,
)
from blocktui.core.model import (
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
    JobKind,
    JobState,
)
from blocktui.core.units import MAX_BYTES

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Keepalive: a stalled daemon is noticed after interval * (count + 1) seconds instead of never.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
#: Reconnection backoff: first delay, growth factor, ceiling (seconds).
RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0

_DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: DomainState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: DomainState.BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED: DomainState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: DomainState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: DomainState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: DomainState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: DomainState.SUSPENDED,
}

_JOB_KINDS = {
    libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_PULL: JobKind.PULL,
    libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COPY: JobKind.COPY,
    libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_COMMIT: JobKind.COMMIT,
    libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_ACTIVE_COMMIT: JobKind.ACTIVE_COMMIT,
    libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_BACKUP: JobKind.BACKUP,
}

#: Jobs that mirror writes and wait in READY until pivoted or cancelled.
_MIRROR_KINDS = frozenset({JobKind.COPY, JobKind.ACTIVE_COMMIT})

_EVENT_STATES = {
    libvirt.VIR_DOMAIN_BLOCK_JOB_COMPLETED: JobState.COMPLETED,
    libvirt.VIR_DOMAIN_BLOCK_JOB_FAILED: JobState.FAILED,
    libvirt.VIR_DOMAIN_BLOCK_JOB_CANCELED: JobState.CANCELLED,
    libvirt.VIR_DOMAIN_BLOCK_JOB_READY: JobState.READY,
}

_CONNECTION_ERRORS = frozenset(
    {
        libvirt.VIR_ERR_SYSTEM_ERROR,
        libvirt.VIR_ERR_RPC,
        libvirt.VIR_ERR_NO_CONNECT,
        libvirt.VIR_ERR_INVALID_CONN,
        libvirt.VIR_ERR_AUTH_FAILED,
        libvirt.VIR_ERR_AUTH_CANCELLED,
        libvirt.VIR_ERR_AUTH_UNAVAILABLE,
        libvirt.VIR_ERR_OPERATION_TIMEOUT,
    }
)

_UNSUPPORTED_ERRORS = frozenset(
    {libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, libvirt.VIR_ERR_OPERATION_UNSUPPORTED}
)


#: Phrases libvirt uses (with varying codes) for a disk or base image that does not exist.
_NOT_FOUND_WORDS = ("could not find image", "not found in chain", "not found in domain")


def map_error(exc: libvirt.libvirtError, action: str) -> BlocktuiError:
    """Translate a libvirt error into our tree; ``action`` says what was being done, for the message.

    The caller raises the result ``from exc`` so the libvirt error stays visible as the cause.
    """
    code = exc.get_error_code()
    text = (exc.get_error_message() or str(exc)).strip().splitlines()
    message = text[0] if text else "libvirt gave no reason"
    lowered = message.lower()
    full = f"{action}: {message}"
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return NotFound(full)
    if code == libvirt.VIR_ERR_BLOCK_COPY_ACTIVE or "already in active block job" in lowered:
        return JobBusy(f"{full} (wait for it, or abort it first)")
    if "no active block job" in lowered:
        return NoJob(full)
    if code == libvirt.VIR_ERR_OPERATION_DENIED or "read only access" in lowered:
        return ReadOnly(f"{full} (the connection is read-only)")
    if code == libvirt.VIR_ERR_OPERATION_INVALID:
        if "not running" in lowered or "inactive" in lowered:
            return Conflict(f"{full} (start the domain first: virsh start NAME)")
        return Conflict(full)
    if any(
        words in lowered for words in ("could not find image", "not found in chain", "not found in domain")
    ):
        return NotFound(full)
    if code == libvirt.VIR_ERR_INVALID_ARG:
        return InvalidInput(full)
    if code in _UNSUPPORTED_ERRORS:
        return Unsupported(full)
    if code in _CONNECTION_ERRORS:
        return HostError(f"{full} (check that the host and libvirtd are reachable)")
    return HostError(full)


def _hypervisor_version(number: int) -> str:
    """libvirt packs versions as major * 1,000,000 + minor * 1,000 + release."""
    major, rest = divmod(number, 1_000_000)
    minor, release = divmod(rest, 1_000)
    return f"{major}.{minor}.{release}"


def _source_of(element: ET.Element | None) -> str | None:
    """The path or URL a ``<source>`` names, whatever the disk type."""
    if element is None:
        return None
    for attribute in ("file", "dev", "dir", "volume"):
        value = element.get(attribute)
        if value:
            if attribute == "volume":
                return f"{element.get('pool', '')}/{value}"
            return value
    name = element.get("name")
    if name:
        protocol = element.get("protocol", "")
        host = element.find("host")
        server = host.get("name", "") if host is not None else ""
        return f"{protocol}://{server}/{name}" if protocol else name
    return None


def _chain_of(disk: ET.Element) -> tuple[ChainLayer, ...]:
    """The ``<backingStore>`` nesting of a live disk, nearest first."""
    layers: list[ChainLayer] = []
    store = disk.find("backingStore")
    while store is not None:
        path = _source_of(store.find("source"))
        if path is None:  # ``<backingStore/>``: the chain ends here
            break
        fmt = store.find("format")
        layers.append(ChainLayer(path, fmt.get("type") if fmt is not None else None))
        store = store.find("backingStore")
    return tuple(layers)


def parse_disks(xml: str) -> tuple[Disk, ...]:
    """The disks of a domain XML document (live XML gives backing chains; inactive XML usually not)."""
    # The XML comes from libvirt itself, not from an untrusted party.
    root = ET.fromstring(xml)  # noqa: S314
    disks: list[Disk] = []
    for element in root.findall("./devices/disk"):
        target = element.find("target")
        if target is None or not target.get("dev"):
            continue
        driver = element.find("driver")
        disks.append(
            Disk(
                target=target.get("dev", ""),
                source=_source_of(element.find("source")),
                format=driver.get("type") if driver is not None else None,
                bus=target.get("bus"),
                device=element.get("device", "disk"),
                readonly=element.find("readonly") is not None,
                chain=_chain_of(element),
            )
        )
    return tuple(disks)


@dataclass
class _Seen:
    """What the backend last saw of a disk's job, kept to enrich events that carry no progress."""

    kind: JobKind
    cur: int
    end: int
    ready: bool = False


# libvirt's embedded driver serves one root per process lifetime: a second root is refused even after
# the first is closed, and a failed first open (root locked by another process) leaves the driver dead.
_embedded_lock = threading.Lock()
_embedded: dict[str, str] = {"root": "", "failed": ""}


# Every open of an embedded URI registers the QEMU driver anew, and libvirt refuses after a few
# dozen ("Too many drivers"): backends of this process share one connection to the embedded root,
# closed when its last user lets go. Being in-process, it has no link to lose (no keepalive, no
# close callback).
@dataclass
class _SharedConnection:
    """The embedded connection, its users, and the one set of event callbacks they all listen to.

    libvirt tracks one callback per event and connection, so the backends sharing the connection
    subscribe here and the callbacks fan each event out to them.
    """

    conn: libvirt.virConnect | None = None
    users: int = 0
    callback_ids: list[int] = field(default_factory=list)
    subscribers: list[LibvirtBackend] = field(default_factory=list)


_shared = _SharedConnection()


def _fan_block_job(  # noqa: PLR0917 - libvirt's callback signature
    conn: libvirt.virConnect, dom: libvirt.virDomain, disk: str, job_type: int, status: int, opaque: object
) -> None:
    for backend in list(_shared.subscribers):
        backend._on_block_job(conn, dom, disk, job_type, status, opaque)


def _fan_lifecycle(
    conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, opaque: object
) -> None:
    for backend in list(_shared.subscribers):
        backend._on_lifecycle(conn, dom, event, detail, opaque)


def _subscribe_shared(conn: libvirt.virConnect, backend: LibvirtBackend) -> None:
    with _embedded_lock:
        if not _shared.callback_ids:
            _shared.callback_ids = [
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, _fan_block_job, None
                ),
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, _fan_lifecycle, None
                ),
            ]
        _shared.subscribers.append(backend)


def _release_shared(conn: libvirt.virConnect, owner: LibvirtBackend | None) -> bool:
    """Let go of the shared embedded connection; True when ``conn`` is it and others still use it."""
    with _embedded_lock:
        shared = _shared.conn
        if shared is None or conn is not shared:
            return False
        if owner in _shared.subscribers:
            _shared.subscribers.remove(owner)
        _shared.users -= 1
        if _shared.users > 0:
            return True
        ids, _shared.callback_ids = _shared.callback_ids, []
        _shared.conn = None
    for callback_id in ids:
        try:
            shared.domainEventDeregisterAny(callback_id)
        except libvirt.libvirtError as exc:
            log.debug("cannot deregister event callback %d: %s", callback_id, exc)
    return False


def _embed_root(uri: str) -> str | None:
    """The ``root`` of a ``qemu:///embed?root=DIR`` URI, or None for any other URI."""
    parts = urlsplit(uri)
    if parts.netloc or not parts.path.startswith("/embed"):
        return None
    return dict(parse_qsl(parts.query)).get("root", "")


def embedded_root() -> str | None:
    """The embedded root this process has opened, if any (there can be only one)."""
    with _embedded_lock:
        return _embedded["root"] or None


class LibvirtBackend(Backend):
    """Block jobs over libvirt-python, for any URI (system, session, ssh, embedded).

    Events arrive on libvirt's event thread (see ``libvirt_events``). The connection uses keepalive
    where the driver supports it; when it drops, the backend reconnects in the background with
    exponential backoff and emits ``ConnectionEvent``s and ``DomainsChanged`` so the core can reconcile.
    """

    supports_pause = False
    supports_events = True
    supports_base = True

    def __init__(self, uri: str, *, readonly: bool = False, reconnect: bool = True) -> None:
        super().__init__(uri, readonly=readonly)
        self.host = uri
        self._reconnect_enabled = reconnect
        self._lock = threading.RLock()
        self._handles: dict[str, tuple[libvirt.virConnect, libvirt.virDomain]] = {}
        self._conn: libvirt.virConnect | None = None
        self._callback_ids: list[int] = []
        self._state = ConnectionState.DISCONNECTED
        self._message = ""
        self._hypervisor = ""
        self._extra: dict[str, str] = {}
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._closing = threading.Event()
        self._reconnect_thread: threading.Thread | None = None
        #: Set once the driver refuses block job queries (the test driver): no job can exist there.
        self._no_block_jobs = False

    # -- connection ---------------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the connection and subscribe to events.

        Raises:
            HostError: the host cannot be reached (or the embedded root is held by another process).
        """
        ensure_event_loop()
        with self._lock:
            if self._conn is not None:
                return
            self._state = ConnectionState.CONNECTING
        self._closing.clear()
        try:
            conn = self._open()
            try:
                self._adopt(conn)
            except libvirt.libvirtError as exc:
                _release(conn, [])
                raise map_error(exc, f"cannot subscribe to events on {self.uri}") from exc
        except BlocktuiError as exc:
            with self._lock:
                self._state = ConnectionState.DISCONNECTED
                self._message = str(exc)
            raise

    def _open(self) -> libvirt.virConnect:
        uri = _non_interactive(self.uri)
        root = _embed_root(uri)
        if root is None:
            return self._open_uri(uri)
        with _embedded_lock:
            if _embedded["failed"]:
                raise HostError(
                    f"cannot connect to {self.uri}: the embedded driver failed earlier in this process "
                    f"({_embedded['failed']}); libvirt cannot restart it, so start blocktui again"
                )
            held = _embedded["root"]
            if held == root and _shared.conn is not None:
                _shared.users += 1
                return _shared.conn
            if held and held != root:
                raise HostError(
                    f"cannot connect to {self.uri}: this process already opened the embedded root {held}, "
                    "and libvirt allows one embedded root per process"
                )
            try:
                with steady_cpu():
                    conn = self._open_uri(uri)
            except HostError as exc:
                if not held:
                    # A failed first open leaves libvirt's embedded driver dead until the process exits.
                    _embedded["failed"] = str(exc)
                raise
            _embedded["root"] = root
            _shared.conn, _shared.users = conn, 1
            return conn

    def _open_uri(self, uri: str) -> libvirt.virConnect:
        try:
            conn = libvirt.openReadOnly(uri) if self.readonly else libvirt.open(uri)
        except libvirt.libvirtError as exc:
            error = map_error(exc, f"cannot connect to {self.uri}")
            if "driver.pid" in str(exc):
                error = HostError(
                    f"cannot connect to {self.uri}: another process holds this embedded root "
                    "(only one process may open it at a time)"
                )
            elif "Failed to parse user" in str(exc):
                error = HostError(
                    f"cannot connect to {self.uri}: {exc}; the QEMU driver needs the user and groups "
                    "that Debian's libvirt-daemon-system creates (libvirt-qemu, kvm)"
                )
            raise error from exc
        if conn is None:  # older bindings returned None instead of raising
            raise HostError(f"cannot connect to {self.uri}")
        return conn

    def _adopt(self, conn: libvirt.virConnect) -> None:
        """Make ``conn`` the live connection: keepalive, close callback, event callbacks, header facts."""
        if _embed_root(self.uri) is None:  # the shared embedded connection has no link to watch
            try:
                conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
            except libvirt.libvirtError as exc:
                # Local drivers have no keepalive: there is no link to stall.
                log.debug("no keepalive on %s: %s", self.uri, exc)
            try:
                conn.registerCloseCallback(self._on_close, None)
            except libvirt.libvirtError as exc:
                log.debug("no close callback on %s: %s", self.uri, exc)
        ids: list[int] = []
        if conn is _shared.conn:
            _subscribe_shared(conn, self)
        else:
            ids = [
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, self._on_block_job, None
                ),
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
                ),
            ]
        hypervisor, extra = self._describe(conn)
        with self._lock:
            self._conn = conn
            self._callback_ids = ids
            self._hypervisor = hypervisor
            self._extra = extra
            self._state = ConnectionState.CONNECTED
            self._message = ""

    def _describe(self, conn: libvirt.virConnect) -> tuple[str, dict[str, str]]:
        extra: dict[str, str] = {}
        try:
            hypervisor = f"{conn.getType()} {_hypervisor_version(conn.getVersion())}"
            extra["libvirt"] = _hypervisor_version(conn.getLibVersion())
            extra["hostname"] = conn.getHostname()
        except libvirt.libvirtError as exc:
            log.debug("cannot describe %s: %s", self.uri, exc)
            hypervisor = ""
        return hypervisor, extra

    def close(self) -> None:
        """Close the connection; running jobs keep running on the host."""
        self._closing.set()
        with self._lock:
            conn, self._conn = self._conn, None
            ids, self._callback_ids = self._callback_ids, []
            self._state = ConnectionState.DISCONNECTED
        if conn is not None:
            _release(conn, ids, self)

    def host_info(self) -> HostInfo:
        """The connection's state and hypervisor; never calls the host, so it cannot block."""
        with self._lock:
            return HostInfo(
                uri=self.uri,
                state=self._state,
                readonly=self.readonly,
                hypervisor=self._hypervisor,
                message=self._message,
                extra=dict(self._extra),
            )

    def _connection(self) -> libvirt.virConnect:
        with self._lock:
            conn = self._conn
            state = self._state
        if conn is None:
            if state is ConnectionState.RECONNECTING:
                raise HostError(f"{self.uri}: connection lost, reconnecting")
            raise HostError(f"{self.uri}: not connected")
        return conn

    def _on_close(self, _conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        if self._closing.is_set() or reason == libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT:
            return
        why = {
            libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "the host closed the connection",
            libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "the host stopped answering keepalives",
        }.get(reason, "the connection failed")
        with self._lock:
            old, self._conn = self._conn, None
            ids, self._callback_ids = self._callback_ids, []
            state = ConnectionState.RECONNECTING if self._reconnect_enabled else ConnectionState.DISCONNECTED
            self._state = state
            self._message = why
            start = self._reconnect_enabled and (
                self._reconnect_thread is None or not self._reconnect_thread.is_alive()
            )
            if start:
                self._reconnect_thread = threading.Thread(
                    target=self._reconnect_loop, args=(old, ids), name="libvirt-reconnect", daemon=True
                )
        self._safe_emit(ConnectionEvent(self.host, state, why))
        if start and self._reconnect_thread is not None:
            self._reconnect_thread.start()

    def _reconnect_loop(self, old: libvirt.virConnect | None, ids: list[int]) -> None:
        # Releasing the dead connection happens here, never in the close callback, which runs on the
        # event thread while libvirt holds the connection's lock.
        if old is not None:
            _release(old, ids)
        delay = RECONNECT_FIRST_DELAY
        while not self._closing.wait(delay):
            try:
                conn = self._open()
            except BlocktuiError as exc:
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                with self._lock:
                    self._message = f"{exc}; retrying in {delay:.0f} s"
                continue
            if self._closing.is_set():  # closed while the open was in flight
                _release(conn, [])
                return
            try:
                self._adopt(conn)
            except libvirt.libvirtError as exc:
                log.debug("reconnected to %s but could not subscribe: %s", self.uri, exc)
                _release(conn, [])
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            # Jobs may have ended while we were away, and those send no event: the core reconciles.
            with self._lock:
                self._seen.clear()
            self._safe_emit(ConnectionEvent(self.host, ConnectionState.CONNECTED, "reconnected"))
            self._safe_emit(DomainsChanged(self.host))
            return

    # -- events -------------------------------------------------------------------------------------

    def _safe_emit(self, event: JobEvent | ConnectionEvent | DomainsChanged) -> None:
        try:
            self.emit(event)
        except Exception:
            # A listener bug must not kill libvirt's event thread, which serves every connection.
            log.exception("event listener failed on %r", event)

    def _on_block_job(
        self,
        _conn: libvirt.virConnect,
        dom: libvirt.virDomain,
        disk: str,
        job_type: int,
        status: int,
        _o: object,
    ) -> None:
        state = _EVENT_STATES.get(status)
        if state is None:
            return
        try:
            name = dom.name()
        except libvirt.libvirtError:
            log.debug("block job event for a domain that is gone")
            return
        kind = _JOB_KINDS.get(job_type, JobKind.UNKNOWN)
        key = (name, disk)
        with self._lock:
            seen = self._seen.get(key)
            if state is JobState.READY:
                if seen is None:
                    seen = self._seen[key] = _Seen(kind, 0, 0)
                seen.ready = True
            elif seen is not None:
                del self._seen[key]
        cur: int | None = None
        end: int | None = None
        if seen is not None and seen.end > 0:
            end = seen.end
            cur = seen.end if state is JobState.COMPLETED else seen.cur
        self._safe_emit(JobEvent(self.host, name, disk, kind, state, None, cur, end))
        if state.is_final:
            # A finished job changes the backing chain the dashboard shows.
            self._safe_emit(DomainsChanged(self.host, name))

    def _on_lifecycle(
        self, _conn: libvirt.virConnect, dom: libvirt.virDomain, _event: int, _detail: int, _o: object
    ) -> None:
        try:
            name: str | None = dom.name()
        except libvirt.libvirtError:
            name = None
        self._forget_handles(name)
        self._safe_emit(DomainsChanged(self.host, name))

    # -- domains ------------------------------------------------------------------------------------

    def _call(self, action: str, function: Callable[[], T]) -> T:
        """Run one libvirt call, mapping its error into our tree."""
        try:
            return function()
        except libvirt.libvirtError as exc:
            raise map_error(exc, action) from exc

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
        name = dom.name()
        state, _reason = dom.state()
        # Live XML for a running domain carries the backing chain libvirt detected.
        disks = parse_disks(dom.XMLDesc(0))
        return Domain(
            host=self.host,
            name=name,
            state=_DOMAIN_STATES.get(state, DomainState.NOSTATE),
            disks=disks,
            uuid=dom.UUIDString(),
            persistent=bool(dom.isPersistent()),
        )

    def list_domains(self) -> list[Domain]:
        """Every domain in every state; domains that vanish while being read are skipped."""
        conn = self._connection()
        handles = self._call(f"listing domains on {self.uri}", lambda: conn.listAllDomains(0))
        domains: list[Domain] = []
        for dom in handles:
            try:
                domains.append(self._domain(dom))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise map_error(exc, f"reading domains on {self.uri}") from exc
        domains.sort(key=lambda d: d.name)
        return domains

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

    def start_stream(self, domain: str, disk: str, *, bandwidth: int = 0, base: str | None = None) -> None:
        """Start pulling the backing chain (down to ``base``) into ``disk``; returns once the job exists."""
        action = f"cannot stream {domain}/{disk}"
        self._require_writable(action)
        _check_bandwidth(bandwidth, action)
        dom = self._lookup(domain)
        if not self._call(action, dom.isActive):
            raise Conflict(
                f"{action}: domain {domain!r} is not running; start it first (virsh start {domain}), "
                "block jobs run only in a live domain"
            )
        info = self._call(action, lambda: self._domain(dom))
        target = info.disk(disk)
        if target is None:
            names = ", ".join(d.target for d in info.disks) or "none"
            raise NotFound(f"{action}: domain {domain!r} has no disk {disk!r} (its disks: {names})")
        if not target.has_backing:
            raise NothingToStream(
                f"{action}: {disk} has no backing file, so there is nothing to pull into it"
            )
        if base is not None and base not in {layer.path for layer in target.chain}:
            chain = ", ".join(layer.path for layer in target.chain)
            raise NotFound(f"{action}: {base!r} is not in the backing chain of {disk} ({chain})")
        if base is not None and base == target.chain[0].path:
            raise NothingToStream(
                f"{action}: {base} is already {disk}'s backing file, so there is nothing above it to pull"
            )
        if self._job_info(dom, domain, disk) is not None:
            raise JobBusy(f"{action}: {disk} already has a block job; wait for it or abort it first")
        # Recorded before the call: a short pull can end, and its event arrive, before the call returns.
        with self._lock:
            self._seen[(domain, disk)] = _Seen(JobKind.PULL, 0, 0)
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
            with self._lock:
                self._seen.pop((domain, disk), None)
            raise

    def set_speed(self, domain: str, disk: str, bandwidth: int) -> None:
        """Change a running job's limit (bytes/s, 0 = unlimited)."""
        action = f"cannot change the speed of {domain}/{disk}"
        self._require_writable(action)
        _check_bandwidth(bandwidth, action)
        dom = self._lookup(domain)
        if self._job_info(dom, domain, disk) is None:
            raise NoJob(f"{action}: {disk} has no block job")
        self._call(
            action,
            lambda: dom.blockJobSetSpeed(disk, bandwidth, libvirt.VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES),
        )

    def abort(self, domain: str, disk: str) -> None:
        """Ask the job to stop and return at once; the CANCELLED event follows."""
        action = f"cannot abort the job on {domain}/{disk}"
        self._require_writable(action)
        dom = self._lookup(domain)
        if self._job_info(dom, domain, disk) is None:
            raise NoJob(f"{action}: {disk} has no block job")
        self._call(action, lambda: dom.blockJobAbort(disk, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_ASYNC))

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
        kind = _JOB_KINDS.get(int(raw.get("type", 0)), JobKind.UNKNOWN)
        cur = int(raw.get("cur", 0))
        end = int(raw.get("end", 0))
        with self._lock:
            seen = self._seen.get((domain, disk))
            ready = seen is not None and seen.ready and seen.kind is kind
            self._seen[(domain, disk)] = _Seen(kind, cur, end, ready)
        state = JobState.ACTIVE
        if kind in _MIRROR_KINDS and (ready or (end > 0 and cur == end)):
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
                    jobs.append(job)
        return jobs

    def libvirt_connection(self) -> libvirt.virConnect:
        """The underlying connection, for the lab and for tests acting as another client.

        Raises:
            HostError: not connected.
        """
        return self._connection()


def _check_bandwidth(bandwidth: int, action: str) -> None:
    if not 0 <= bandwidth <= MAX_BYTES:
        raise InvalidInput(f"{action}: bandwidth {bandwidth} is out of range (0 to {MAX_BYTES} bytes/s)")


def _release(conn: libvirt.virConnect, callback_ids: list[int], owner: LibvirtBackend | None = None) -> None:
    """Drop callbacks and close a connection that may already be dead; failures only get logged."""
    for callback_id in callback_ids:
        try:
            conn.domainEventDeregisterAny(callback_id)
        except libvirt.libvirtError as exc:
            log.debug("cannot deregister event callback %d: %s", callback_id, exc)
    if _release_shared(conn, owner):
        return  # other backends of this process still use the embedded connection
    try:
        conn.unregisterCloseCallback()
    except libvirt.libvirtError as exc:
        log.debug("cannot unregister close callback: %s", exc)
    try:
        conn.close()
    except libvirt.libvirtError as exc:
        log.debug("closing a dead connection failed: %s", exc)


@contextmanager
def steady_cpu() -> Iterator[None]:
    """Run the block with the calling thread on one CPU, then restore its affinity.

    The embedded QEMU driver checks its capabilities cache against the CPUID of whichever CPU the
    thread happens to run on. In VMs whose vCPUs report different CPUID data (seen here), a different
    CPU means "host cpuid changed" and a 4 s re-probe of QEMU on every open; one fixed CPU keeps the
    cache valid. QEMU itself is not pinned: libvirt gives it every host CPU.
    """
    try:
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(allowed)})
    except (AttributeError, OSError, ValueError):
        # No affinity control here (another OS, a restricted container): run unpinned.
        yield
        return
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def _non_interactive(uri: str) -> str:
    """Add ``no_tty=1`` to ssh transports so ssh never prompts on the terminal the dashboard owns."""
    parts = urlsplit(uri)
    if "+ssh" not in parts.scheme and "+libssh" not in parts.scheme:
        return uri
    if any(key == "no_tty" for key, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return uri
    # Appended to the query as written, so the user's own parameters keep their exact spelling.
    query = f"{parts.query}&no_tty=1" if parts.query else "no_tty=1"
    return urlunsplit(parts._replace(query=query))
