"""Windows on real QEMU: one part of a disk copied from its chain, the backing file kept.

QMP: a copy-on-read filter read through an NBD export (any window); libvirt: a prefix pulled and
stopped at its end. What a user cares about: exactly the window's clusters become local, the disk
reads the same, a guest write wins, and nothing of blocktui's is left in QEMU afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import QMPClient

from blocktui.backends.qmp.greeting import connect_greeted
from blocktui.core.errors import Unsupported
from blocktui.core.model import JobState
from blocktui.core.windows import GRAIN, Window, local_extents
from blocktui.engine.facade import Engine
from blocktui.engine.journal import Journal
from blocktui.engine.planner import PlanStatus
from blocktui.engine.session import Session
from blocktui.lab import DiskSpec, Lab
from blocktui.lab.images import backing_file, check, compare, flatten_copy
from blocktui.lab.qmp_lab import QmpLab

from .cli_support import Cli, private_root
from .conftest import ALL_LAB_KINDS, MIB, DomainFactory, SaveContent, key_of

pytestmark = pytest.mark.integration

QMP_ONLY = pytest.mark.parametrize("lab", ["qmp"], indirect=True)
LIBVIRT_ONLY = pytest.mark.parametrize("lab", ["libvirt"], indirect=True)


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


def ours_in_qemu(socket: Path) -> tuple[list[str], list[str]]:
    """blocktui's filter nodes and NBD exports in a QEMU with no job running."""
    nodes = [str(n.get("node-name")) for n in monitor(socket, "query-named-block-nodes", {"flat": True})]
    exports = [str(e.get("id")) for e in monitor(socket, "query-block-exports")]
    return [n for n in nodes if n.startswith("blocktui-")], [e for e in exports if e.startswith("blocktui-")]


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not there in time")
        time.sleep(0.1)


# -- the command line, on a QMP lab of its own ---------------------------------------------------


@pytest.fixture(scope="module")
def window_cli() -> Iterator[Cli]:
    """A QMP lab of one domain (vda: 64 MiB, three layers), reached with --qmp-dir."""
    for root in private_root("btw-"):
        cli = Cli(root, "qmp", "--qmp-dir", str(root / "qmp" / "qmp"))
        cli.run("lab", "up", "--qmp", "--domains", "1", "--disks", "1", "--size", "64M", hosts=False)
        try:
            yield cli
        finally:
            cli.run("lab", "down", "--qmp", hosts=False, check=False)


def _top(cli: Cli, disk: str) -> Path:
    listing = cli.json("ls", "--json")
    return Path(next(d for d in listing[0]["disks"] if d["target"] == disk)["source"])


@pytest.mark.timeout(300)
def test_cli_window_copies_exactly_its_clusters(window_cli: Cli, tmp_path: Path) -> None:
    top = _top(window_cli, "vda")
    saved = tmp_path / "before.raw"
    flatten_copy(top, saved)
    window_cli.flush("lab-1")
    before = local_clusters(top)
    assert not before & clusters(16 * MIB, 8 * MIB)  # the window is all in the backing chain

    final = window_cli.json("stream", "lab-1", "vda", "--offset", "16M", "--length", "8M", "--wait", "--json")

    assert final["state"] == "completed" and final["kind"] == "window"
    assert final["plan"]["window"] == {"offset": 16 * MIB, "length": 8 * MIB}
    window_cli.flush("lab-1")
    assert local_clusters(top) - before == clusters(16 * MIB, 8 * MIB)
    assert local_clusters(top) >= before
    assert backing_file(top) is not None  # still partial: the backing file stays
    assert compare(top, saved)
    assert check(top)
    spare = window_cli.root / "qmp" / "spare" / "lab-1.qmp"
    assert ours_in_qemu(spare) == ([], [])

    # Already local: done at once, nothing read.
    again = window_cli.json("stream", "lab-1", "vda", "--offset", "16M", "--length", "8M", "--wait", "--json")
    assert again["state"] == "completed" and again["cur"] == again["end"] == 8 * MIB


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--offset", "16M"], 2, "both --offset and --length"),
        (["--offset", "16M", "--length", "0"], 2, "must be positive"),
        (["--offset", "1G", "--length", "1M"], 2, "past the end of the disk"),
        (["--offset", "16M", "--length", "8M", "--chunk", "4M"], 2, "one run"),
        (["--offset", "16M", "--length", "8M", "--dry-run"], 2, "--dry-run"),
        (["--offset", "-1", "--length", "8M"], 2, "size"),
    ],
)
def test_cli_window_refusals_are_one_line(window_cli: Cli, args: list[str], code: int, says: str) -> None:
    top = _top(window_cli, "vda")
    window_cli.flush("lab-1")
    before = local_clusters(top)
    done = window_cli.run("stream", "lab-1", "vda", *args, check=False)
    assert done.returncode == code, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr
    assert "Traceback" not in done.stderr
    window_cli.flush("lab-1")
    assert local_clusters(top) == before


