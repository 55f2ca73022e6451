"""The libvirt connection: opening (the embedded root shared in-process), keepalive, reconnection."""

from __future__ import annotations

import logging
import threading

# libvirt_events must be imported before libvirt: it routes libvirt's log output away from stderr.
from blocktui.backends.libvirt_events import ensure_event_loop  # isort: skip

import libvirt

from blocktui.backends.base import Backend
from blocktui.backends.bounded import Deadline, bounded
from blocktui.backends.libvirt.errors import map_error
from blocktui.backends.libvirt.shared import (
    beside_embedded,
    embed_root,
    names_local_files,
    non_interactive,
    open_embedded,
    release,
    shared,
    subscribe_shared,
)
from blocktui.core.errors import BlocktuiError, HostError
from blocktui.core.model import ConnectionEvent, ConnectionState, DomainsChanged, HostInfo, JobEvent

log = logging.getLogger(__name__)

#: Keepalive: a stalled daemon is noticed after interval * (count + 1) seconds instead of never.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
#: Reconnection backoff: first delay, growth factor, ceiling (seconds).
RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0
#: Seconds after a stalled host answers again before saying so a second time (see ``_on_unstuck``).
REANNOUNCE_DELAY = 1.0


def _hypervisor_version(number: int) -> str:
    """libvirt packs versions as major * 1,000,000 + minor * 1,000 + release."""
    major, rest = divmod(number, 1_000_000)
    minor, release = divmod(rest, 1_000)
    return f"{major}.{minor}.{release}"


def _describe(uri: str, conn: libvirt.virConnect) -> tuple[str, dict[str, str]]:
    """What the header shows: hypervisor and version, libvirt's version, the host name."""
    extra: dict[str, str] = {}
    try:
        hypervisor = f"{conn.getType()} {_hypervisor_version(conn.getVersion())}"
        extra["libvirt"] = _hypervisor_version(conn.getLibVersion())
        extra["hostname"] = conn.getHostname()
    except libvirt.libvirtError as exc:
        log.debug("cannot describe %s: %s", uri, exc)
        hypervisor = ""
    return hypervisor, extra


