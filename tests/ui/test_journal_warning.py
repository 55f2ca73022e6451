"""The dashboard when its journal cannot be written: one warning, and the dashboard goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ui_support import SIZE, close_scenario, make_scenario, still_app, wait_for

from blocktui.ui.app import BlocktuiApp


def _toasts(app: BlocktuiApp) -> list[str]:
    return [str(toast.render()) for toast in app.screen.query("Toast")]


async def test_a_journal_kept_in_memory_is_said_once_and_the_dashboard_goes_on(tmp_path: Path) -> None:
    blocked = tmp_path / "state"
    blocked.write_text("a file where the state directory should be")
    scenario = make_scenario(journal_dir=blocked)
    try:
        assert scenario.planner.journal.warning is not None
        app = still_app(scenario)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await wait_for(pilot, lambda: any("job journal" in text for text in _toasts(app)))
            (said,) = [text for text in _toasts(app) if "job journal" in text]
            assert str(blocked) in said and "in memory" in said
            # A journal that fails later says so from whichever thread wrote to it.
            journal = scenario.planner.journal
            assert journal.on_warning is not None
            await asyncio.to_thread(journal.on_warning, "cannot write the job journal (later)")
            await wait_for(pilot, lambda: any("(later)" in text for text in _toasts(app)))
            assert app.is_running
    finally:
        close_scenario(scenario)
