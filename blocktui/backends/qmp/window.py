"""Windows on QMP hosts: a copy-on-read filter above the disk's top node, read through a private NBD export.

The filter is not in the guest's path: what is read through it is copied into its child, the
disk's top node (the overlay), and copy-on-read never overwrites what the overlay holds, so the
guest's own writes win. QEMU 7.2 inserts the filter with ``blockdev-add`` over a node a device
uses (no ``blockdev-reopen`` needed), exports it read-only with ``block-export-add`` on an NBD
server started on a unix socket of our own, and removes both once the window is read.

Every name carries this process's id (``blocktui-<pid>-w<n>``): what a blocktui that was
killed leaves, the next one removes (``leftovers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import tempfile
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

from qemu.qmp import ExecuteError

from blocktui.backends.qmp.leftovers import QmpLeftovers
from blocktui.backends.qmp.nbd import NbdClient
from blocktui.backends.qmp.state import LOST_NOTE, Qemu, QemuJob, WindowRun, translate_error
from blocktui.core.errors import BlocktuiError, Conflict, HostError, JobBusy
from blocktui.core.model import BlockJob, Domain, JobEvent, JobKind, JobState
from blocktui.core.streams import check_bandwidth, stream_target
from blocktui.core.windows import Pacer, Window, piece_size, ranges_to_read

log = logging.getLogger(__name__)

#: Seconds one NBD read may take before the window fails (QEMU answers a 4 MiB read in well under one).
READ_TIMEOUT = 60.0

_numbers = itertools.count(1)


class QmpWindows(QmpLeftovers):
    """Window jobs on QMP hosts: started, listed, paced, paused and aborted like the backend's streams."""

    supports_window = True

    @abstractmethod
    async def _find(self, name: str) -> Qemu:
        """The QEMU called ``name`` (NotFound when none is)."""

    @abstractmethod
    async def _domain(self, qemu: Qemu, strict: bool = False) -> Domain:
        """``qemu`` as a domain, read now."""

    def start_window(
        self,
        domain: str,
        disk: str,
        window: Window,
        *,
        bandwidth: int = 0,
        local: Sequence[tuple[int, int]] = (),
    ) -> None:
        action = f"cannot copy a window of {domain}/{disk}"
        self._require_writable(action)
        check_bandwidth(bandwidth, action)
        self._call(self._start_window(domain, disk, window, bandwidth, tuple(local)))

    async def _start_window(
        self, domain: str, disk: str, window: Window, bandwidth: int, local: tuple[tuple[int, int], ...]
    ) -> None:
        action = f"cannot copy a window of {domain}/{disk}"
        qemu = await self._find(domain)
        async with self._talking(qemu):
            found = stream_target(await self._domain(qemu, strict=True), disk, None, action)
            async with qemu.lock:
                self._refuse_busy(qemu, disk, await self._refresh_jobs(qemu))
                loop = asyncio.get_running_loop()
                todo = ranges_to_read(window, local)
                run = WindowRun(
                    disk, f"blocktui-{os.getpid()}-w{next(_numbers)}", window, todo, bandwidth,
                    Pacer(bandwidth, loop.time()),
                )  # fmt: skip
                run.cur = window.length - sum(length for _start, length in todo)
                qemu.windows[disk] = run
                if not todo:
                    self._end_window(qemu, run, JobState.COMPLETED)  # all local already
                    return
                try:
                    await self._insert(qemu, run, found.node or disk)
                except BaseException as exc:
                    # Even when cancelled (the caller's timeout), what was added goes, and the disk
                    # is free again for the next stream or window.
                    await asyncio.shield(self._undo_start(qemu, run))
                    if isinstance(exc, ExecuteError):
                        raise translate_error(exc, f"{action}: QEMU refused") from exc
                    if isinstance(exc, OSError):
                        raise HostError(f"{action}: {exc}") from exc
                    raise
        self._spawn(self._read_window(qemu, run))

    async def _undo_start(self, qemu: Qemu, run: WindowRun) -> None:
        await self._remove_quietly(qemu, run)
        if qemu.windows.get(run.disk) is run:
            del qemu.windows[run.disk]

    @staticmethod
    def _refuse_busy(qemu: Qemu, disk: str, jobs: Sequence[QemuJob]) -> None:
        """Refuse a window or a stream on a disk that has either running."""
        for job in jobs:
            if job.disk == disk and not job.state.is_final:
                raise JobBusy(f"{qemu.name}/{disk} already has a {job.kind} job ({job.job_id})")
        current = qemu.windows.get(disk)
        if current is not None and not current.state.is_final:
            raise JobBusy(f"{qemu.name}/{disk} already has a window job ({current.name})")

    # -- QEMU's side ------------------------------------------------------------------------

    async def _insert(self, qemu: Qemu, run: WindowRun, node: str) -> None:
        """The filter above ``node``, an NBD server (ours), and the read-only export of the filter."""
        filter_node = {"driver": "copy-on-read", "node-name": run.name, "file": node}
        await self._execute(qemu, "blockdev-add", filter_node)
        run.inserted = True
        export = {"type": "nbd", "id": run.name, "node-name": run.name, "name": run.name, "writable": False}
        async with qemu.nbd_lock:
            if qemu.nbd_socket is None:
                await self._start_server(qemu)
            try:
                await self._execute(qemu, "block-export-add", export)
            except ExecuteError as exc:
                if "not running" not in str(exc).lower():
                    raise
                # The server we started is gone: QEMU was restarted on the same socket between
                # two short sessions. Start ours again.
                self._forget_server(qemu)
                await self._start_server(qemu)
                await self._execute(qemu, "block-export-add", export)
            run.exported = True

    async def _start_server(self, qemu: Qemu) -> None:
        """``nbd-server-start`` on a unix socket in a new private directory (``qemu.nbd_lock`` held)."""
        directory = Path(tempfile.mkdtemp(prefix=f"blocktui-nbd-{os.getpid()}-"))
        socket = directory / "nbd.sock"
        try:
            if os.geteuid() == 0:
                # QEMU creates the socket: let the user it runs as (who made its QMP socket) write here.
                facts = qemu.socket.stat()
                os.chown(directory, facts.st_uid, facts.st_gid)
            await self._execute(
                qemu, "nbd-server-start", {"addr": {"type": "unix", "data": {"path": str(socket)}}}
            )
        except BaseException as exc:
            shutil.rmtree(directory, ignore_errors=True)
            if isinstance(exc, ExecuteError) and "already" in str(exc).lower():
                raise Conflict(
                    f"{qemu.name}: an NBD server already runs in this QEMU (another tool's, e.g. a "
                    "migration) and blocktui cannot reach its exports: copy the window once it stops"
                ) from exc
            raise
        qemu.nbd_socket = socket

    @staticmethod
    def _forget_server(qemu: Qemu) -> None:
        """Drop our record of the NBD server (it is stopped or its QEMU is gone) and its directory."""
        if qemu.nbd_socket is not None:
            shutil.rmtree(qemu.nbd_socket.parent, ignore_errors=True)
            qemu.nbd_socket = None

    async def _remove(self, qemu: Qemu, run: WindowRun) -> None:
        """Delete the export and the filter, and the NBD server once no window of ours needs it."""
        if run.exported:
            await self._delete_export(qemu, run.name)
            run.exported = False
        if run.inserted:
            await self._execute(qemu, "blockdev-del", {"node-name": run.name})
            run.inserted = False
        # Under the lock a window being started either has its export already (and keeps the
        # server) or starts a new server after this one stopped.
        async with qemu.nbd_lock:
            others = [r for r in qemu.windows.values() if r is not run and r.exported]
            if qemu.nbd_socket is not None and not others:
                await self._execute(qemu, "nbd-server-stop")
                self._forget_server(qemu)

    async def _remove_quietly(self, qemu: Qemu, run: WindowRun) -> None:
        try:
            await self._remove(qemu, run)
        except (HostError, ExecuteError) as exc:
            # The next blocktui finds them by name (this process's id) and removes them.
            log.warning("%s: cannot remove window node %s yet: %s", qemu.name, run.name, exc)

    # -- the reader -------------------------------------------------------------------------

    async def _read_window(self, qemu: Qemu, run: WindowRun) -> None:
        """Read every range left through the export at the run's pace; then remove the nodes."""
        state, client = JobState.FAILED, None
        loop = asyncio.get_running_loop()
        try:
            if qemu.nbd_socket is None:
                raise HostError(f"{qemu.name}: the NBD server for the window went away before it was read")
            client = await NbdClient.connect(str(qemu.nbd_socket), run.name)
            self._clip(run, client.size)
            run.pacer.restart(run.speed, loop.time())
            while run.todo and not run.stop:
                if run.paused or (delay := run.pacer.delay(loop.time())) > 0:
                    # Asleep until its turn (at most a second, so a change is seen soon) or a wake.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(run.wake.wait(), None if run.paused else min(delay, 1.0))
                    run.wake.clear()
                    continue
                start, length = run.todo[0]
                piece = min(piece_size(run.speed), length)
                await asyncio.wait_for(client.read(start, piece), READ_TIMEOUT)
                run.cur += piece
                run.pacer.read(piece)
                run.todo[0] = (start + piece, length - piece)
                if piece == length:
                    run.todo.pop(0)
            state = JobState.CANCELLED if run.stop else JobState.COMPLETED
        except TimeoutError:
            run.error = f"QEMU did not answer a read of the window within {READ_TIMEOUT:.0f} s"
        except BlocktuiError as exc:
            run.error = str(exc)
        finally:
            if client is not None:
                await client.close()
            await self._remove_quietly(qemu, run)
            self._end_window(qemu, run, JobState.UNKNOWN if run.lost else state)

    @staticmethod
    def _clip(run: WindowRun, size: int) -> None:
        """Past the disk's end there is nothing to copy: those bytes count as done."""
        kept = [(start, min(length, size - start)) for start, length in run.todo if start < size]
        run.cur += sum(length for _start, length in run.todo) - sum(length for _start, length in kept)
        run.todo = kept

    def _end_window(self, qemu: Qemu, run: WindowRun, state: JobState) -> None:
        run.state = state
        if state in (JobState.CANCELLED, JobState.UNKNOWN) and run.stop_reason:
            run.error = run.stop_reason
        if qemu.windows.get(run.disk) is run:
            del qemu.windows[run.disk]
        self._emit_safely(
            JobEvent(
                self.uri,
                qemu.name,
                run.disk,
                JobKind.WINDOW,
                state,
                error=run.error if state is not JobState.COMPLETED else None,
                cur=run.cur,
                end=run.end,
            )
        )

    # -- what the backend's job API asks ----------------------------------------------------------

    def _window_jobs(self, qemu: Qemu) -> list[BlockJob]:
        return [self._window_job(qemu, run) for run in qemu.windows.values() if not run.state.is_final]

    def _window_job(self, qemu: Qemu, run: WindowRun) -> BlockJob:
        return BlockJob(
            host=self.uri,
            domain=qemu.name,
            disk=run.disk,
            kind=JobKind.WINDOW,
            state=JobState.PAUSED if run.paused else JobState.ACTIVE,
            cur=run.cur,
            end=run.end,
            bandwidth=run.speed,
            job_id=run.name,
        )

    def _window_control(self, qemu: Qemu, disk: str, command: str, speed: int = 0) -> bool:
        """Steer the window on ``disk``, if it has one running (True: it did)."""
        run = qemu.windows.get(disk)
        if run is None or run.state.is_final:
            return False
        if command == "block-job-set-speed":
            run.speed = speed
            run.pacer.restart(speed, asyncio.get_running_loop().time())
        elif command == "pause":
            run.paused = True
        elif command == "resume" and run.paused:
            run.paused = False
            run.pacer.restart(run.speed, asyncio.get_running_loop().time())
        elif command == "block-job-cancel":
            run.stop = True
        run.wake.set()
        return True

    async def _lose(self, qemu: Qemu, why: str) -> None:
        # Its windows' nodes and our NBD server went with the QEMU: a QEMU started again on the
        # same socket has neither, and a reader waiting (paused) must end too.
        await super()._lose(qemu, why)
        for run in qemu.windows.values():
            run.lost = run.stop = True
            run.inserted = run.exported = False
            run.stop_reason = f"{LOST_NOTE} ({why})"
            run.wake.set()
        qemu.windows.clear()
        self._forget_server(qemu)

    async def _shutdown(self) -> None:
        # The reader lives in this process: it stops, and its nodes go, before the connection does.
        for qemu in self._qemus.values():
            for run in qemu.windows.values():
                run.stop = True
                run.stop_reason = "blocktui stopped copying the window when it closed (what it copied stays)"
                run.wake.set()
        await super()._shutdown()
