"""The libvirt connection: keepalive, close callback, reconnection, a host that stops answering."""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod

# libvirt_events must be imported before libvirt: it routes libvirt's log output away from stderr.
from blocktui.backends.libvirt_events import ensure_event_loop  # isort: skip

import libvirt

from blocktui.backends.base import Backend
from blocktui.backends.bounded import Deadline, bounded
from blocktui.backends.libvirt.errors import map_error
from blocktui.backends.libvirt.parse import libvirt_version
from blocktui.backends.libvirt.shared import embed_root, names_local_files, open_connection, release
from blocktui.core.errors import BlocktuiError, HostError
from blocktui.core.model import ConnectionEvent, ConnectionState, DomainsChanged, HostInfo

log = logging.getLogger(__name__)

#: Keepalive: a stalled daemon is noticed after interval * (count + 1) seconds instead of never.
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
#: Reconnection backoff: first delay, growth factor, ceiling (seconds).
RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0
#: Seconds after a stalled host answers again before saying so a second time (see ``_on_unstuck``).
REANNOUNCE_DELAY = 1.0


def _describe(uri: str, conn: libvirt.virConnect) -> tuple[str, dict[str, str]]:
    """What the header shows: hypervisor and version, libvirt's version, the host name."""
    extra: dict[str, str] = {}
    try:
        hypervisor = f"{conn.getType()} {libvirt_version(conn.getVersion())}"
        extra["libvirt"] = libvirt_version(conn.getLibVersion())
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

    @abstractmethod
    def _subscribe(self, conn: libvirt.virConnect) -> list[int]:
        """Register for ``conn``'s domain events (see ``shared.subscribe``); the ids to release it with."""

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
            conn = open_connection(self.uri, self.readonly)
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
        ids = self._subscribe(conn)
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
        self._emit_safely(ConnectionEvent(self.host, state, why))
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
                conn = open_connection(self.uri, self.readonly)
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
            self._emit_safely(ConnectionEvent(self.host, ConnectionState.CONNECTED, "reconnected"))
            self._emit_safely(DomainsChanged(self.host))
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
        self._emit_safely(ConnectionEvent(self.host, ConnectionState.RECONNECTING, "host not answering"))

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
        self._emit_safely(ConnectionEvent(self.host, ConnectionState.CONNECTED, "answering again"))
        self._emit_safely(DomainsChanged(self.host))
