"""Record the QMP replies the graph tests read, from real QEMU started in each lab style.

Run ``.venv/bin/python -m tests.unit.qmp_samples.record`` to refresh the samples (about 10 s). Each
sample holds the block graph and node list of one disk with a three-image chain before a stream,
while it runs (throttled), once it has concluded and after it was dismissed.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from blocktui.lab import DiskSpec
from blocktui.lab.qemu_styles import STYLES
from blocktui.lab.qmp_lab import QmpLab

HERE = Path(__file__).parent
MIB = 1024 * 1024


async def _record(socket: Path, device: str) -> dict[str, Any]:
    client = QMPClient("record")
    await client.connect(str(socket))
    sample: dict[str, Any] = {}

    async def read(phase: str, named: bool) -> None:
        sample[f"graph.{phase}"] = await client.execute("x-debug-query-block-graph")
        if named:  # never while a stream job exists: QEMU 7.2 crashes, even once it concluded
            sample[f"named.{phase}"] = await client.execute("query-named-block-nodes", {"flat": True})

    try:
        await read("idle", True)
        stream = {"job-id": "j1", "device": device, "speed": MIB, "auto-dismiss": False}
        await client.execute("block-stream", stream)
        await read("running", False)
        await client.execute("block-job-set-speed", {"device": "j1", "speed": 0})
        for _ in range(300):
            jobs = await client.execute("query-block-jobs")
            if isinstance(jobs, list) and jobs and jobs[0].get("status") == "concluded":
                break
            await asyncio.sleep(0.05)
        await read("concluded", False)  # named nodes then crash QEMU 7.2 (seen here)
        await client.execute("job-dismiss", {"id": "j1"})
        await read("after", True)
    finally:
        await client.disconnect()
    return sample


def main() -> None:
    """Write ``<style>.json`` for every lab style."""
    with tempfile.TemporaryDirectory(prefix="btr-", dir="/tmp") as root:
        for style in STYLES:
            lab = QmpLab(Path(root) / style, style)
            try:
                lab.create_domain("rec", [DiskSpec("vda", 16 * MIB, 3), DiskSpec("vdb", 16 * MIB, 1)])
                graph = asyncio.run(_graph(lab.spare_socket("rec")))
                device = next(disk.node for disk in graph if disk.target == _first(lab))
                sample = asyncio.run(_record(lab.spare_socket("rec"), str(device)))
                sample["disks"] = [d.target for d in lab.status()]
                (HERE / f"{style}.json").write_text(json.dumps(sample, indent=1) + "\n")
            finally:
                lab.down()


def _first(lab: QmpLab) -> str:
    return lab.status()[0].target


async def _graph(socket: Path) -> Any:
    from blocktui.backends.qmp.graph import disks_from

    client = QMPClient("record")
    await client.connect(str(socket))
    try:
        disks, _chains = disks_from(await client.execute("x-debug-query-block-graph"))
    finally:
        await client.disconnect()
    return disks


if __name__ == "__main__":
    main()
