"""What a killed blocktui leaves in a QEMU (filters, exports, its NBD server): the next one removes it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from qemu.qmp import ExecuteError

from .cli_support import Cli
from .window_support import monitor, ours_in_qemu, top_of, wait_until, window_cli

pytestmark = pytest.mark.integration

__all__ = ["window_cli"]  # the fixture


@pytest.mark.timeout(300)
def test_killed_blocktui_leftovers_are_removed_by_the_next(window_cli: Cli) -> None:
    spare = window_cli.root / "qmp" / "spare" / "lab-1.qmp"
    argv = [sys.executable, "-m", "blocktui", *window_cli.hosts]
    argv += ["stream", "lab-1", "vda", "--offset", "32M", "--length", "16M", "--bandwidth", "256K", "--wait"]
    reader = subprocess.Popen(argv, env=window_cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Only the exports: probing the server (ours_in_qemu) could make the reader's start fail.
        wait_until(
            lambda: any(
                str(e.get("id")).startswith("blocktui-") for e in monitor(spare, "query-block-exports")
            )
        )
    finally:
        os.kill(reader.pid, signal.SIGKILL)
        reader.wait(timeout=30)
    nodes, exports, server = ours_in_qemu(spare)
    assert nodes and exports and server  # what the killed process left behind
    assert f"blocktui-{reader.pid}-" in nodes[0]

    window_cli.run("jobs", "--json")  # the next blocktui: first contact sweeps them

    assert ours_in_qemu(spare) == ([], [], False)
    assert not list(Path(tempfile.gettempdir()).glob(f"blocktui-nbd-{reader.pid}-*"))
    # And a new window starts (no "another tool's server" refusal).
    final = window_cli.json("stream", "lab-1", "vda", "--offset", "48M", "--length", "1M", "--wait", "--json")
    assert final["state"] == "completed"
    assert ours_in_qemu(spare) == ([], [], False)


def _dead_pid() -> int:
    """The id of a process that has exited (what a killed blocktui's names carry)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


@pytest.mark.parametrize("with_filter", [True, False], ids=["filter-left", "server-only"])
@pytest.mark.timeout(300)
def test_a_server_left_with_nothing_exported_is_stopped_by_the_next(
    window_cli: Cli, with_filter: bool
) -> None:
    # Killed between nbd-server-start and block-export-add (its filter left), or between its last
    # blockdev-del and nbd-server-stop (only the server left).
    spare = window_cli.root / "qmp" / "spare" / "lab-1.qmp"
    image = str(top_of(window_cli, "vda"))  # before the directory: this blocktui sweeps too
    top = next(
        str(n["node-name"])
        for n in monitor(spare, "query-named-block-nodes", {"flat": True})
        if n.get("drv") == "qcow2" and str(n.get("file")) == image
    )
    pid = _dead_pid()
    directory = Path(tempfile.mkdtemp(prefix=f"blocktui-nbd-{pid}-"))
    try:
        if with_filter:
            monitor(
                spare,
                "blockdev-add",
                {"driver": "copy-on-read", "node-name": f"blocktui-{pid}-w1", "file": top},
            )
        monitor(
            spare,
            "nbd-server-start",
            {"addr": {"type": "unix", "data": {"path": str(directory / "nbd.sock")}}},
        )
        assert ours_in_qemu(spare) == ([f"blocktui-{pid}-w1"] if with_filter else [], [], True)

        window_cli.run("jobs", "--json")  # the next blocktui's first contact

        assert ours_in_qemu(spare) == ([], [], False)
        assert not directory.exists()
        final = window_cli.json(
            "stream", "lab-1", "vda", "--offset", "50M", "--length", "1M", "--wait", "--json"
        )
        assert final["state"] == "completed"
        assert ours_in_qemu(spare) == ([], [], False)
    finally:
        with contextlib.suppress(ExecuteError):
            monitor(spare, "nbd-server-stop")
        with contextlib.suppress(ExecuteError):
            monitor(spare, "blockdev-del", {"node-name": f"blocktui-{pid}-w1"})
        shutil.rmtree(directory, ignore_errors=True)
