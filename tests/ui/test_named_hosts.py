"""Two named hosts and a remapped key from a config file, as ``blocktui --host a --host b`` opens them."""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_support import SIZE, wait_for

from blocktui.cli.commands import build_parser
from blocktui.cli.hosts import engine_for
from blocktui.core.config import parse_config
from blocktui.ui.app import BlocktuiApp
from blocktui.ui.screens.help import HelpScreen
from blocktui.ui.widgets.hosts_bar import HostsBar


async def test_two_named_hosts_and_a_remapped_key_in_the_dashboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine opens the default journal: a private one, never the operator's.
    monkeypatch.setenv("BLOCKTUI_STATE_DIR", str(tmp_path / "state"))
    # Two real backends that need no daemon: libvirt's own test driver, and a folder of QMP sockets.
    (tmp_path / "qmp").mkdir()
    config = parse_config(
        f"""
[keys]
help = "f1"

[hosts.testing]
uri = "test:///default"
max_active = 2

[hosts.vms]
qmp_dir = "{tmp_path / "qmp"}"
budget = "100M"
"""
    )
    args = build_parser().parse_args(["--host", "testing", "--host", "vms"])
    with engine_for(args, config, connect=False, bounded=False) as engine:
        app = BlocktuiApp(engine, settings=config)
        try:
            async with app.run_test(size=SIZE) as pilot:
                bar = app.main.query_one(HostsBar)
                # Both hosts in the header, each with the queue and budget the file gives it.
                await wait_for(pilot, lambda: "connected" in str(bar.render()).split("qmp")[-1])
                header = str(bar.render())
                assert "default connected (max 2 " in header
                assert "qmp connected (max ∞ · budget 100" in header
                await pilot.press("question_mark")  # remapped: no longer the help key
                await pilot.pause()
                assert not isinstance(app.screen, HelpScreen)
                await pilot.press("f1")
                await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
                app.main.stop_polling()
        finally:
            engine.close(timeout=5)
