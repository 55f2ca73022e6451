"""Live updates repaint in place: the tree keeps its nodes, the jobs table touches only what changed."""

from __future__ import annotations

from dataclasses import replace

from rich.style import Style
from textual.widgets import Static
from textual.widgets.tree import TreeNode
from ui_support import SIZE, Scenario, job_state, screen_text, select_disk, settle, still_app

from blocktui.core.model import JobKey, JobState
from blocktui.core.views import JobView
from blocktui.ui.app import BlocktuiApp
from blocktui.ui.format import host_labels
from blocktui.ui.screens.help import HelpScreen
from blocktui.ui.widgets.detail import DetailPane, describe
from blocktui.ui.widgets.domain_tree import DomainTree, Place
from blocktui.ui.widgets.jobs_table import ETA_EVERY, JobsTable, row_key
from blocktui.ui.widgets.keys_bar import KeysBar


def tree_nodes(app: BlocktuiApp) -> dict[Place, TreeNode[Place]]:
    """Every node of the domain tree, by the place it stands for."""
    found: dict[Place, TreeNode[Place]] = {}
    pending = list(app.main.query_one(DomainTree).root.children)
    while pending:
        node = pending.pop()
        if node.data is not None:
            found[node.data] = node
        pending.extend(node.children)
    return found


def line_with(app: BlocktuiApp, *parts: str) -> str:
    """The one screen line that holds all these parts."""
    lines = [line for line in screen_text(app) if all(part in line for part in parts)]
    assert len(lines) == 1, lines
    return lines[0]


async def test_a_finished_job_relabels_its_disk_in_place(scenario: Scenario) -> None:
    alpha = scenario.alpha
    key = JobKey(alpha.uri, "web01", "vda")
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = app.main.query_one(DomainTree)
        # The user folds db01 and points at web01/vdb; web01/vda's job is running.
        db01 = tree.node_at(Place(alpha.uri, "db01"))
        assert db01 is not None
        db01.collapse()
        select_disk(app, alpha.uri, "web01", "vdb")
        await pilot.pause()
        before = tree_nodes(app)
        assert "▶ vda  web01-top.qcow2  3 layers" in line_with(app, "web01-top.qcow2")

        # The job completes: its state and the disk's chain change.
        alpha.advance(600)
        scenario.clock.now += 600
        scenario.session.step()  # the outcome, at once
        scenario.session.step()  # then the poll that reads the new chain
        await settle(pilot)

        assert job_state(app, key) == "completed"
        after = tree_nodes(app)
        assert after.keys() == before.keys()
        assert all(after[place] is before[place] for place in before)  # relabelled, not rebuilt
        line = line_with(app, "web01-top.qcow2")
        assert "▶" not in line and "●" not in line  # nothing left to stream
        assert "vda  web01-top.qcow2  1 layer" in line
        assert tree.selected == Place(alpha.uri, "web01", "vdb")  # the cursor stayed
        assert not after[Place(alpha.uri, "db01")].is_expanded  # and so did the fold
        assert not any("db01-top.qcow2" in line for line in screen_text(app))


async def test_the_filter_hides_and_brings_back_nodes_without_a_rebuild(scenario: Scenario) -> None:
    beta = scenario.beta
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = tree_nodes(app)
        await pilot.press("slash", *"cache")
        await pilot.pause()
        shown = tree_nodes(app)
        assert {place.domain for place in shown if place.domain} == {"cache"}
        assert shown[Place(beta.uri, "cache", "vda")] is before[Place(beta.uri, "cache", "vda")]
        await pilot.press("escape")
        await pilot.pause()
        again = tree_nodes(app)
        assert again.keys() == before.keys()
        # The domains the filter hid come back in their places, the others never left.
        order = [node.data for node in app.main.query_one(DomainTree).root.children[1].children]
        assert order == [node.data for node in before[Place(beta.uri)].children]
        assert again[Place(beta.uri, "cache")] is before[Place(beta.uri, "cache")]


def running_view(scenario: Scenario) -> JobView:
    job = scenario.session.job(JobKey(scenario.alpha.uri, "web01", "vda"))
    assert job is not None and job.eta is not None
    return job


