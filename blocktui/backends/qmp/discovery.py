"""Finding the QEMUs behind a list of sockets or a directory of them, and the host's health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from qemu.qmp import ExecuteError

from blocktui.backends.qmp.graph import as_dict, as_list
from blocktui.backends.qmp.link import QmpLink
from blocktui.backends.qmp.state import SOCKET_PATTERNS, Qemu
from blocktui.core.errors import BlocktuiError, HostError
from blocktui.core.model import ConnectionEvent, ConnectionState, DomainsChanged, HostInfo

log = logging.getLogger(__name__)


class QmpDiscovery(QmpLink):
    """Sockets given one by one or found in a directory (re-scanned), each QEMU one domain.

    Each QEMU is named by ``query-name`` or else by its socket's file name. A new or unreachable
    QEMU is contacted on every rescan; one that answers is not contacted again until it is used.
    """

    _rescanner: asyncio.Task[None] | None = None
    _host_state = ConnectionState.CONNECTING
    _host_message = ""

    def connect(self) -> None:
        if self._loop is not None:
            return
        if self._directory is not None and not self._directory.is_dir():
            raise HostError(f"{self.uri}: {self._directory} is not a directory of QMP sockets")
        self._start_loop()
        try:
            self._call(self._scan(), timeout=self.timeout * 2 + 5)
        except BlocktuiError:
            self.close()
            raise
        if self._sockets and not self._directory and not any(q.up for q in self._qemus.values()):
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
        self._stop_loop()
        self._host_state = ConnectionState.DISCONNECTED

    async def _shutdown(self) -> None:
        if self._rescanner is not None:
            self._rescanner.cancel()
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            # A job-dismiss on its way must land before we go: a concluded job left behind keeps
            # every other client from reading file names (QEMU 7.2 crashes on it) until it lingers out.
            await asyncio.wait(pending, timeout=self.timeout)
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
            if not known.up:
                attempts.append(self._connect_qemu(known))
        results = await asyncio.gather(*attempts)
        if changed or any(results):
            self._name_domains()
            self._emit_safely(DomainsChanged(self.uri))
        self._update_host_state()

    def _update_host_state(self) -> None:
        total = len(self._qemus)
        up = sum(q.up for q in self._qemus.values())
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
        """Make first contact (again): name, version, commands, state, jobs; True when it answered."""
        try:
            if self.hold:
                qemu.client = await self._open(qemu)
            async with self._talking(qemu):
                client = qemu.client
                greeting = client.greeting if client is not None else None
                if greeting is not None:
                    # 0.0.6 models the greeting as an object whose ``version`` is a plain mapping.
                    release = as_dict(greeting.QMP.version.get("qemu"))
                    qemu.version = (
                        f"QEMU {release.get('major')}.{release.get('minor')}.{release.get('micro')}"
                    )
                name = as_dict(await self._execute(qemu, "query-name")).get("name")
                qemu.qmp_name = str(name) if name else None
                commands = {str(c.get("name")) for c in as_list(await self._execute(qemu, "query-commands"))}
                qemu.job_commands = {"job-pause", "job-resume", "job-dismiss"} <= commands
                await self._refresh_status(qemu)
                await self._refresh_jobs(qemu)
        except (HostError, ExecuteError) as exc:
            qemu.message = str(exc)
            await self._drop_connection(qemu)
            return False
        qemu.message = ""
        qemu.up = True
        if self.hold and qemu.client is not None:
            qemu.watcher = asyncio.get_running_loop().create_task(self._watch(qemu, qemu.client))
        return True

    def _name_domains(self) -> None:
        """Domain names: ``query-name`` when set and unique, else the socket's stem."""
        wanted = {path: (q.qmp_name or path.stem) for path, q in self._qemus.items()}
        counts: dict[str, int] = {}
        for name in wanted.values():
            counts[name] = counts.get(name, 0) + 1
        for path, qemu in self._qemus.items():
            name = wanted[path]
            qemu.name = name if counts[name] == 1 else f"{name}@{path.stem}"

    def host_info(self) -> HostInfo:
        # Called from other threads while the QMP loop adds and drops QEMUs: read a copy.
        qemus = list(self._qemus.values())
        versions = sorted({q.version for q in qemus if q.version})
        return HostInfo(
            uri=self.uri,
            state=self._host_state,
            readonly=self.readonly,
            hypervisor=", ".join(versions) or "QEMU (QMP)",
            message=self._host_message,
            extra={
                "qemu processes": str(len(qemus)),
                "qmp sockets": "held" if self.hold else "shared (a short session per look)",
            },
        )
