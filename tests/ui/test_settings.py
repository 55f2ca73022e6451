"""The configuration file in the dashboard: a remapped key, stream defaults, and notice of a job's end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_support import SIZE, Scenario, close_scenario, make_scenario, select_disk, wait_for

from blocktui.core.config import parse_config
from blocktui.core.model import JobKey
from blocktui.ui.app import BlocktuiApp
from blocktui.ui.notices import Notifier
from blocktui.ui.screens.stream_dialog import StreamDialog
from blocktui.ui.widgets.bandwidth import BandwidthInput
from blocktui.ui.widgets.jobs_table import JobsTable

SETTINGS = """
[defaults]
bandwidth = "50M"
gap = 5

[keys]
stream = "x"
"""


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Scenario]:
    """The demo hosts with their jobs still running (none has ended yet)."""
    scenario = make_scenario(journal_dir=tmp_path, outcomes=False, guard=False)
    yield scenario
    close_scenario(scenario)


async def test_a_remapped_key_opens_the_stream_dialog_with_the_files_defaults(scenario: Scenario) -> None:
    app = BlocktuiApp(scenario.engine, settings=parse_config(SETTINGS))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main.query_one(JobsTable).row_count > 0)
        select_disk(app, scenario.alpha.uri, "web01", "vdb")
        await pilot.press("s")  # the old key no longer streams
        await pilot.pause()
        assert not isinstance(app.screen, StreamDialog)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, StreamDialog))
        assert app.screen.query_one("#bandwidth", BandwidthInput).value == "50.0 MiB/s"
        assert app.screen.query_one("#gap").value == "5"  # type: ignore[attr-defined]


async def test_a_job_that_ends_is_announced_on_the_desktop_when_asked(fresh: Scenario) -> None:
    app = BlocktuiApp(fresh.engine, settings=parse_config("[dashboard]\nbell = true\ndesktop = true\n"))
    said: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        app.main.notifier = Notifier(bell=True, desktop=True, write=said.append)
        key = JobKey(fresh.alpha.uri, "db01", "vda")
        await wait_for(pilot, lambda: app.main.state.jobs.get(key) is not None)
        fresh.alpha.advance(2)  # db01/vda completes (and web01/vdb fails)
        await wait_for(pilot, lambda: any("db01/vda: completed" in text for text in said))
    sequence = next(text for text in said if "db01/vda" in text)
    assert sequence.startswith("\x1b]777;notify;blocktui;") and sequence.endswith("\x1b\\")
    failed = next(text for text in said if "web01/vdb" in text)
    assert "No space left on device" in failed


def test_what_a_desktop_notification_says_cannot_steer_the_terminal() -> None:
    from blocktui.ui.notices import desktop_sequence

    sequence = desktop_sequence("blocktui", "evil\x1b]0;owned\x07;x/vda: completed")
    body = sequence.removeprefix("\x1b]777;notify;blocktui;").split("\x1b\\")[0]
    assert "\x1b" not in body and "\x07" not in body and ";" not in body