def test_cli_window_widened_to_clusters_says_so(window_cli: Cli) -> None:
    done = window_cli.run(
        "stream", "lab-1", "vda", "--offset", "30000", "--length", "1000", "--wait", "--json"
    )
    assert "widened to whole 64 KiB clusters" in done.stderr
    assert json.loads(done.stdout)["plan"]["window"] == {"offset": 0, "length": GRAIN}


@pytest.mark.timeout(300)
def test_killed_blocktui_leftovers_are_removed_by_the_next(window_cli: Cli) -> None:
    spare = window_cli.root / "qmp" / "spare" / "lab-1.qmp"
    argv = [sys.executable, "-m", "blocktui", *window_cli.hosts]
    argv += ["stream", "lab-1", "vda", "--offset", "32M", "--length", "16M", "--bandwidth", "256K", "--wait"]
    reader = subprocess.Popen(argv, env=window_cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ours_in_qemu(spare)[1] != [])
    finally:
        os.kill(reader.pid, signal.SIGKILL)
        reader.wait(timeout=30)
    nodes, exports = ours_in_qemu(spare)
    assert nodes and exports  # what the killed process left behind
    assert f"blocktui-{reader.pid}-" in nodes[0]

    window_cli.run("jobs", "--json")  # the next blocktui: first contact sweeps them

    assert ours_in_qemu(spare) == ([], [])


# -- in process, on the session's QMP lab --------------------------------------------------------


def _qmp(lab: Lab) -> QmpLab:
    assert isinstance(lab, QmpLab)
    return lab


def _spare(lab: Lab, domain: str) -> Path:
    return _qmp(lab).spare_socket(domain)


def _hmp(lab: Lab, domain: str, line: str) -> str:
    return str(monitor(_spare(lab, domain), "human-monitor-command", {"command-line": line}))


