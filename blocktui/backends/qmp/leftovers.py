"""What a killed blocktui leaves in a QEMU (window filters, NBD exports, its NBD server) and their removal.

Every name carries the owning process's id (``blocktui-<pid>-w<n>``), and its NBD server listens
in ``<tmp>/blocktui-nbd-<pid>-*/``: the next blocktui recognises them, on first contact, and
removes them when that process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from qemu.qmp import ExecuteError

from blocktui.backends.qmp.events import QmpEvents
from blocktui.backends.qmp.graph import BlockGraph, as_list
from blocktui.backends.qmp.state import Qemu
from blocktui.core.errors import HostError
from blocktui.core.processes import pid_alive

log = logging.getLogger(__name__)

#: Our filter nodes and exports: ``blocktui-<pid>-w<n>`` (QEMU node names are at most 31 bytes).
LEFTOVER = re.compile(r"^blocktui-(\d+)-w\d+$")

#: The directory of one process's NBD server socket: ``blocktui-nbd-<pid>-<random>``.
SERVER_DIRECTORY = re.compile(r"^blocktui-nbd-(\d+)-")

#: Seconds QEMU may take to let go of a deleted export (it waits for its clients to leave).
EXPORT_GONE_TIMEOUT = 10.0


def _dead_pid(pid: int) -> bool:
    return pid != os.getpid() and not pid_alive(pid)


def _dead_owner(name: str) -> int | None:
    """The pid in one of our names when that process is gone (its leftover); None otherwise."""
    match = LEFTOVER.match(name)
    if match is None:
        return None
    pid = int(match.group(1))
    return pid if _dead_pid(pid) else None


def dead_server_directories() -> list[Path]:
    """The NBD server directories of blocktui processes that are gone."""
    found = []
    for directory in Path(tempfile.gettempdir()).glob("blocktui-nbd-*"):
        match = SERVER_DIRECTORY.match(directory.name)
        if match is not None and _dead_pid(int(match.group(1))):
            found.append(directory)
    return found


async def accepts(socket: Path) -> bool:
    """Whether something listens on the unix socket ``socket`` (a server left running)."""
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket)), 2.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class QmpLeftovers(QmpEvents):
    """Removes a gone blocktui's window nodes, exports and NBD server at first contact with a QEMU."""

    async def _connect_qemu(self, qemu: Qemu) -> bool:
        answered = await super()._connect_qemu(qemu)
        if answered and not self.readonly:
            await self._sweep(qemu)
        return answered

    async def _delete_export(self, qemu: Qemu, export: str) -> None:
        """``block-export-del``, then wait until QEMU lets go of it (the filter is in use till then).

        Hard mode: the export is private, and QEMU refuses a safe delete while a client that just
        closed its connection is still counted.

        Raises:
            HostError: QEMU still lists the export after ``EXPORT_GONE_TIMEOUT``.
        """
        try:
            await self._execute(qemu, "block-export-del", {"id": export, "mode": "hard"})
        except ExecuteError as exc:
            lowered = str(exc).lower()
            if "not found" not in lowered and "shutting down" not in lowered:
                raise
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EXPORT_GONE_TIMEOUT
        while True:
            exports = as_list(await self._execute(qemu, "query-block-exports"))
            if all(str(e.get("id")) != export for e in exports):
                return
            if loop.time() >= deadline:
                raise HostError(
                    f"{qemu.name}: QEMU still lists the NBD export {export} {EXPORT_GONE_TIMEOUT:.0f} s "
                    "after it was deleted"
                )
            await asyncio.sleep(0.05)

    async def _sweep(self, qemu: Qemu) -> None:
        """Remove the filters, exports and NBD server a blocktui process that is gone left in ``qemu``."""
        try:
            exports = [str(e.get("id")) for e in as_list(await self._execute(qemu, "query-block-exports"))]
            graph = BlockGraph.parse(await self._execute(qemu, "x-debug-query-block-graph"))
            nodes = list(graph.names.values())
        except (HostError, ExecuteError) as exc:
            log.info("%s: cannot look for window leftovers: %s", qemu.name, exc)
            return
        stale_exports = [e for e in exports if _dead_owner(e) is not None]
        stale_nodes = [n for n in nodes if _dead_owner(n) is not None]
        directories = dead_server_directories()
        # A server still listening where a gone blocktui started one, even with no node left
        # (killed between deleting its last filter and stopping the server).
        serving = [d for d in directories if await accepts(d / "nbd.sock")]
        stopped = False
        if stale_exports or stale_nodes or serving:
            try:
                for export in stale_exports:
                    await self._delete_export(qemu, export)
                for node in stale_nodes:
                    await self._execute(qemu, "blockdev-del", {"node-name": node})
                left = as_list(await self._execute(qemu, "query-block-exports"))
                if not left and qemu.nbd_socket is None:
                    # Nothing is exported and this process runs no server here: a server that
                    # runs is the gone blocktui's (QEMU says so when none does).
                    with contextlib.suppress(ExecuteError):
                        await self._execute(qemu, "nbd-server-stop")
                        stopped = True
            except (HostError, ExecuteError) as exc:
                log.warning("%s: cannot remove window leftovers %s: %s", qemu.name, stale_nodes, exc)
                return
        for directory in directories:
            # Another QEMU may still serve on one: that one goes when its QEMU is swept.
            if not await accepts(directory / "nbd.sock"):
                shutil.rmtree(directory, ignore_errors=True)
        if stale_exports or stale_nodes or stopped:
            owners = sorted({pid for name in stale_nodes + stale_exports if (pid := _dead_owner(name))})
            log.warning(
                "%s: removed the window filter nodes %s, NBD exports %s%s left by blocktui process %s, "
                "which is gone",
                qemu.name, ", ".join(stale_nodes) or "(none)", ", ".join(stale_exports) or "(none)",
                " and its NBD server" if stopped else "", ", ".join(map(str, owners)) or "(unknown)",
            )  # fmt: skip
