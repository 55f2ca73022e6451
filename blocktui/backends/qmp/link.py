"""The QMP backend's asyncio loop, its sessions with each QEMU, and discovery of their sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from abc import abstractmethod
from collections.abc import Coroutine, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, Message, QMPClient, QMPError, Runstate

from blocktui.backends.base import Backend
from blocktui.backends.qmp.graph import as_dict, as_list
from blocktui.backends.qmp.state import (
    CONNECT_TIMEOUT,
    LOST_NOTE,
    SOCKET_PATTERNS,
    Forwarder,
    Qemu,
    QemuJob,
)
from blocktui.core.errors import BlocktuiError, HostError
from blocktui.core.model import (
    ConnectionEvent,
    ConnectionState,
    DomainsChanged,
    DomainState,
    HostInfo,
    JobEvent,
    JobState,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class QmpLink(Backend):
    """The QMP backend's plumbing: one asyncio loop in a daemon thread, one session per QEMU.

    Each QEMU is one domain, named by ``query-name`` or else by its socket's file name. The
    synchronous methods submit work to the loop with a timeout. Subclasses read state and handle
    events (``_refresh_status``, ``_refresh_jobs``, ``_on_event``).
    """

    def __init__(
        self,
        sockets: Iterable[Path | str] = (),
        directory: Path | str | None = None,
        *,
        readonly: bool = False,
        timeout: float = 10.0,
        rescan_interval: float = 2.0,
    ) -> None:
        self._sockets = tuple(Path(s).absolute() for s in sockets)
        self._directory = Path(directory).absolute() if directory is not None else None
        if not self._sockets and self._directory is None:
            raise ValueError("QmpBackend needs socket paths or a directory")
        places = [str(p) for p in ((self._directory,) if self._directory else ()) + self._sockets]
        super().__init__("qmp:" + ",".join(places), readonly=readonly)
        self.timeout = timeout
        self.rescan_interval = rescan_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._qemus: dict[Path, Qemu] = {}
        self._rescanner: asyncio.Task[None] | None = None
        self._scan_lock = asyncio.Lock()
        self._host_state = ConnectionState.CONNECTING
        self._host_message = ""

    # -- loop plumbing ----------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._loop
        if loop is None or not loop.is_running():
            coro.close()
            raise HostError(f"{self.uri}: not connected")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        limit = timeout if timeout is not None else self.timeout * 2 + 1
        try:
            return future.result(limit)
        except FutureTimeout as exc:
            future.cancel()
            raise HostError(f"{self.uri}: QEMU did not answer within {limit:.0f} s") from exc

    async def _execute(self, qemu: Qemu, command: str, arguments: dict[str, Any] | None = None) -> object:
        """Run one QMP command on ``qemu``, translating transport failures to HostError."""
        client = qemu.client
        if client is None or not qemu.connected:
            raise HostError(f"{qemu.name}: QEMU is not reachable at {qemu.socket} ({qemu.message or 'lost'})")
        try:
            return await asyncio.wait_for(client.execute(command, arguments), self.timeout)
        except ExecuteError:
            raise
        except TimeoutError as exc:
            raise HostError(
                f"{qemu.name}: QEMU did not answer {command} within {self.timeout:.0f} s"
            ) from exc
        except (QMPError, OSError, EOFError) as exc:
            raise HostError(f"{qemu.name}: {command} failed: {exc or type(exc).__name__}") from exc

    def _emit_safely(self, event: JobEvent | ConnectionEvent | DomainsChanged) -> None:
        try:
            self.emit(event)
        except Exception:  # a broken listener must not kill the QMP reader
            log.exception("event listener failed on %r", event)

    # -- connection -------------------------------------------------------------------------

    def connect(self) -> None:
        if self._loop is not None:
            return
        if self._directory is not None and not self._directory.is_dir():
            raise HostError(f"{self.uri}: {self._directory} is not a directory of QMP sockets")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"qmp {self.uri}", daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop
        try:
            self._call(self._scan(), timeout=self.timeout * 2 + 5)
        except BlocktuiError:
            self.close()
            raise
        if self._sockets and not self._directory and not any(q.connected for q in self._qemus.values()):
            message = "; ".join(q.message for q in self._qemus.values())
            self.close()
            raise HostError(f"{self.uri}: no QEMU reachable ({message})")
        self._call(self._start_rescanner())
        self._host_state = ConnectionState.CONNECTED
        self._emit_safely(ConnectionEvent(self.uri, ConnectionState.CONNECTED))

    @property
    def connected(self) -> bool:
        """Whether ``connect`` succeeded and ``close`` has not run since."""
        return self._loop is not None

    async def _start_rescanner(self) -> None:
        self._rescanner = asyncio.get_running_loop().create_task(self._rescan_forever())

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if loop.is_running():
            with contextlib.suppress(BlocktuiError):
                self._call(self._shutdown(), timeout=self.timeout + 2)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()
        self._loop = None
        self._thread = None
        self._host_state = ConnectionState.DISCONNECTED

    async def _shutdown(self) -> None:
        if self._rescanner is not None:
            self._rescanner.cancel()
        for qemu in list(self._qemus.values()):
            await self._drop_connection(qemu)
        self._qemus.clear()

    async def _rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.rescan_interval)
            try:
                await self._scan()
            except Exception:  # keep rescanning: one bad socket must not end discovery
                log.exception("%s: rescan failed", self.uri)

    def _socket_paths(self) -> list[Path]:
        paths = list(self._sockets)
        if self._directory is not None:
            for pattern in SOCKET_PATTERNS:
                paths.extend(sorted(self._directory.glob(pattern)))
        return list(dict.fromkeys(paths))

    async def _scan(self) -> None:
        """Pick up new sockets, forget vanished ones (directory mode), reconnect lost QEMUs."""
        # The periodic rescan and a lookup of a new name may overlap: connect each QEMU once.
        async with self._scan_lock:
            await self._scan_once()

    async def _scan_once(self) -> None:
        paths = self._socket_paths()
        changed = False
        for path in list(self._qemus):
            if path not in paths and path not in self._sockets:
                qemu = self._qemus.pop(path)
                await self._lose(qemu, "its socket was removed")
                changed = True
        attempts = []
        for path in paths:
            known = self._qemus.get(path)
            if known is None:
                known = self._qemus[path] = Qemu(socket=path, name=path.stem)
                changed = True
            if not known.connected:
                attempts.append(self._connect_qemu(known))
        results = await asyncio.gather(*attempts)
        if changed or any(results):
            self._name_domains()
            self._emit_safely(DomainsChanged(self.uri))
        self._update_host_state()

    def _update_host_state(self) -> None:
        total = len(self._qemus)
        up = sum(q.connected for q in self._qemus.values())
        if total and not up:
            state = ConnectionState.DISCONNECTED
            message = "no QEMU reachable: " + "; ".join(
                f"{q.socket.name}: {q.message}" for q in self._qemus.values()
            )
        else:
            state = ConnectionState.CONNECTED
            message = f"{up} of {total} QEMU processes reachable" if up != total else ""
        if self._host_state in (ConnectionState.CONNECTED, ConnectionState.DISCONNECTED) and (
            state is not self._host_state or message != self._host_message
        ):
            self._host_state, self._host_message = state, message
            self._emit_safely(ConnectionEvent(self.uri, state, message))
        else:
            self._host_message = message

    async def _connect_qemu(self, qemu: Qemu) -> bool:
        """Open a session to one QEMU; True when it is now connected."""
        client = QMPClient(qemu.socket.name)
        # The default listener queues every event forever; reject at the door, we use our own.
        client.events.event_filter = lambda _event: False
        client.register_listener(Forwarder(lambda event: self._on_event(qemu, event)))
        try:
            await asyncio.wait_for(client.connect(str(qemu.socket)), CONNECT_TIMEOUT)
        except TimeoutError:
            qemu.message = "no greeting (another client may hold the socket: QEMU serves one at a time)"
            await self._abandon(client)
            return False
        except (QMPError, OSError) as exc:
            cause = getattr(exc, "exc", exc)
            qemu.message = f"cannot connect: {cause}"
            await self._abandon(client)
            return False
        qemu.client = client
        try:
            greeting = client.greeting
            if greeting is not None:
                # 0.0.6 models the greeting as an object whose ``version`` is a plain mapping.
                release = as_dict(greeting.QMP.version.get("qemu"))
                qemu.version = f"QEMU {release.get('major')}.{release.get('minor')}.{release.get('micro')}"
            name = as_dict(await self._execute(qemu, "query-name")).get("name")
            qemu.qmp_name = str(name) if name else None
            commands = await self._execute(qemu, "query-commands")
            names = {str(c.get("name")) for c in as_list(commands)}
            qemu.job_commands = {"job-pause", "job-resume", "job-dismiss"} <= names
            await self._refresh_status(qemu)
            await self._refresh_jobs(qemu)
        except (HostError, ExecuteError) as exc:
            qemu.message = str(exc)
            await self._drop_connection(qemu)
            return False
        qemu.message = ""
        qemu.watcher = asyncio.get_running_loop().create_task(self._watch(qemu, client))
        return True

    async def _abandon(self, client: QMPClient) -> None:
        with contextlib.suppress(QMPError, OSError, EOFError):
            await client.disconnect()

    async def _drop_connection(self, qemu: Qemu) -> None:
        client, qemu.client = qemu.client, None
        if qemu.watcher is not None and qemu.watcher is not asyncio.current_task():
            qemu.watcher.cancel()
        qemu.watcher = None
        if client is not None:
            await self._abandon(client)

    async def _watch(self, qemu: Qemu, client: QMPClient) -> None:
        """Notice the session ending (QEMU killed, quit, socket closed) and report it."""
        while client.runstate is Runstate.RUNNING:
            await client.runstate_changed()
        if qemu.client is client:
            await self._lose(qemu, "the QMP connection closed")
            self._update_host_state()

    async def _lose(self, qemu: Qemu, why: str) -> None:
        """Mark a QEMU lost; its unfinished jobs end as UNKNOWN, never as completed."""
        await self._drop_connection(qemu)
        qemu.state = DomainState.LOST
        qemu.message = why
        for job in list(qemu.jobs.values()):
            if not job.state.is_final:
                job.state = JobState.UNKNOWN
                self._emit_safely(
                    JobEvent(
                        self.uri,
                        qemu.name,
                        job.disk,
                        job.kind,
                        JobState.UNKNOWN,
                        error=f"{LOST_NOTE} ({why})",
                        cur=job.cur,
                        end=job.end,
                    )
                )
        qemu.jobs.clear()
        self._emit_safely(DomainsChanged(self.uri, qemu.name))

    def _name_domains(self) -> None:
        """Domain names: ``query-name`` when set and unique, else the socket's stem."""
        wanted = {path: (q.qmp_name or path.stem) for path, q in self._qemus.items()}
        counts: dict[str, int] = {}
        for name in wanted.values():
            counts[name] = counts.get(name, 0) + 1
        for path, qemu in self._qemus.items():
            name = wanted[path]
            qemu.name = name if counts[name] == 1 else f"{name}@{path.stem}"

    # -- what subclasses provide ---------------------------------------------------------------

    @abstractmethod
    def _on_event(self, qemu: Qemu, event: Message) -> None:
        """Handle one QMP event of ``qemu`` (on the loop thread; must not block)."""

    @abstractmethod
    async def _refresh_status(self, qemu: Qemu) -> None:
        """Read ``qemu``'s run state."""

    @abstractmethod
    async def _refresh_jobs(self, qemu: Qemu) -> list[QemuJob]:
        """Read ``qemu``'s block jobs."""

    def host_info(self) -> HostInfo:
        versions = sorted({q.version for q in self._qemus.values() if q.version})
        return HostInfo(
            uri=self.uri,
            state=self._host_state,
            readonly=self.readonly,
            hypervisor=", ".join(versions) or "QEMU (QMP)",
            message=self._host_message,
            extra={"qemu processes": str(len(self._qemus))},
        )