@QMP_ONLY
@pytest.mark.timeout(300)
def test_guest_write_inside_the_window_survives(
    lab: Lab, make_domain: DomainFactory, session: Session, journal: Journal
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 64 * MIB, 2)])
    session.refresh_domains()
    engine = Engine(session, journal)
    key = key_of(session, disk)
    plan = engine.add_stream(key, bandwidth=2 * MIB, window=Window(16 * MIB, 8 * MIB))
    engine.run_until(lambda: (view := session.job(key)) is not None and view.cur > 0, timeout=60)
    # The guest writes near the window's end, before the reader gets there.
    assert _hmp(lab, disk.domain, 'qemu-io vda "write -P 0x5a 22M 64k"').strip() == ""  # no error
    engine.run_until(lambda: plan.status is PlanStatus.DONE, timeout=180)

    entry = journal.get(plan.entry_id)
    assert entry is not None and entry.status == "completed" and entry.kind == "window"
    lab.flush(disk.domain)
    read = subprocess.run(
        ["qemu-io", "-U", "-r", "-c", "read -P 0x5a 22M 64k", str(disk.top)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Pattern verification failed" not in read.stdout + read.stderr
    assert clusters(16 * MIB, 8 * MIB) <= local_clusters(disk.top)
    assert backing_file(disk.top) is not None


@QMP_ONLY
@pytest.mark.timeout(300)
def test_window_rethrottle_pause_and_abort_leave_nothing_behind(
    lab: Lab, make_domain: DomainFactory, save_content: SaveContent, session: Session, journal: Journal
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 64 * MIB, 2)])
    saved = save_content(disk)
    session.refresh_domains()
    engine = Engine(session, journal)
    key = key_of(session, disk)
    plan = engine.add_stream(key, bandwidth=512 * 1024, window=Window(8 * MIB, 32 * MIB))
    engine.run_until(lambda: (view := session.job(key)) is not None and view.cur > 0, timeout=60)

    engine.set_speed(key, 1 * MIB)
    engine.run_until(lambda: (view := session.job(key)) is not None and view.bandwidth >= 1 * MIB, timeout=60)
    engine.pause(key)
    engine.run_until(lambda: plan.status is PlanStatus.PAUSED, timeout=60)
    view = session.job(key)
    assert view is not None and view.state is JobState.PAUSED and view.kind.value == "window"
    engine.resume(key)
    engine.run_until(lambda: plan.status is PlanStatus.ACTIVE, timeout=60)

    engine.abort(key)
    # The job's end is reported once its export and filter are gone.
    engine.run_until(lambda: (view := session.job(key)) is not None and view.state.is_final, timeout=120)

    entry = journal.get(plan.entry_id)
    assert entry is not None and entry.status == "cancelled"
    assert ours_in_qemu(_spare(lab, disk.domain)) == ([], [])
    lab.flush(disk.domain)
    assert backing_file(disk.top) is not None
    assert compare(disk.top, saved)


@QMP_ONLY
@pytest.mark.timeout(300)
def test_a_read_error_fails_the_window_and_leaves_nothing_behind(
    lab: Lab, session: Session, journal: Journal, tmp_path: Path
) -> None:
    # Every read touching file offset 20 MiB of the base image fails with EIO.
    (disk,) = _qmp(lab).create_domain(
        "twerr", [DiskSpec("vda", 32 * MIB, 2)], read_error_at={"vda": 20 * MIB}
    )
    try:
        saved = tmp_path / "before.raw"
        flatten_copy(disk.top, saved)
        session.refresh_domains()
        engine = Engine(session, journal)
        key = key_of(session, disk)
        plan = engine.add_stream(key, window=Window(MIB, 31 * MIB))
        engine.run_until(lambda: plan.status is PlanStatus.DONE, timeout=180)

        entry = journal.get(plan.entry_id)
        assert entry is not None and entry.status == "failed"
        assert entry.error is not None and "Input/output error" in entry.error
        assert ours_in_qemu(_spare(lab, disk.domain)) == ([], [])
        lab.flush(disk.domain)
        assert backing_file(disk.top) is not None
        assert compare(disk.top, saved)
    finally:
        lab.destroy_domain("twerr")


@pytest.mark.parametrize("lab", [k for k in ALL_LAB_KINDS if k.startswith("qmp-")], indirect=True)
@pytest.mark.timeout(300)
def test_window_on_every_way_qemu_attaches_disks(
    lab: Lab, make_domain: DomainFactory, save_content: SaveContent, session: Session, journal: Journal
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 32 * MIB, 2)])
    saved = save_content(disk)
    lab.flush(disk.domain)
    before = local_clusters(disk.top)
    session.refresh_domains()
    engine = Engine(session, journal)
    plan = engine.add_stream(key_of(session, disk), window=Window(8 * MIB, 4 * MIB))
    engine.run_until(lambda: plan.status is PlanStatus.DONE, timeout=180)

    entry = journal.get(plan.entry_id)
    assert entry is not None and entry.status == "completed"
    lab.flush(disk.domain)
    assert local_clusters(disk.top) - before == clusters(8 * MIB, 4 * MIB) - before
    assert compare(disk.top, saved)
    assert ours_in_qemu(_spare(lab, disk.domain)) == ([], [])