class LibvirtConnection(Backend):
    """The connection half of the libvirt backend: open, keepalive, close callback, reconnect.

    The connection uses keepalive where the driver supports it; when it drops, it reconnects in the
    background with exponential backoff and emits ``ConnectionEvent``s and ``DomainsChanged`` so the
    core can reconcile. With ``call_timeout``, every host call gives up after that many seconds with
    ``NotAnswering`` (the CLI uses it; libvirt itself would wait for a frozen daemon without bound).
    """

    supports_events = True

    def __init__(
        self, uri: str, *, readonly: bool = False, reconnect: bool = True, call_timeout: float | None = None
    ) -> None:
        super().__init__(uri, readonly=readonly)
        self.host = uri
        self.sees_host_files = names_local_files(uri)
        self._reconnect_enabled = reconnect
        self._lock = threading.RLock()
        self._conn: libvirt.virConnect | None = None
        self._callback_ids: list[int] = []
        self._state = ConnectionState.DISCONNECTED
        self._message = ""
        self._hypervisor = ""
        self._extra: dict[str, str] = {}
        self._closing = threading.Event()
        self._reconnect_thread: threading.Thread | None = None
        #: Set while the host is shown reconnecting because a call timed out, not because the link closed.
        self._stalled = False
        self._confirming = False  # a "still connected" word is scheduled
        self._deadline = (
            None
            if call_timeout is None
            else Deadline(uri, call_timeout, on_stuck=self._on_stuck, on_unstuck=self._on_unstuck)
        )

    @property
    def deadline(self) -> Deadline | None:
        """The deadline every host call runs under, or None when calls may wait without bound."""
        return self._deadline

    # -- hooks for the backend ----------------------------------------------------------------------

    # fmt: off
    def _on_block_job(  # noqa: PLR0917 - libvirt's callback signature
        self, conn: libvirt.virConnect, dom: libvirt.virDomain, disk: str, job_type: int, status: int,
        opaque: object,
    ) -> None:
        # fmt: on
        """libvirt's BLOCK_JOB_2 callback (the backend overrides it)."""

    def _on_lifecycle(
        self, conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, opaque: object
    ) -> None:
        """libvirt's lifecycle callback (the backend overrides it)."""

    # fmt: off
    def _on_io_error(  # noqa: PLR0917 - libvirt's callback signature
        self, conn: libvirt.virConnect, dom: libvirt.virDomain, src_path: str, dev_alias: str, action: int,
        reason: str, opaque: object,
    ) -> None:
        # fmt: on
        """libvirt's IO_ERROR_REASON callback (the backend overrides it)."""

    def _forget_link(self) -> None:
        """Drop what was learnt over a connection that went away (the backend overrides it)."""

    # -- connection ---------------------------------------------------------------------------------

    @bounded
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
                release(conn, [])
                raise map_error(exc, f"cannot subscribe to events on {self.uri}") from exc
        except BlocktuiError as exc:
            with self._lock:
                self._state = ConnectionState.DISCONNECTED
                self._message = str(exc)
            raise
        if self._closing.is_set():
            # Closed while this connect was in flight (it outlived its deadline): let go of it.
            self.close()

    def _open(self) -> libvirt.virConnect:
        uri = non_interactive(self.uri)
        root = embed_root(uri)
        if root is None:
            return self._open_uri(beside_embedded(uri, self.readonly))
        return open_embedded(self.uri, root, lambda: self._open_uri(uri))

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
        if embed_root(self.uri) is None:  # the shared embedded connection has no link to watch
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
        if conn is shared.conn:
            subscribe_shared(conn, self)
        else:
            ids = [
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, self._on_block_job, None
                ),
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None
                ),
                conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON, self._on_io_error, None
                ),
            ]
        hypervisor, extra = _describe(self.uri, conn)
        with self._lock:
            self._conn = conn
            self._callback_ids = ids
            self._hypervisor = hypervisor
            self._extra = extra
            self._state = ConnectionState.CONNECTED
            self._message = ""

    def close(self) -> None:
        """Close the connection; running jobs keep running on the host."""
        self._closing.set()
        with self._lock:
            conn, self._conn = self._conn, None
            ids, self._callback_ids = self._callback_ids, []
            self._state = ConnectionState.DISCONNECTED
        if conn is None:
            return
        if self._deadline is None:
            release(conn, ids, self)
            return
        try:
            # Closing asks the daemon too: a frozen one would hold the process here.
            self._deadline.run(lambda: release(conn, ids, self))
        except HostError as exc:
            log.debug("left a connection to %s unclosed: %s", self.uri, exc)

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
            release(old, ids)
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
                release(conn, [])
                return
            try:
                self._adopt(conn)
            except libvirt.libvirtError as exc:
                log.debug("reconnected to %s but could not subscribe: %s", self.uri, exc)
                release(conn, [])
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            # Jobs may have ended while we were away, and those send no event: the core reconciles.
            self._forget_link()
            self._safe_emit(ConnectionEvent(self.host, ConnectionState.CONNECTED, "reconnected"))
            self._safe_emit(DomainsChanged(self.host))
            return

    # -- a host that stops answering ------------------------------------------------------------------

    def _on_stuck(self) -> None:
        # A call timed out on a link libvirt still thinks alive (keepalive notices only later):
        # show the host as reconnecting now, so nothing waits on it.
        with self._lock:
            if self._state is not ConnectionState.CONNECTED:
                return
            self._state = ConnectionState.RECONNECTING
            self._message = "host not answering"
            self._stalled = True
        self._safe_emit(ConnectionEvent(self.host, ConnectionState.RECONNECTING, "host not answering"))

    def _on_unstuck(self) -> None:
        with self._lock:
            if not self._stalled:
                return
            self._stalled = False
            if self._conn is None or self._state is not ConnectionState.RECONNECTING:
                return  # the link went away meanwhile; the reconnect loop reports its return
            self._state = ConnectionState.CONNECTED
            self._message = ""
        self._forget_link()
        self._announce_connected()
        # A caller that timed out just before may still be recording "not answering" from its
        # error; a second word a moment later leaves the last word with the truth.
        self._confirm_connected_soon()

    def _confirm_connected_soon(self) -> None:
        """Say again, a moment from now, that the link is up (once, however many errors ask)."""
        with self._lock:
            if self._confirming:
                return
            self._confirming = True

        def confirm() -> None:
            with self._lock:
                self._confirming = False
            self._announce_connected()

        timer = threading.Timer(REANNOUNCE_DELAY, confirm)
        timer.daemon = True
        timer.start()

    def _announce_connected(self) -> None:
        with self._lock:
            if self._state is not ConnectionState.CONNECTED or self._closing.is_set():
                return
        self._safe_emit(ConnectionEvent(self.host, ConnectionState.CONNECTED, "answering again"))
        self._safe_emit(DomainsChanged(self.host))

    def _safe_emit(self, event: JobEvent | ConnectionEvent | DomainsChanged) -> None:
        try:
            self.emit(event)
        except Exception:
            # A listener bug must not kill libvirt's event thread, which serves every connection.
            log.exception("event listener failed on %r", event)
