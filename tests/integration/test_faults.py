"""Faults on a real system libvirtd while ``blocktui stream --wait`` follows a pull: the daemon killed
and restarted, the domain's QEMU killed. blocktui must tell the truth about how the job ended."""

from __future__ import annotations

import itertools
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocktui.lab.images import backing_file
from blocktui.lab.system import revive, stop_process

from .system_support import MIB, PREFIX, SystemHost, finish, follow_stream, reap, until

pytestmark = pytest.mark.integration


_numbers = itertools.count(1)


@pytest.fixture
def domain(system_host: SystemHost) -> Iterator[str]:
    """A fresh name for this test's domain (the journal keeps the run's jobs); removed at the end."""
    name = f"{PREFIX}fault-{next(_numbers)}"
    yield name
    system_host.remove(name)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stream_wait_rides_out_a_libvirtd_restart_and_the_disk_reads_the_same(
    system_host: SystemHost, domain: str, tmp_path: Path, signum: int
) -> None:
    # 12 s at 2 MiB/s: the job runs through the daemon's death and restart.
    stream = follow_stream(system_host, domain, 24 * MIB, "2M", tmp_path / "before.raw")
    try:
        try:
            stop_process(system_host.daemon.pid, signum)
            # blocktui has seen the link go before the operator brings the daemon back.
            lost = stream.stderr.wait_for("not answering", timeout=60)
        finally:
            revive(system_host.daemon)
        out = stream.finish()
    finally:
        reap(stream.process)

    said = stream.stderr.rest()
    assert stream.process.returncode == 0, (out, said)
    record = json.loads(out)
    assert record["state"] == "completed", (record, said)
    assert "still waiting" in lost
    assert any("answering again" in line for line in said), said  # it reconnected
    (entry,) = [e for e in system_host.json("history", "--json") if e["domain"] == domain]
    assert entry["status"] == "completed"
    assert backing_file(stream.disk.top) is None  # the overlay stands alone
    assert stream.reads_as_before(system_host)  # and reads what the chain read before


def test_qemu_killed_mid_stream_is_never_reported_completed(system_host: SystemHost, domain: str) -> None:
    # Larger than the guard's end zone (16 MiB, slowed from 32 MiB): the job runs at its own limit.
    system_host.define(domain, size=48 * MIB)
    system_host.start(domain)
    process = system_host.popen("stream", domain, "vda", "--bandwidth", "1M", "--wait", "--json")
    try:
        # Killed while it copies, not while something holds it back.
        until(lambda: _copying(system_host, domain, MIB), process, f"{domain}/vda copying at 1 MiB/s")
        os.kill(system_host.qemu_pid(domain), signal.SIGKILL)
        out, err = finish(process)
    finally:
        reap(process)

    assert process.returncode == 1, err
    final = json.loads(out)
    assert final["domain"] == domain and final["disk"] == "vda"
    assert final["state"] in {"unknown", "failed"}, (final, err)
    reason = final.get("error") or final.get("note")
    assert reason, final
    assert final["plan"]["status"] == final["state"]
    entries = [e for e in system_host.json("history", "--json") if e["domain"] == domain]
    assert [e["status"] for e in entries] == [final["state"]]  # the journal says the same, and only that
    assert (entries[0]["error"] or entries[0]["note"]) == reason


def _copying(system_host: SystemHost, name: str, bandwidth: int) -> bool:
    """Whether ``name``/vda's job has copied something and runs at ``bandwidth``, as ``jobs`` shows it."""
    jobs = [j for j in system_host.json("jobs", "--json") if j["domain"] == name and j["disk"] == "vda"]
    return any(j["cur"] > 0 and j["bandwidth"] == bandwidth and j["state"] == "active" for j in jobs)