async def test_eta_moves_once_a_second_while_the_rate_follows_every_poll(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = JobsTable(id="probe")
        await app.main.mount(table)
        job = running_view(scenario)
        labels = {scenario.alpha.uri: "alpha"}
        table.sync([job], labels, now=100.0)
        key = row_key(job.key)
        shown_eta = str(table.get_cell(key, "eta")).strip()

        # Half a second later the rate and the countdown moved: the rate shows, the ETA waits.
        faster = replace(job, rate=2 * (job.rate or 1), eta=(job.eta or 0) / 2)
        table.sync([faster], labels, now=100.0 + ETA_EVERY / 2)
        assert str(table.get_cell(key, "rate")).strip() != "—"
        assert str(table.get_cell(key, "eta")).strip() == shown_eta
        assert str(table.get_cell(key, "host")).strip() == "alpha"

        # A second after the last ETA was drawn, the new one shows.
        table.sync([faster], labels, now=100.0 + ETA_EVERY)
        assert str(table.get_cell(key, "eta")).strip() != shown_eta


async def test_detail_numbers_repaint_once_a_second_but_a_new_state_at_once(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = app.main.query_one(DetailPane)
        job = running_view(scenario)
        pane.show("alpha", None, None, job, now=50.0)
        first = str(pane.query_one("#detail-text").render())
        moved = replace(job, cur=job.cur + 2**30, elapsed=job.elapsed + 0.5)
        pane.show("alpha", None, None, moved, now=50.5)
        assert str(pane.query_one("#detail-text").render()) == first
        pane.show("alpha", None, None, moved, now=51.0)
        assert str(pane.query_one("#detail-text").render()) != first
        cancelled = replace(moved, state=JobState.CANCELLED)
        pane.show("alpha", None, None, cancelled, now=51.1)
        assert "cancelled" in str(pane.query_one("#detail-text").render())


async def test_a_label_that_grows_widens_the_tree_at_once(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = app.main.query_one(DomainTree)
        snapshot = scenario.planner.snapshot()
        tail = "-END.qcow2"
        long_name = "x" * 150 + tail
        domains = [
            replace(
                domain, disks=(replace(domain.disks[0], source=f"/images/{long_name}"), *domain.disks[1:])
            )
            if domain.name == "web01"
            else domain
            for domain in snapshot.domains
        ]
        labels = host_labels([info.uri for info in snapshot.hosts])
        tree.show(snapshot.hosts, labels, domains, {})
        # Relabelled in place (no rebuild), yet the scrollable extent takes in the whole new label.
        assert tree.virtual_size.width >= len(long_name) + 2 * tree.guide_depth
        tree.scroll_to(x=tree.max_scroll_x, animate=False)
        await pilot.pause()
        assert any(tail in line for line in screen_text(app))


async def test_the_detail_text_takes_the_height_its_lines_need_when_they_change(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = app.main.query_one(DetailPane)
        text = pane.query_one("#detail-text", Static)
        job = running_view(scenario)

        def lines_of(view: JobView) -> int:
            return len(describe("alpha", None, None, view).wrap(app.console, text.content_size.width))

        pane.show("alpha", None, None, job, now=50.0)
        await pilot.pause()
        assert text.size.height == lines_of(job)
        # A reason long enough to wrap: every line of it is on the screen.
        failed = replace(job, state=JobState.FAILED, error="Input/output error " * 12)
        pane.show("alpha", None, None, failed, now=51.0)
        await pilot.pause()
        assert text.size.height == lines_of(failed) > lines_of(job)
        # The same lines, other numbers: the text changes in the same height.
        later = replace(failed, cur=failed.cur + 2**30)
        pane.show("alpha", None, None, later, now=52.0)
        await pilot.pause()
        assert str(text.render()) != str(describe("alpha", None, None, failed))
        assert text.size.height == lines_of(later)


async def test_the_keys_bar_dims_what_does_not_apply_to_the_selection(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        bar = app.main.query_one(KeysBar)

        def abort_dim() -> bool:
            line = bar.render()
            start = line.plain.index(" Abort")
            styles = [Style.parse(str(span.style)) for span in line.spans if span.start <= start < span.end]
            return any(style.dim for style in styles)

        select_disk(app, scenario.alpha.uri, "db01", "vdb")  # no job: nothing to abort
        await pilot.pause()
        assert abort_dim()
        select_disk(app, scenario.alpha.uri, "web01", "vda")  # a running pull
        await pilot.pause()
        assert not abort_dim()


async def test_a_click_on_a_key_in_the_keys_bar_presses_it(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        select_disk(app, scenario.alpha.uri, "db01", "vdb")  # streamable, no job
        await pilot.pause()
        line = app.main.query_one(KeysBar).render().plain
        assert await pilot.click(KeysBar, offset=(line.index("?"), 0))
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
