"""The dashboard driven like a person would, on the deterministic fake backend behind a real Session.

The fake proves what the screen does with what a host reports; it proves nothing about streaming.
"""

from __future__ import annotations

import pytest
from demo_hosts import CLICK_DOMAIN, HOSTILE_DISK_SOURCE, HOSTILE_DOMAIN
from fake_backend import MiB
from textual.command import CommandList
from textual.pilot import Pilot
from textual.widgets import Button, Static
from ui_support import (
    SIZE,
    Scenario,
    cell,
    hung,
    job_state,
    live_app,
    make_scenario,
    screen_text,
    select_disk,
    select_job,
    settle,
    still_app,
    wait_for,
)

from blocktui.core.model import Domain, DomainState, JobKey, JobState
from blocktui.ui.app import BlocktuiApp
from blocktui.ui.screens.confirm import ConfirmScreen
from blocktui.ui.screens.help import HelpScreen
from blocktui.ui.screens.main import MainScreen
from blocktui.ui.screens.stream_dialog import StreamDialog
from blocktui.ui.widgets.domain_tree import DomainTree, Place
from blocktui.ui.widgets.hosts_bar import HostsBar
from blocktui.ui.widgets.jobs_table import JobsTable


async def test_bad_bandwidth_is_refused_with_a_reason(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        select_disk(app, scenario.alpha.uri, "web01", "vdb")
        await pilot.press("s")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, StreamDialog)
        await pilot.press(*"12q")
        await pilot.pause()
        error = str(dialog.query_one("#bandwidth-error", Static).render())
        assert "not understood" in error
        assert dialog.query_one("#start", Button).disabled
        await pilot.press("enter")  # Enter in the field must not start anything either
        await pilot.pause()
        assert app.screen is dialog
        assert "start_stream" not in scenario.alpha.calls
        # Fixing the value enables Start again.
        await pilot.press("backspace", "M")
        await pilot.pause()
        assert not dialog.query_one("#start", Button).disabled
        assert str(dialog.query_one("#bandwidth-error", Static).render()) == ""


async def test_read_only_session_refuses_every_change() -> None:
    scenario = make_scenario(readonly=True)
    for backend in scenario.backends:
        backend.calls.clear()  # the scenario's own scripted abort happened before the app
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        mutating = (
            "abort",
            "faster",
            "slower",
            "limit",
            "stream",
            "stream_domain",
            "pause",
            "max_active",
            "budget",
        )
        for action in mutating:
            assert screen.check_action(action, ()) is None, action
        await pilot.press("a", "s", "S", "plus", "minus", "l", "p", "m", "b")
        await pilot.pause()
        assert app.screen is screen  # no dialog opened
        assert "read-only" in str(screen.query_one(HostsBar).render())
        # Clearing finished rows and reading the history change nothing on a host: still allowed.
        assert screen.check_action("clear_finished", ()) is True
        assert screen.check_action("history", ()) is True
    mutations = {"start_stream", "set_speed", "abort", "pause", "resume"}
    assert not mutations & {call for backend in scenario.backends for call in backend.calls}


async def test_hostile_names_render_as_inert_text(scenario: Scenario) -> None:
    beta = scenario.beta
    scenario.session.start_stream(beta.uri, HOSTILE_DOMAIN, "vd\x1bz")
    scenario.session.start_stream(beta.uri, CLICK_DOMAIN, "vda")
    scenario.session.step()
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select_job(pilot, app, JobKey(beta.uri, HOSTILE_DOMAIN, "vd\x1bz"))
        await pilot.pause()
        text = "\n".join(screen_text(app))
        for raw in ("\x1b", "\x9b", "\u202e"):
            assert raw not in text, repr(raw)
        assert "evil\\e[31mred\\x9b2J\\u202eexe.[/]" in text  # the detail pane, in full
        assert HOSTILE_DISK_SOURCE in text  # a markup-like path, shown literally

        # A name that is an action link in markup must be plain text: clicking it does nothing.
        await select_job(pilot, app, JobKey(beta.uri, CLICK_DOMAIN, "vda"))
        await pilot.pause()
        lines = screen_text(app)
        row = next(i for i, line in enumerate(lines) if "[@click=app.quit]click-me[/]" in line)
        column = lines[row].index("[@click=app.quit]")
        await pilot.click(offset=(column + 3, row))
        await pilot.pause()
        assert app.is_running
        assert app.return_code is None


