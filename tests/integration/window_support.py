"""What the window tests share: a private QMP lab for the command line, and looks into QEMU and images."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import ExecuteError, QMPClient

from blocktui.backends.qmp.greeting import connect_greeted
from blocktui.core.windows import GRAIN, local_extents

from .cli_support import Cli, lab_cli


def local_clusters(image: Path) -> set[int]:
    """The clusters the top image itself holds (``qemu-img map -U``: depth 0)."""
    done = subprocess.run(
        ["qemu-img", "map", "-U", "--output=json", str(image)], capture_output=True, text=True, check=True
    )
    return {
        cluster
        for start, length in local_extents(json.loads(done.stdout))
        for cluster in range(start // GRAIN, (start + length) // GRAIN)
    }


def pattern_reads(image: Path, pattern: int, offset: int, length: int) -> bool:
    """Whether ``image`` (and its chain) reads ``pattern`` in every byte of the range (``qemu-io -U``)."""
    done = subprocess.run(
        ["qemu-io", "-U", "-r", "-c", f"read -P {pattern:#x} {offset} {length}", str(image)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = done.stdout + done.stderr
    return (
        done.returncode == 0
        and f"read {length}/{length} bytes" in output
        and "verification failed" not in output
    )


def clusters(offset: int, length: int) -> set[int]:
    return set(range(offset // GRAIN, (offset + length) // GRAIN))


def monitor(socket: Path, command: str, arguments: dict[str, Any] | None = None) -> Any:
    """One QMP command on a QEMU's spare monitor (the one blocktui is not using)."""

    async def run() -> Any:
        client = QMPClient("test")
        await connect_greeted(client, str(socket), 10.0)
        try:
            return await client.execute(command, arguments)
        finally:
            await client.disconnect()

    return asyncio.run(run())


def nbd_server_runs(socket: Path) -> bool:
    """Whether an NBD server runs in the QEMU (QMP lists none: a second one is refused).

    Only while no blocktui may be starting a window there: the probe's server would refuse its.
    """
    with tempfile.TemporaryDirectory(prefix="btw-nbd-") as directory:
        address = {"addr": {"type": "unix", "data": {"path": str(Path(directory) / "probe.sock")}}}
        try:
            monitor(socket, "nbd-server-start", address)
        except ExecuteError as exc:
            assert "already running" in str(exc), exc
            return True
        monitor(socket, "nbd-server-stop")
        return False


def ours_in_qemu(socket: Path) -> tuple[list[str], list[str], bool]:
    """blocktui's filter nodes and NBD exports in a QEMU with no job running; whether an NBD server runs."""
    nodes = [str(n.get("node-name")) for n in monitor(socket, "query-named-block-nodes", {"flat": True})]
    exports = [str(e.get("id")) for e in monitor(socket, "query-block-exports")]
    ours = [n for n in nodes if n.startswith("blocktui-")], [e for e in exports if e.startswith("blocktui-")]
    return *ours, nbd_server_runs(socket)


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not there in time")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def window_cli() -> Iterator[Cli]:
    """A QMP lab of one domain (vda: 64 MiB, three layers), reached with --qmp-dir."""
    yield from lab_cli("qmp", "btw-", disks=1, size="64M")


def top_of(cli: Cli, disk: str) -> Path:
    listing = cli.json("ls", "--json")
    return Path(next(d for d in listing[0]["disks"] if d["target"] == disk)["source"])
