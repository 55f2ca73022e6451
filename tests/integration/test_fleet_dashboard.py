"""The dashboard over the fleet, read from a real terminal: one host's daemon frozen (SIGSTOP) is
marked within 2 s while the other hosts' rows keep moving; thawed, its job's true outcome shows.
A host that refuses the key is marked "needs authentication" and never prompts."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from blocktui.lab.images import backing_file, compare
from blocktui.lab.system import frozen, wait_for

from .fleet_support import Fleet
from .terminal import READ_EVERY, Terminal

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: What the issue promises: a host that stops answering is marked within this many seconds.
MARK_WITHIN = 2.0
MARK = re.compile(r"fleet-2 not answering for \d+s")
#: A jobs-table row: host label, domain, disk, kind, state ... done/total.
ROW = re.compile(r"^\W*(?P<host>\S+)\s+vm-2\s+vda\s+pull\s+(?P<state>\w+).*?\s(?P<done>\S+)/\S+\s")
MOVING = ("fleet-1", "fleet-3")


def _header(screen: str) -> str:
    return screen.splitlines()[0] if screen else ""


def _row(screen: str, host: str) -> tuple[str, str, str] | None:
    """(state, done, the whole line) of ``host``'s vm-2 row, or None while it has none."""
    for line in screen.splitlines():
        row = ROW.match(line)
        if row and row["host"] == host:
            return row["state"], row["done"], line
    return None


def _done(screen: str, host: str) -> str | None:
    row = _row(screen, host)
    return row[1] if row is not None and row[0] == "active" else None


def test_a_frozen_host_is_marked_while_the_others_move_and_its_outcome_shows_after_thaw(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.fresh("vm-2")
    saved = fleet.save("fleet-2", "vm-2", tmp_path)
    hosts = {name: fleet.status(name) for name in ("fleet-1", "fleet-2", "fleet-3")}
    # The others slow enough to run through the test (12 MiB at 256 KiB/s: 48 s); fleet-2 ends
    # (24 s) while its daemon is frozen, so only the host can tell how it went.
    for name, speed in (("fleet-1", "256K"), ("fleet-2", "512K"), ("fleet-3", "256K")):
        started = fleet.run("-c", hosts[name].uri, "stream", "vm-2", "vda", "--bandwidth", speed)
        assert started.returncode == 0, started.stderr
    # A user fleet-1 does not know, by its address: a host of its own in the header.
    address = f"nobody@127.0.1.1:{hosts['fleet-1'].port}"
    stranger = hosts["fleet-1"].uri.replace("blocktui-fleet-1@fleet-1", address)
    argv = [sys.executable, "-m", "blocktui", "--fleet", "-c", stranger]
    terminal = Terminal(argv, fleet.env, tmp_path, columns=200)
    try:
        terminal.wait_for(
            lambda s: (
                "127.0.1.1 needs authentication" in _header(s) and all(_done(s, name) for name in hosts)
            ),
            "every fleet row running and the stranger marked",
        )
        with frozen(hosts["fleet-2"].daemon_pid or 0):
            stopped = time.monotonic()
            screen, seen = terminal.wait_for(lambda s: bool(MARK.search(_header(s))), "the mark", timeout=10)
            # The mark was on screen by the end of the read that found it; reads come every READ_EVERY.
            assert seen - stopped <= MARK_WITHIN + READ_EVERY, f"marked after {seen - stopped:.2f} s"
            before = {name: _done(screen, name) for name in (*MOVING, "fleet-2")}
            screen, _ = terminal.wait_for(
                lambda s: (
                    all(_done(s, name) not in (None, before[name]) for name in MOVING)
                    and bool(MARK.search(_header(s)))
                ),
                "the other hosts' rows moving while fleet-2 is frozen",
                timeout=30,
            )
            assert _done(screen, "fleet-2") == before["fleet-2"]  # its last values, kept ...
            assert "stale" in (_row(screen, "fleet-2") or ("", "", ""))[2]  # ... and marked stale
            assert all("stale" not in (_row(screen, name) or ("", "", "stale"))[2] for name in MOVING)
            # An action on another host goes through meanwhile.
            faster = fleet.run("-c", hosts["fleet-3"].uri, "speed", "vm-2", "vda", "384K", timeout=30)
            assert faster.returncode == 0, faster.stderr
            # QEMU goes on without its daemon: wait until the stream has ended on the disk itself.
            top = fleet.top("fleet-2", "vm-2")
            wait_for(lambda: backing_file(top) is None, 60, "fleet-2's stream to end in QEMU")
        terminal.wait_for(
            lambda s: "fleet-2 connected" in _header(s) and (_row(s, "fleet-2") or ("",))[0] == "completed",
            "fleet-2 back, its job shown completed",
            timeout=60,
        )
    finally:
        terminal.close()
        for name in MOVING:
            fleet.run("-c", hosts[name].uri, "abort", "vm-2", "vda", timeout=30)
    fleet.lab.flush("fleet-2", "vm-2")
    assert compare(fleet.top("fleet-2", "vm-2"), saved)


def test_the_first_screen_shows_every_answering_host_while_one_is_frozen(
    fleet: Fleet, tmp_path: Path
) -> None:
    frozen_pid = fleet.status("fleet-2").daemon_pid or 0
    with frozen(frozen_pid):
        terminal = Terminal([sys.executable, "-m", "blocktui", "--fleet"], fleet.env, tmp_path)
        try:
            # The tree lists the other hosts' domains while fleet-2 still has not answered.
            screen, _ = terminal.wait_for(
                lambda s: all(f"▼ {name} connected" in s for name in MOVING) and s.count("vm-2 running") == 2,
                "the answering hosts' domains",
                timeout=30,
            )
            assert re.search(r"fleet-2 (connecting|not answering for \d+s)", _header(screen))
        except BaseException:
            terminal.close()
            raise
    try:
        terminal.wait_for(
            lambda s: "fleet-2 connected" in _header(s) and s.count("vm-2 running") == 3,
            "fleet-2 joining once thawed",
            timeout=60,
        )
    finally:
        terminal.close()
