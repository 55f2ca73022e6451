"""Windows on real QEMU: one part of a disk copied from its chain, the backing file kept.

QMP: a copy-on-read filter read through an NBD export (any window); libvirt: a prefix pulled and
stopped at its end. What a user cares about: exactly the window's clusters become local, the disk
reads the same, a guest write wins, and nothing of blocktui's is left in QEMU afterwards.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from blocktui.core.errors import Unsupported
from blocktui.core.model import JobState
from blocktui.core.windows import GRAIN, Window
from blocktui.engine.facade import Engine
from blocktui.engine.journal import Journal
from blocktui.engine.planner import PlanStatus
from blocktui.engine.session import Session
from blocktui.lab import DiskSpec, Lab
from blocktui.lab.images import backing_file, check, compare, flatten_copy
from blocktui.lab.qmp_lab import QmpLab

from .cli_support import Cli
from .conftest import ALL_LAB_KINDS, MIB, DomainFactory, SaveContent, key_of
from .window_support import clusters, local_clusters, monitor, ours_in_qemu, pattern_reads, top_of, window_cli

pytestmark = pytest.mark.integration

__all__ = ["window_cli"]  # the fixture

QMP_ONLY = pytest.mark.parametrize("lab", ["qmp"], indirect=True)
LIBVIRT_ONLY = pytest.mark.parametrize("lab", ["libvirt"], indirect=True)


# -- the command line, on a QMP lab of its own ---------------------------------------------------


@pytest.mark.timeout(300)
def test_cli_window_copies_exactly_its_clusters(window_cli: Cli, tmp_path: Path) -> None:
    top = top_of(window_cli, "vda")
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
    assert ours_in_qemu(spare) == ([], [], False)

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
    top = top_of(window_cli, "vda")
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
    lab.flush(disk.domain)
    assert not local_clusters(disk.top) & clusters(22 * MIB, 64 * 1024)  # still in the backing chain
    # Slow: the reader takes about 24 s to reach 22 MiB, the write below takes well under that.
    plan = engine.add_stream(key, bandwidth=256 * 1024, window=Window(16 * MIB, 8 * MIB))
    engine.run_until(lambda: (view := session.job(key)) is not None and view.cur > 0, timeout=60)
    # The guest writes near the window's end, before the reader gets there. HMP's qemu-io replies
    # nothing when the write worked ("Error: ..." when not); its own output goes to QEMU's stdout.
    assert _hmp(lab, disk.domain, 'qemu-io vda "write -P 0x5a 22M 64k"').strip() == ""
    lab.flush(disk.domain)
    assert pattern_reads(disk.top, 0x5A, 22 * MIB, 64 * 1024)  # it landed in the overlay
    assert clusters(22 * MIB, 64 * 1024) <= local_clusters(disk.top)
    # Progress only grows: read now, it bounds where the reader was when the write landed.
    (running,) = [job for job in session.list_jobs() if job.key == key]
    assert running.state is JobState.ACTIVE and running.cur < 6 * MIB  # 16 MiB + cur: before 22 MiB
    engine.run_until(lambda: plan.status is PlanStatus.DONE, timeout=240)

    entry = journal.get(plan.entry_id)
    assert entry is not None and entry.status == "completed" and entry.kind == "window"
    lab.flush(disk.domain)
    assert pattern_reads(disk.top, 0x5A, 22 * MIB, 64 * 1024)  # copy-on-read did not overwrite it
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
    assert ours_in_qemu(_spare(lab, disk.domain)) == ([], [], False)
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
        assert ours_in_qemu(_spare(lab, disk.domain)) == ([], [], False)
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
    assert ours_in_qemu(_spare(lab, disk.domain)) == ([], [], False)


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
