"""A pull that fails part-way says why and how far it got, and leaves a sound disk (real QEMU, full disks).

Each overlay here lives on a small tmpfs of its own, so the pull runs out of space for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from guest_writer import BOOT_SECTOR

from blocktui.backends.libvirt import LibvirtBackend
from blocktui.core.model import DomainState, JobKey, JobState
from blocktui.engine.facade import Engine
from blocktui.engine.journal import Entry, Journal
from blocktui.engine.session import Session
from blocktui.lab import DiskSpec, Lab, LabDisk
from blocktui.lab.images import backing_file, check, compare
from blocktui.ui.app import BlocktuiApp
from blocktui.ui.screens.confirm import ConfirmScreen
from blocktui.ui.screens.stream_dialog import StreamDialog
from blocktui.ui.widgets.domain_tree import DomainTree, Place
from blocktui.ui.widgets.jobs_table import JobsTable, row_key

from .conftest import MIB, DomainFactory, SaveContent, assert_streamed, key_of, until
from .mounts import SmallFs, tmpfs

pytestmark = pytest.mark.integration

#: The overlay's filesystem: room for its own first MiB and about 10 MiB of a 48 MiB pull.
ROOM = 12 * MIB
SIZE = 48 * MIB

OnSmallFs = Callable[..., tuple[LabDisk, SmallFs]]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    """A small tmpfs for one test's overlays, unmounted once the test's domains are gone."""
    with tmpfs(tmp_path / "small", ROOM) as small:
        yield small


@pytest.fixture
def on_small_fs(small_fs: SmallFs, make_domain: DomainFactory) -> OnSmallFs:
    """Make a one-disk domain whose overlay sits on ``small_fs``.

    Set up after ``small_fs``, so ``make_domain`` removes the domains before the tmpfs goes.
    """

    def make(size: int = SIZE, room: int = ROOM, boot_code: bytes | None = None) -> tuple[LabDisk, SmallFs]:
        small_fs.resize(room)
        (disk,) = make_domain([DiskSpec("vda", size, 2, overlay_dir=small_fs.path, boot_code=boot_code)])
        return disk, small_fs

    return make


def _pull(planner: Engine, key: JobKey, bandwidth: int = 0) -> Entry:
    """Stream ``key`` through the planner until its plan ends; the plan's journal entry."""
    plan = planner.add_stream(key, bandwidth=bandwidth)
    planner.run_until(planner.idle, timeout=120)
    entry = planner.journal.get(plan.entry_id)
    assert entry is not None
    return entry


def test_a_pull_out_of_space_fails_saying_why_and_how_far_and_the_disk_stays_sound(
    lab: Lab, on_small_fs: OnSmallFs, save_content: SaveContent, session: Session, journal: Journal
) -> None:
    disk, small = on_small_fs()
    saved = save_content(disk)
    session.refresh_domains()
    planner = Engine(session, journal)
    key = key_of(session, disk)
    entry = _pull(planner, key, bandwidth=8 * MIB)
    assert entry.status == "failed"
    assert entry.error is not None and "no space left on device" in entry.error.lower()
    # Progress stopped where the filesystem ran out (its own first MiB counts as done).
    assert 0 < entry.bytes_done <= ROOM + 2 * MIB
    view = session.job(key)
    assert view is not None and view.state is JobState.FAILED
    assert view.error == entry.error and view.cur == entry.bytes_done

    # Nothing lost: the overlay still reads through its chain as before, and is consistent.
    lab.flush(disk.domain)
    assert backing_file(disk.top) == str(disk.backing[0])
    assert check(disk.top)
    assert compare(disk.top, saved)

    # Space freed: a new pull passes over what was copied and completes.
    small.resize(4 * SIZE)
    done = _pull(planner, key)
    assert done.status == "completed", done
    assert_streamed(lab, disk, saved)


def test_a_guest_paused_by_qemu_on_a_full_overlay_is_reported_and_left_paused(
    lab: Lab, on_small_fs: OnSmallFs, session: Session, journal: Journal
) -> None:
    if lab.kind != "libvirt":
        pytest.skip("the QMP lab's QEMUs run no guest to write to its disks")
    # The guest writes to its disk without end once its firmware has booted (seconds after the
    # start), far faster than the pull: it fills the overlay's filesystem, and QEMU's default write
    # error policy (enospc) pauses the domain; the pull's next write fails too.
    disk, small = on_small_fs(size=4 * SIZE, room=2 * ROOM, boot_code=BOOT_SECTOR)
    session.refresh_domains()
    planner = Engine(session, journal)
    key = key_of(session, disk)
    entry = _pull(planner, key, bandwidth=1 * MIB)
    assert entry.status == "failed"
    assert entry.error is not None and entry.error.startswith("no space left on device")
    assert "paused the domain" in entry.error and f"virsh resume {disk.domain}" in entry.error
    assert 0 < entry.bytes_done <= 4 * SIZE
    backend = session.backend(key.host)
    assert backend.get_domain(disk.domain).state is DomainState.PAUSED  # blocktui left it paused

    # The operator frees space and resumes the domain; a new pull completes.
    small.resize(8 * SIZE)
    own = lab.backend()
    try:
        assert isinstance(own, LibvirtBackend)
        own.libvirt_connection().lookupByName(disk.domain).resume()
    finally:
        own.close()
    done = _pull(planner, key)
    assert done.status == "completed", done
    lab.destroy_domain(disk.domain)  # the guest was still writing: the image is closed here
    assert backing_file(disk.top) is None
    assert check(disk.top)


def _cell(app: BlocktuiApp, key: JobKey, column: str) -> str:
    try:
        return str(app.main.query_one(JobsTable).get_cell(row_key(key), column)).strip()
    except Exception:  # the row is not there yet
        return ""


async def test_the_dashboard_shows_why_a_pull_failed(
    lab: Lab, on_small_fs: OnSmallFs, tmp_path: Path
) -> None:
    disk, _small = on_small_fs()
    session = Session([lab.backend()])
    app = BlocktuiApp(Engine(session, Journal(tmp_path / "dashboard.sqlite3")))
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            key = JobKey(session.hosts[0], disk.domain, disk.target)
            tree = app.main.query_one(DomainTree)
            await until(pilot, lambda: tree.select_place(Place(key.host, key.domain, key.disk)))
            tree.focus()
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, StreamDialog))
            await until(pilot, lambda: "does not fit" in str(app.screen.query_one("#estimate").render()))
            await pilot.press(*"8M", "enter")
            # The pre-flight saw it: 48 MiB to copy, 12 MiB free. Started anyway, it fails saying why.
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: _cell(app, key, "state") == "failed", timeout=90)
            assert "no space left on device" in _cell(app, key, "why").lower()
            app.main.stop_polling()
    finally:
        await asyncio.to_thread(session.close)
