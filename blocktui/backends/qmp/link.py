"""The QMP backend's asyncio loop and its sessions with each QEMU: held open, or short and let go.

A QEMU unix-socket monitor serves one client at a time; a client that stays connected makes every
other one wait (on Proxmox VE: its status daemon, ``qm``, backups). So unless the socket is ours
alone by design (``hold``: the lab's own sockets, ``--qmp-hold``), each batch of commands opens a
session, runs, and closes it: another client waits at most for that batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from abc import abstractmethod
from collections.abc import AsyncIterator, Coroutine, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, Message, QMPClient, QMPError, Runstate

from blocktui.backends.base import Backend
from blocktui.backends.qmp.greeting import connect_greeted
from blocktui.backends.qmp.state import CONNECT_TIMEOUT, LOST_NOTE, Forwarder, Qemu, QemuJob
from blocktui.core.errors import HostError
from blocktui.core.model import DomainsChanged, DomainState, JobEvent, JobState

log = logging.getLogger(__name__)

T = TypeVar("T")


class QemuGone(HostError):
    """The QEMU's socket refuses connections or is missing: the process has gone."""


class QmpLink(Backend):
    """The QMP backend's plumbing: one asyncio loop in a daemon thread, sessions with each QEMU.

    The synchronous methods submit work to the loop with a timeout. Subclasses discover the QEMUs
    and read their state (``_update_host_state``, ``_refresh_status``, ``_refresh_jobs``,
    ``_on_event``).

    Attributes:
        hold: keep one session per QEMU open (events arrive as they happen). Without it, sessions
            are short and outcomes are read from ``query-block-jobs`` (our jobs stay listed until
            we dismiss them) and from the chain.
    """

    def __init__(
        self,
        sockets: Iterable[Path | str] = (),
        directory: Path | str | None = None,
        *,
        readonly: bool = False,
        timeout: float = 10.0,
        rescan_interval: float = 2.0,
        hold: bool = False,
    ) -> None:
        self._sockets = tuple(Path(s).absolute() for s in sockets)
        self._directory = Path(directory).absolute() if directory is not None else None
        if not self._sockets and self._directory is None:
            raise ValueError("QmpBackend needs socket paths or a directory")
        places = [str(p) for p in ((self._directory,) if self._directory else ()) + self._sockets]
        super().__init__("qmp:" + ",".join(places), readonly=readonly)
        self.timeout = timeout
        self.rescan_interval = rescan_interval
        self.hold = hold
        # Events arrive only through a session that stays open.
        self.supports_events = hold
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._qemus: dict[Path, Qemu] = {}
        self._scan_lock = asyncio.Lock()
        # The loop keeps only weak references to tasks: hold ours until they finish.
        self._tasks: set[asyncio.Task[None]] = set()

    # -- loop plumbing ----------------------------------------------------------------------

    def _start_loop(self) -> None:
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

    def _stop_loop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()
        self._loop = None
        self._thread = None

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._loop
        if loop is None or not loop.is_running():
            coro.close()
            raise HostError(f"{self.uri}: not connected")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        limit = timeout if timeout is not None else self.timeout * 2 + CONNECT_TIMEOUT + 1
        try:
            return future.result(limit)
        except FutureTimeout as exc:
            future.cancel()
            raise HostError(f"{self.uri}: QEMU did not answer within {limit:.0f} s") from exc

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on the loop in the background (from the loop thread)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sessions ---------------------------------------------------------------------------

    async def _execute(self, qemu: Qemu, command: str, arguments: dict[str, Any] | None = None) -> object:
        """Run one QMP command on ``qemu``, translating transport failures to HostError."""
        if self.hold:
            return await self._send(qemu, command, arguments)
        # Inside a caller's session this only counts one more user, so a background task (a
        # dismiss) never has the session closed under its command.
        async with self._talking(qemu):
            return await self._send(qemu, command, arguments)

    async def _send(self, qemu: Qemu, command: str, arguments: dict[str, Any] | None) -> object:
        client = qemu.client
        if client is None or not qemu.connected:
            raise self._unreachable_error(qemu)
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

    @contextlib.asynccontextmanager
    async def _talking(self, qemu: Qemu) -> AsyncIterator[None]:
        """One session for a batch of commands: the held one, or a short one closed after.

        Raises:
            HostError: QEMU cannot be reached (``QemuGone`` when its socket refuses: then its
                unfinished jobs are reported UNKNOWN).
        """
        if self.hold:
            if not qemu.connected:
                raise self._unreachable_error(qemu)
            yield
            return
        async with qemu.open_lock:
            if not qemu.connected:
                await self._drop_connection(qemu)
                try:
                    qemu.client = await self._open(qemu)
                except HostError as exc:
                    await self._unreachable(qemu, exc)
                    raise
                if not qemu.up and qemu.state is not DomainState.LOST:
                    qemu.up = True  # free again after a busy spell (a new process is probed first)
                    self._update_host_state()
            qemu.users += 1
        try:
            yield
        finally:
            qemu.users -= 1
            if qemu.users == 0:
                await self._drop_connection(qemu)

    @staticmethod
    def _unreachable_error(qemu: Qemu) -> HostError:
        return HostError(f"{qemu.name}: QEMU is not reachable at {qemu.socket} ({qemu.message or 'lost'})")

    async def _unreachable(self, qemu: Qemu, exc: HostError) -> None:
        was_up, qemu.up = qemu.up, False
        if isinstance(exc, QemuGone) and was_up:
            await self._lose(qemu, str(exc))
        qemu.message = str(exc)
        self._update_host_state()

    async def _open(self, qemu: Qemu) -> QMPClient:
        """A new QMP session with ``qemu``, its events going to ``_on_event``."""
        client = QMPClient(qemu.socket.name)
        # The default listener queues every event forever; reject at the door, we use our own.
        client.events.event_filter = lambda _event: False
        client.register_listener(Forwarder(lambda event: self._on_event(qemu, event)))
        try:
            await connect_greeted(client, str(qemu.socket), CONNECT_TIMEOUT)
        except TimeoutError as exc:
            await self._abandon(client)
            raise HostError(
                f"{qemu.name}: no QMP greeting within {CONNECT_TIMEOUT:.0f} s at {qemu.socket}: another "
                "client holds the socket (QEMU serves one at a time); try again when it lets go"
            ) from exc
        except (QMPError, OSError) as exc:
            await self._abandon(client)
            cause = getattr(exc, "exc", exc)
            gone = isinstance(cause, ConnectionRefusedError | FileNotFoundError)
            error = QemuGone if gone else HostError
            raise error(f"{qemu.name}: cannot connect to {qemu.socket}: {cause}") from exc
        return client

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
        """Notice a held session ending (QEMU killed, quit, socket closed) and report it."""
        while client.runstate is Runstate.RUNNING:
            await client.runstate_changed()
        if qemu.client is client:
            await self._lose(qemu, "the QMP connection closed")
            self._update_host_state()

    async def _lose(self, qemu: Qemu, why: str) -> None:
        """Mark a QEMU lost; its unfinished jobs end as UNKNOWN, never as completed."""
        await self._drop_connection(qemu)
        qemu.up = False
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
        qemu.listed.clear()
        self._emit_safely(DomainsChanged(self.uri, qemu.name))

    # -- what subclasses provide ---------------------------------------------------------------

    @abstractmethod
    def _update_host_state(self) -> None:
        """Re-derive the host's health from its QEMUs' and report a change."""

    @abstractmethod
    def _on_event(self, qemu: Qemu, event: Message) -> None:
        """Handle one QMP event of ``qemu`` (on the loop thread; must not block)."""

    @abstractmethod
    async def _refresh_status(self, qemu: Qemu) -> None:
        """Read ``qemu``'s run state."""

    @abstractmethod
    async def _refresh_jobs(self, qemu: Qemu) -> list[QemuJob]:
        """Read ``qemu``'s block jobs."""