async def test_stream_from_the_dialog_adds_a_row(scenario: Scenario) -> None:
    beta = scenario.beta
    key = JobKey(beta.uri, CLICK_DOMAIN, "vda")
    app = live_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main.query_one(JobsTable).row_count > 0)
        assert job_state(app, key) is None
        select_disk(app, beta.uri, CLICK_DOMAIN, "vda")
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, StreamDialog)
        await pilot.press(*"50M", "enter")
        await wait_for(pilot, lambda: job_state(app, key) == "active")
        job = beta.job(CLICK_DOMAIN, "vda")
        assert job is not None and job.bandwidth == 50 * MiB


async def test_abort_asks_then_cancels(scenario: Scenario) -> None:
    alpha = scenario.alpha
    key = JobKey(alpha.uri, "web01", "vda")
    app = live_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: job_state(app, key) == "active")
        await select_job(pilot, app, key)
        await pilot.press("a")
        await pilot.pause()
        confirm = app.screen
        assert isinstance(confirm, ConfirmScreen)
        question = str(confirm.query_one("#question", Static).render())
        assert "web01" in question and "vda" in question
        await pilot.press("y")
        await wait_for(pilot, lambda: job_state(app, key) == "cancelled")
        assert alpha.job("web01", "vda") is None


async def test_abort_can_be_declined(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")  # focus starts on "No"
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
    assert "abort" not in scenario.alpha.calls


async def test_limit_keys_double_and_halve(scenario: Scenario) -> None:
    alpha = scenario.alpha
    key = JobKey(alpha.uri, "web01", "vda")
    app = live_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: job_state(app, key) == "active")
        await select_job(pilot, app, key)
        job = alpha.job("web01", "vda")
        assert job is not None and job.bandwidth == 100 * MiB
        await pilot.press("plus")
        await wait_for(pilot, lambda: job.bandwidth == 200 * MiB)
        await pilot.press("minus")
        await wait_for(pilot, lambda: job.bandwidth == 100 * MiB)


async def test_pause_holds_in_place_where_the_backend_can(scenario: Scenario) -> None:
    app = live_app(scenario)
    alpha_key = JobKey(scenario.alpha.uri, "web01", "vda")
    beta_key = JobKey(scenario.beta.uri, "cache", "vda")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: job_state(app, beta_key) == "active")
        await select_job(pilot, app, alpha_key)
        assert app.main.check_action("pause", ()) is True  # a checkpoint there (tests in test_plans)
        await select_job(pilot, app, beta_key)
        assert app.main.check_action("pause", ()) is True
        await pilot.press("p")
        await wait_for(pilot, lambda: job_state(app, beta_key) == "paused")
        job = scenario.beta.job("cache", "vda")
        assert job is not None and job.state is JobState.PAUSED  # held in place, not aborted
        await pilot.press("p")
        await wait_for(pilot, lambda: job_state(app, beta_key) == "active")


async def test_clear_removes_finished_rows(scenario: Scenario) -> None:
    app = live_app(scenario)
    failed = JobKey(scenario.alpha.uri, "web01", "vdb")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: job_state(app, failed) == "failed")
        await pilot.press("c")
        await wait_for(pilot, lambda: job_state(app, failed) is None)
        states = {job.state for job in scenario.session.snapshot().jobs}
        assert states == {JobState.ACTIVE}


async def test_a_hung_host_does_not_freeze_the_screen(scenario: Scenario) -> None:
    """A host that stops answering is marked as such, alone: keys still work, the other host's rows
    keep moving, and once it answers again its pending abort lands and the mark goes."""
    aborted = JobKey(scenario.alpha.uri, "web01", "vda")
    moving = JobKey(scenario.beta.uri, "cache", "vda")
    app = live_app(scenario)
    with hung(scenario.alpha):
        async with app.run_test(size=SIZE) as pilot:
            await hung_host_scenario(pilot, app, scenario, aborted, moving)


