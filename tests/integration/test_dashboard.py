"""The dashboard driven by keys against the real lab: streams that really run, on real QEMU."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Static

from blocktui.core.model import JobKey
from blocktui.core.units import format_duration, format_size
from blocktui.engine.facade import Engine
from blocktui.engine.journal import Journal
from blocktui.engine.session import Session
from blocktui.lab import DiskSpec, Lab, LabDisk
from blocktui.lab.images import backing_file, check, compare
from blocktui.ui.app import BlocktuiApp
from blocktui.ui.screens.stream_dialog import StreamDialog
from blocktui.ui.widgets.domain_tree import DomainTree, Place
from blocktui.ui.widgets.jobs_table import CellDoesNotExist, JobsTable, row_key

from .conftest import DomainFactory, SaveContent, until

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
SIZE = (120, 40)


@pytest.fixture
def dashboard(lab: Lab, tmp_path: Path) -> Iterator[Callable[[bool], BlocktuiApp]]:
    """Build dashboards on the lab (read-only or not); their sessions close afterwards."""
    sessions: list[Session] = []

    def build(readonly: bool = False) -> BlocktuiApp:
        session = Session([lab.backend(readonly=readonly)], readonly=readonly)
        sessions.append(session)
        return BlocktuiApp(Engine(session, Journal(tmp_path / f"journal-{len(sessions)}.sqlite3")))

    yield build
    for session in sessions:
        session.close()


def _state(app: BlocktuiApp, key: JobKey) -> str | None:
    try:
        return str(app.main.query_one(JobsTable).get_cell(row_key(key), "state")).strip()
    except CellDoesNotExist:
        return None


async def _select_disk(pilot: Pilot[int], app: BlocktuiApp, key: JobKey) -> None:
    tree = app.main.query_one(DomainTree)
    place = Place(key.host, key.domain, key.disk)
    await until(pilot, lambda: tree.select_place(place), timeout=60.0)
    tree.focus()
    await pilot.pause()


def _key(app: BlocktuiApp, disk: LabDisk) -> JobKey:
    return JobKey(app.engine.hosts[0], disk.domain, disk.target)


async def test_stream_from_the_keys_completes_and_abort_cancels(
    dashboard: Callable[[bool], BlocktuiApp],
    make_domain: DomainFactory,
    lab: Lab,
    save_content: SaveContent,
) -> None:
    vda, vdb = make_domain([DiskSpec("vda", 64 * MIB, 3), DiskSpec("vdb", 96 * MIB, 2)])
    saved = {d.target: save_content(d) for d in (vda, vdb)}
    app = dashboard(False)
    async with app.run_test(size=SIZE) as pilot:
        first, second = _key(app, vda), _key(app, vdb)
        await _select_disk(pilot, app, first)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StreamDialog))
        await pilot.press(*"64M", "enter")
        await until(pilot, lambda: _state(app, first) is not None)
        await until(pilot, lambda: _state(app, first) == "completed")

        await _select_disk(pilot, app, second)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StreamDialog))
        await pilot.press(*"2M", "enter")
        await until(pilot, lambda: _state(app, second) == "active")
        table = app.main.query_one(JobsTable)
        table.focus()
        table.select(second)
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        assert vdb.domain in str(app.screen.query_one("#question").render())
        await pilot.press("y")
        await until(pilot, lambda: _state(app, second) == "cancelled")
        app.main.stop_polling()

    await asyncio.to_thread(lab.flush, vda.domain)  # the QMP lab runs its own event loop
    assert backing_file(vda.top) is None
    assert compare(vda.top, saved["vda"])
    assert backing_file(vdb.top) is not None  # cancelled part-way: still on its chain
    assert check(vdb.top)
    assert compare(vdb.top, saved["vdb"])


async def test_bad_bandwidth_is_refused_in_the_dialog(
    dashboard: Callable[[bool], BlocktuiApp], make_domain: DomainFactory
) -> None:
    (vda,) = make_domain([DiskSpec("vda", 32 * MIB, 2)])
    app = dashboard(False)
    async with app.run_test(size=SIZE) as pilot:
        key = _key(app, vda)
        await _select_disk(pilot, app, key)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StreamDialog))
        await pilot.press(*"-5M")
        await pilot.pause()
        assert app.screen.query_one("#start", Button).disabled
        assert "not understood" in str(app.screen.query_one("#bandwidth-error").render())
        await pilot.press("enter")
        await pilot.pause(0.5)
        assert _state(app, key) is None
        app.main.stop_polling()
    assert backing_file(vda.top) is not None


async def test_readonly_dashboard_refuses_to_stream(
    dashboard: Callable[[bool], BlocktuiApp], make_domain: DomainFactory
) -> None:
    (vda,) = make_domain([DiskSpec("vda", 32 * MIB, 2)])
    app = dashboard(True)
    async with app.run_test(size=SIZE) as pilot:
        key = _key(app, vda)
        await _select_disk(pilot, app, key)
        assert not app.main.check_action("stream", ())
        await pilot.press("s")
        await pilot.pause(0.5)
        assert not isinstance(app.screen, StreamDialog)
        assert _state(app, key) is None
        app.main.stop_polling()
    assert backing_file(vda.top) is not None


async def test_the_stream_dialog_says_what_the_stream_copies_and_how_long_at_the_limit(
    dashboard: Callable[[bool], BlocktuiApp], make_domain: DomainFactory
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 64 * MIB, 3)])
    app = dashboard(False)
    async with app.run_test(size=SIZE) as pilot:
        key = _key(app, disk)
        await _select_disk(pilot, app, key)
        expected = (await asyncio.to_thread(app.engine.preflight, key)).bytes_to_copy
        assert expected is not None and expected > 32 * MIB
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StreamDialog))
        line = app.screen.query_one("#estimate", Static)
        await until(pilot, lambda: "copies" in str(line.render()))
        await pilot.press(*"8M")
        await until(pilot, lambda: "at 8.0 MiB/s" in str(line.render()))
        shown = str(line.render())
        assert format_size(expected) in shown and "fits" in shown
        assert format_duration(expected / (8 * MIB)) in shown
        await pilot.press("escape")
        app.main.stop_polling()
