"""The dashboard's plans: chunked streams, pause as a checkpoint, the host queue and budget, history.

Streams run through the real Planner over the deterministic fake (progress moves only when a test
calls ``advance``), with the journal in the test's own folder. The guard is off here: its timing
rules are tested against real QEMU; these tests are about what the screen shows and sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_hosts import CLICK_DOMAIN
from fake_backend import GiB
from textual.widgets import Button, DataTable, Static
from textual.widgets.data_table import CellDoesNotExist
from ui_support import (
    SIZE,
    Scenario,
    close_scenario,
    job_state,
    live_app,
    make_scenario,
    screen_text,
    select_disk,
    settle,
    still_app,
    wait_for,
)

from blocktui.core.model import JobKey, JobState
from blocktui.core.scheduler import HostPolicy
from blocktui.ui.app import BlocktuiApp
from blocktui.ui.screens.history import HistoryScreen
from blocktui.ui.screens.policy import PolicyDialog
from blocktui.ui.screens.stream_dialog import StreamDialog
from blocktui.ui.widgets.hosts_bar import HostsBar
from blocktui.ui.widgets.jobs_table import JobsTable, row_key


@pytest.fixture
def unguarded(tmp_path: Path) -> Iterator[Scenario]:
    scenario = make_scenario(journal_dir=tmp_path, guard=False)
    yield scenario
    close_scenario(scenario)


def chunk_cell(app: BlocktuiApp, key: JobKey) -> str | None:
    try:
        return str(app.main.query_one(JobsTable).get_cell(row_key(key), "chunk")).strip()
    except CellDoesNotExist:
        return None


def header(app: BlocktuiApp) -> str:
    return str(app.main.query_one(HostsBar).render())


async def test_chunked_stream_from_the_dialog_stops_at_each_boundary(unguarded: Scenario) -> None:
    alpha = unguarded.alpha
    key = JobKey(alpha.uri, "web01", "vdb")  # its earlier job failed: the chain is still there
    app = live_app(unguarded)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main.query_one(JobsTable).row_count > 0)
        select_disk(app, alpha.uri, "web01", "vdb")
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, StreamDialog)
        await pilot.press("tab", *"4G", "enter")  # the fake's pulls are 10 GiB: chunks 4G, 4G, 2G
        await wait_for(pilot, lambda: job_state(app, key) == "active" and chunk_cell(app, key) == "1/3")

        alpha.advance(1.0)  # to the first boundary: the planner holds, then stops at a checkpoint
        await wait_for(pilot, lambda: chunk_cell(app, key) == "2/3" and job_state(app, key) == "active")
        job = alpha.job("web01", "vdb")
        assert job is not None and job.cur == 4 * GiB  # the next pull passes over the first chunk
        alpha.advance(1.0)
        await wait_for(pilot, lambda: chunk_cell(app, key) == "3/3" and job_state(app, key) == "active")
        alpha.advance(60.0)
        await wait_for(pilot, lambda: job_state(app, key) == "completed")
        assert chunk_cell(app, key) == ""

    (entry,) = [e for e in unguarded.planner.journal.history() if e.disk == "vdb"]
    assert entry.status == "completed"
    assert [c.boundary for c in entry.checkpoints] == [4 * GiB, 8 * GiB, 10 * GiB]
    assert alpha.calls.count("start_stream") == 3 and alpha.calls.count("abort") == 2


async def test_chunk_size_is_refused_inline(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        select_disk(app, scenario.alpha.uri, "web01", "vdb")
        await pilot.press("s")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, StreamDialog)
        hint = str(dialog.query_one("#chunk-error", Static).render())
        assert "checkpoint" in hint  # explained before anything is typed
        await pilot.press("tab", *"4X")
        await pilot.pause()
        assert "not understood" in str(dialog.query_one("#chunk-error", Static).render())
        assert dialog.query_one("#start", Button).disabled
        await pilot.press("enter")  # Enter must not queue anything either
        await pilot.pause()
        assert app.screen is dialog
        await pilot.press("backspace", "backspace", "0")
        await pilot.pause()
        assert "larger than 0" in str(dialog.query_one("#chunk-error", Static).render())
        await pilot.press("backspace", *"1G", "tab", *"-1")
        await pilot.pause()
        assert "gap" in str(dialog.query_one("#chunk-error", Static).render())
        assert dialog.query_one("#start", Button).disabled
        await pilot.press("backspace", "backspace", "5")
        await pilot.pause()
        assert not dialog.query_one("#start", Button).disabled
    assert not scenario.planner.plans()
    assert "start_stream" not in scenario.alpha.calls


async def test_pause_without_backend_pause_is_a_checkpoint_and_resume_goes_on(unguarded: Scenario) -> None:
    alpha = unguarded.alpha
    key = JobKey(alpha.uri, "web01", "vda")  # started elsewhere; alpha cannot hold a job
    app = live_app(unguarded)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: job_state(app, key) == "active")
        table = app.main.query_one(JobsTable)
        table.focus()
        await pilot.pause()
        table.select(key)
        assert app.main.check_action("pause", ()) is True
        before = alpha.job("web01", "vda")
        assert before is not None
        copied = before.cur
        await pilot.press("p")
        await wait_for(pilot, lambda: job_state(app, key) == "paused (checkpoint)")
        assert alpha.job("web01", "vda") is None  # aborted: what it copied stays
        assert "p stops at a checkpoint" in "\n".join(screen_text(app))
        await pilot.press("p")
        await wait_for(pilot, lambda: job_state(app, key) == "active")
        job = alpha.job("web01", "vda")
        assert job is not None and job.cur == copied and job.end == 20 * GiB  # on from the checkpoint
        assert job.state is JobState.ACTIVE
        assert job.bandwidth == 100 * 1024**2  # its own limit, kept across the checkpoint


async def test_stream_all_with_max_active_one_queues_the_rest(tmp_path: Path) -> None:
    scenario = make_scenario(journal_dir=tmp_path, guard=False, policy=HostPolicy(max_active=1))
    beta = scenario.beta
    first, second = JobKey(beta.uri, CLICK_DOMAIN, "vda"), JobKey(beta.uri, "mail", "sda")
    app = live_app(scenario)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "max 1" in header(app))
            for key in (first, second):
                select_disk(app, key.host, key.domain, key.disk)
                await pilot.press("s")
                await pilot.pause()
                await pilot.press("enter")
                await pilot.pause()
            await wait_for(pilot, lambda: job_state(app, first) == "active")
            await wait_for(pilot, lambda: job_state(app, second) == "queued")
            beta.advance(60.0)  # the first completes: the queue lets the second run
            await wait_for(pilot, lambda: job_state(app, second) == "active")
            assert job_state(app, first) == "completed"
    finally:
        close_scenario(scenario)


async def test_max_active_and_budget_change_the_header(scenario: Scenario) -> None:
    alpha = scenario.alpha
    app = live_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "guard on" in header(app))
        assert "max ∞ · budget ∞" in header(app)
        select_disk(app, alpha.uri, "web01", "vda")
        await pilot.press("m")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, PolicyDialog)
        await pilot.press("0")
        await pilot.pause()
        assert "1 or more" in str(dialog.query_one("#value-error", Static).render())
        assert dialog.query_one("#set", Button).disabled
        await pilot.press("backspace", "2", "enter")
        await wait_for(pilot, lambda: scenario.planner.policy(alpha.uri).max_active == 2)
        await pilot.press("b")
        await pilot.pause()
        await pilot.press(*"100M", "enter")
        await wait_for(pilot, lambda: scenario.planner.policy(alpha.uri).budget == 100 * 1024**2)
        await wait_for(pilot, lambda: "max 2 · budget 100M/s · guard on" in header(app))
        # Only the selected host changed.
        assert scenario.planner.policy(scenario.beta.uri) == HostPolicy()


async def test_history_lists_a_finished_job(unguarded: Scenario) -> None:
    beta = unguarded.beta
    key = JobKey(beta.uri, CLICK_DOMAIN, "vda")
    app = live_app(unguarded)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main.query_one(JobsTable).row_count > 0)
        select_disk(app, beta.uri, CLICK_DOMAIN, "vda")
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: job_state(app, key) == "active")
        beta.advance(60.0)
        await wait_for(pilot, lambda: job_state(app, key) == "completed")
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        table = app.screen.query_one("#history", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        row = [str(cell).strip() for cell in table.get_row_at(0)]
        assert row[:5] == ["beta", CLICK_DOMAIN, "vda", "pull", "completed"]  # markup shown as text
        assert row[5] == "10G"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main)
