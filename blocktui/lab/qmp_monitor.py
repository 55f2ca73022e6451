"""The lab's talk with a QEMU's spare QMP monitor (the backend holds the primary one)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from blocktui.core.errors import HostError

if TYPE_CHECKING:
    from qemu.qmp import QMPClient

#: How long a new QEMU may take to greet on its monitor (a loaded machine delays its main loop).
READY_TIMEOUT = 30.0

#: How long a flush waits for the spare monitor (another client may hold it).
FLUSH_TIMEOUT = 3.0


@contextlib.asynccontextmanager
async def spare_session(name: str, socket: Path, timeout: float, failure: str) -> AsyncIterator[QMPClient]:
    """A QMP session on lab domain ``name``'s spare monitor; HostError("... {failure}") if none opens."""
    # Imported here: the lab package must load without qemu.qmp for the libvirt lab.
    from qemu.qmp import QMPClient, QMPError  # noqa: PLC0415

    from blocktui.backends.qmp.greeting import connect_greeted  # noqa: PLC0415

    client = QMPClient(f"lab-{name}")
    try:
        await connect_greeted(client, str(socket), timeout)
    except (TimeoutError, QMPError, OSError) as exc:
        raise HostError(f"lab domain {name}: {failure}") from exc
    try:
        yield client
    finally:
        with contextlib.suppress(QMPError, OSError, EOFError):
            await client.disconnect()


def wait_greeted(name: str, socket_path: Path, timeout: float = READY_TIMEOUT) -> None:
    """Return once a new QEMU greets on its spare monitor (a plain read: callers may run an event loop).

    ``-daemonize`` returns before QEMU's main loop runs; on a loaded machine that can be seconds
    later, and a backend scanning meanwhile would take the domain for lost.

    Raises:
        HostError: no greeting within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as monitor:
            monitor.settimeout(timeout)
            monitor.connect(str(socket_path))
            pending = b""
            while True:
                line, newline, rest = pending.partition(b"\n")
                if newline:
                    # Events may come first (a monitor goes on sending them to whoever connects next).
                    if b'"QMP"' in line:
                        return
                    pending = rest
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no greeting within {timeout:.0f} s")
                monitor.settimeout(left)
                chunk = monitor.recv(4096)
                if not chunk:
                    raise ConnectionResetError("the monitor closed before its greeting")
                pending += chunk
    except OSError as exc:  # TimeoutError included
        raise HostError(f"lab domain {name}: started but does not answer on its monitor ({exc})") from exc


async def flush_disks(name: str, socket: Path, targets: list[str]) -> None:
    """HMP ``qemu-io flush`` on each of ``targets``' format nodes, so qemu-img reads what the guest would."""
    from blocktui.backends.qmp.graph import disks_from  # noqa: PLC0415

    failure = "cannot flush: its spare QMP monitor is unavailable"
    async with spare_session(name, socket, FLUSH_TIMEOUT, failure) as client:
        # HMP qemu-io takes a drive id or a node name, not a device id: flush each disk's
        # format node, found the way the backend finds it.
        disks, _chains = disks_from(await client.execute("x-debug-query-block-graph"))
        nodes = {disk.target: disk.node or disk.target for disk in disks}
        for target in targets:
            reply = await client.execute(
                "human-monitor-command", {"command-line": f'qemu-io {nodes.get(target, target)} "flush"'}
            )
            if isinstance(reply, str) and reply.strip():
                raise HostError(f"flushing {name}/{target} failed: {reply.strip()}")
