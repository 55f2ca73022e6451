"""The detail pane's allocation strip: read off the UI thread, again only while a job copies."""

from __future__ import annotations

from ui_support import SIZE, Scenario, screen_text, select_disk, settle, still_app

from blocktui.ui.app import BlocktuiApp
from blocktui.ui.widgets.allocation import AllocationStrip


def strip_lines(app: BlocktuiApp) -> list[str]:
    """The strip as the screen shows it: its two lines, from the pane's side of the screen."""
    text = app.main.query_one("#detail-map", AllocationStrip).render().plain
    return text.splitlines()


def map_reads(scenario: Scenario) -> int:
    return scenario.alpha.calls.count("allocation_map")


async def test_a_disk_nothing_happens_to_is_read_once(scenario: Scenario) -> None:
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        select_disk(app, scenario.alpha.uri, "db01", "vdb")  # standalone, no job
        await settle(pilot)
        first = map_reads(scenario)
        for _ in range(5):
            scenario.clock.now += 10
            app.main.allocation.clock = scenario.clock
            scenario.session.step()
            await settle(pilot)

        assert map_reads(scenario) == first
        strip, legend = strip_lines(app)
        assert strip.endswith(" 100% local") and "▒" not in strip
        assert "█ local 7.5 GiB" in legend and "· unallocated 2.5 GiB" in legend
        assert any("100% local" in line for line in screen_text(app))


async def test_a_running_stream_is_read_again_every_few_seconds(scenario: Scenario) -> None:
    alpha = scenario.alpha
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        app.main.allocation.clock = scenario.clock
        await settle(pilot)
        select_disk(app, alpha.uri, "web01", "vda")  # pulling, 5 GiB of 20 GiB done
        await settle(pilot)
        reads, before = map_reads(scenario), strip_lines(app)[0]
        assert before.endswith("% local") and "▒" in before

        # A board within the cadence reads nothing new.
        scenario.clock.now += 1
        await settle(pilot)
        assert map_reads(scenario) == reads

        alpha.advance(40)  # 4 GiB more
        scenario.clock.now += 40
        scenario.session.step()
        await settle(pilot)
        assert map_reads(scenario) == reads + 1
        after = strip_lines(app)[0]
        assert after.count("█") > before.count("█")

        # The job completes: one more read shows the disk all local, then the reads stop.
        alpha.advance(600)
        scenario.clock.now += 600
        scenario.session.step()
        scenario.session.step()
        await settle(pilot)
        done = map_reads(scenario)
        assert "▒" not in strip_lines(app)[0] and strip_lines(app)[0].endswith(" 100% local")
        scenario.clock.now += 60
        await settle(pilot)
        assert map_reads(scenario) == done


async def test_a_host_that_cannot_map_says_why_in_one_plain_line(scenario: Scenario) -> None:
    scenario.alpha.supports_allocation_map = False
    app = still_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        select_disk(app, scenario.alpha.uri, "db01", "vdb")
        await settle(pilot)

        (line,) = strip_lines(app)
        assert line.startswith("data: db01/vdb: its image /var/lib/libvirt/images/")
        assert "is not a file on this machine" in line