@QMP_ONLY
@pytest.mark.timeout(300)
def test_the_guard_lets_a_window_and_a_stream_of_one_domain_both_end(
    lab: Lab, make_domain: DomainFactory, save_content: SaveContent, session: Session, journal: Journal
) -> None:
    window_disk, stream_disk = make_domain([DiskSpec("vda", 32 * MIB, 2), DiskSpec("vdb", 32 * MIB, 2)])
    saved = save_content(stream_disk)
    session.refresh_domains()
    engine = Engine(session, journal, guard=True)
    window = engine.add_stream(key_of(session, window_disk), bandwidth=8 * MIB, window=Window(0, 24 * MIB))
    stream = engine.add_stream(key_of(session, stream_disk), bandwidth=8 * MIB)
    engine.run_until(engine.idle, timeout=240)

    for plan in (window, stream):
        entry = journal.get(plan.entry_id)
        assert entry is not None and entry.status == "completed", entry
    lab.flush(window_disk.domain)
    assert backing_file(window_disk.top) is not None
    assert backing_file(stream_disk.top) is None
    assert compare(stream_disk.top, saved)


# -- libvirt: prefixes only -------------------------------------------------------------------------


@LIBVIRT_ONLY
@pytest.mark.timeout(300)
def test_libvirt_prefix_window_stops_at_its_end_and_keeps_the_backing_file(
    lab: Lab, make_domain: DomainFactory, save_content: SaveContent, session: Session, journal: Journal
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 64 * MIB, 2)])
    saved = save_content(disk)
    session.refresh_domains()
    engine = Engine(session, journal)
    key = key_of(session, disk)

    with pytest.raises(Unsupported) as refused:
        engine.add_stream(key, window=Window(16 * MIB, 8 * MIB))
    assert "QMP" in str(refused.value) and "\n" not in str(refused.value)

    plan = engine.add_stream(key, bandwidth=8 * MIB, window=Window(0, 16 * MIB))
    engine.run_until(lambda: plan.status is PlanStatus.DONE, timeout=180)

    entry = journal.get(plan.entry_id)
    assert entry is not None and entry.status == "completed"
    assert entry.window == Window(0, 16 * MIB)
    lab.flush(disk.domain)
    assert backing_file(disk.top) is not None
    local = local_clusters(disk.top)
    assert clusters(0, 16 * MIB) <= local
    assert not local & clusters(32 * MIB, 32 * MIB)  # it stopped near the window's end
    assert compare(disk.top, saved)
    view = session.job(key)
    assert view is not None and view.state is JobState.COMPLETED


@LIBVIRT_ONLY
@pytest.mark.timeout(300)
def test_libvirt_prefix_window_is_stopped_when_its_blocktui_closes_and_the_backing_file_stays(
    lab: Lab, make_domain: DomainFactory, save_content: SaveContent, session: Session, journal: Journal
) -> None:
    """Only blocktui stops a prefix window's pull: closing mid-way must not let it run to the end."""
    (disk,) = make_domain([DiskSpec("vda", 64 * MIB, 2)])
    saved = save_content(disk)
    session.refresh_domains()
    engine = Engine(session, journal)
    key = key_of(session, disk)
    plan = engine.add_stream(key, bandwidth=2 * MIB, window=Window(0, 48 * MIB))
    engine.run_until(lambda: (view := session.job(key)) is not None and view.cur >= 2 * MIB, timeout=120)

    engine.planner.close(timeout=60)

    deadline = time.monotonic() + 60
    while session.backend(key.host).job_info(key.domain, key.disk) is not None:
        assert time.monotonic() < deadline, "the prefix window's pull was left running"
        time.sleep(0.2)
    entry = journal.get(plan.entry_id)
    assert entry is not None and entry.status != "completed" and entry.pause_requested
    lab.flush(disk.domain)
    assert backing_file(disk.top) is not None
    assert compare(disk.top, saved)