async def hung_host_scenario(
    pilot: Pilot[int], app: BlocktuiApp, scenario: Scenario, aborted: JobKey, moving: JobKey
) -> None:
    alpha, beta = scenario.alpha, scenario.beta
    await wait_for(pilot, lambda: job_state(app, aborted) == "active")
    await select_job(pilot, app, aborted)
    alpha.hang()
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.press("y")  # the abort blocks on alpha, in its own thread
    await pilot.press("question_mark")
    await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
    await pilot.press("escape")

    def alpha_marked() -> bool:
        scenario.clock.now += 0.25  # time passes for the session only when the test moves it
        return "alpha not answering" in host_line(app)

    await wait_for(pilot, alpha_marked)
    assert "beta not answering" not in host_line(app)
    before = cell(app, moving, "done")
    beta.advance(1.0)
    await wait_for(pilot, lambda: cell(app, moving, "done") != before)
    assert job_state(app, aborted) == "active"  # its abort is still waiting on alpha
    alpha.unhang()
    await wait_for(pilot, lambda: job_state(app, aborted) == "cancelled")
    await wait_for(pilot, lambda: "not answering" not in host_line(app))


def highlighted_command(app: BlocktuiApp) -> object:
    """The command palette's highlighted match (None before its search has found one)."""
    matches = app.screen.query(CommandList)
    if not matches:
        return None
    found = matches.first()
    return None if found.highlighted is None else found.get_option_at_index(found.highlighted).prompt


def host_line(app: BlocktuiApp) -> str:
    """The hosts bar as drawn."""
    return str(app.main.query_one(HostsBar).render())


async def test_command_palette_offers_actions_that_apply(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Abort")
        # The palette searches in the background: wait for its best match before choosing it.
        await wait_for(pilot, lambda: "Abort" in str(highlighted_command(app)))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))


async def test_an_unreadable_domain_is_its_own_row_and_the_others_stay(scenario: Scenario) -> None:
    alpha = scenario.alpha
    alpha.add_domain(
        Domain(alpha.uri, "bad\x1bname", DomainState.RUNNING, error="not well-formed (invalid token)")
    )
    scenario.session.refresh_domains()
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = "\n".join(screen_text(app))
        assert "bad\\ename running  unreadable: not we" in text  # the narrow tree cuts the reason
        assert "web01" in text and "db01" in text  # every readable domain is still there
        assert "\x1b" not in text


async def test_quit_says_jobs_keep_running(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    printed = capsys.readouterr()
    assert "2 running jobs continue on the hosts" in printed.out + printed.err


async def test_quit_with_one_running_job_says_it_in_the_singular(
    scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario.alpha.abort("web01", "vda")
    scenario.planner.step()
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
    printed = capsys.readouterr()
    assert "1 running job continues on the hosts" in printed.out + printed.err


async def test_filter_narrows_both_lists(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"cache")
        await pilot.pause()
        table = app.main.query_one(JobsTable)
        assert table.row_count == 1
        tree = app.main.query_one(DomainTree)
        domains = [node.data.domain for node in tree.root.children[1].children if node.data is not None]
        assert domains == ["cache"]
        assert len(tree.root.children[0].children) == 0  # alpha has nothing called "cache"
        await pilot.press("enter")  # back to the table, filter kept
        assert app.focused is table and table.row_count == 1
        await pilot.press("escape")  # no-op on the table: the filter field is still shown
        await pilot.press("slash", "escape")  # escape in the field clears it
        await pilot.pause()
        assert table.row_count == 5


async def test_enter_enlarges_the_detail_pane(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        assert app.main.maximized is app.main.query_one("#detail")
        await pilot.press("escape")
        assert app.main.maximized is None


async def test_stream_all_disks_of_a_domain(scenario: Scenario) -> None:
    beta = scenario.beta
    app = live_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main.query_one(JobsTable).row_count > 0)
        tree = app.main.query_one(DomainTree)
        tree.focus()
        assert tree.select_place(Place(beta.uri, CLICK_DOMAIN))
        await pilot.press("S")
        await pilot.pause()
        assert isinstance(app.screen, StreamDialog)
        await pilot.press("enter")
        key = JobKey(beta.uri, CLICK_DOMAIN, "vda")
        await wait_for(pilot, lambda: job_state(app, key) == "active")


async def test_exact_limit_from_the_limit_dialog(scenario: Scenario) -> None:
    beta = scenario.beta
    key = JobKey(beta.uri, "cache", "vda")
    app = live_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: job_state(app, key) == "active")
        await select_job(pilot, app, key)
        await pilot.press("l")
        await pilot.pause()
        await pilot.press(*"1.5G", "enter")
        job = beta.job("cache", "vda")
        assert job is not None
        await wait_for(pilot, lambda: job.bandwidth == 1536 * MiB)
