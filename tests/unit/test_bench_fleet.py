"""The fleet bench's readings: the tree and the jobs table read off a screen, a row's lag behind its
host, and the slow link's delay."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import bench
from bench.fleet_screen import Shown, all_listed, done_cells, lateness, listed, row_label, spans, worst_lag
from bench.slow_link import relay

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
SLOW_LINK = Path(bench.__file__).parent / "slow_link.py"


def _screen() -> list[str]:
    """A dashboard screen over three hosts, drawn as Textual draws it (tree left, detail right)."""
    tree = [
        "▼ fleet-1 connected",
        "├── ▼ vm-1 running",
        "│   └── ● vda  vda.qcow2  2 layers qcow2",
        "└── ▼ vm-2 running",
        "    └── ● vda  vda.qcow2  2 layers qcow2",
        "▼ fleet-10 connected",
        "└── ▼ vm-1 running",
        "▼ fleet-2 not answering for 3s",
        "└── ▼ vm-2 paused",
    ]
    top = [f"│{line:<44}││ vm-1 running on fleet-3{'':<80}│" for line in tree]
    table = [
        "│ host     domain       disk   kind    state                 chunk progress      %   done/total ",
        "│ fleet-1  vm-2         vda    pull    active                      ██▌        31%    37M/120M ",
        "│ fleet-…  vm-2         vda    pull    active                      █          12%   9.5M/80M  ",
        "│ fleet-2  vm-2         vda    pull    active                      ███        40%    40M/100M ",
        "│ fleet-3  vm-1         vda    pull    completed                   ████████  100%    64M/64M ",
    ]
    return ["blocktui  ● 9 connected  ◌ fleet-2 not answering for 3s", *top, *table]


def test_the_tree_is_read_per_host_and_only_running_domains_count() -> None:
    shown = listed(_screen())
    assert shown == {"fleet-1": {"vm-1", "vm-2"}, "fleet-10": {"vm-1"}, "fleet-2": set()}
    assert all_listed(_screen(), {"fleet-1": {"vm-1", "vm-2"}, "fleet-10": {"vm-1"}})
    assert not all_listed(_screen(), {"fleet-10": {"vm-1", "vm-2"}})
    assert not all_listed(_screen(), {"fleet-3": {"vm-1"}})  # only in the detail pane


def test_done_cells_of_active_rows_with_long_host_names_read_when_unambiguous() -> None:
    assert row_label("fleet-10") == "fleet-…"
    hosts = ["fleet-1", "fleet-2", "fleet-3", "fleet-10"]
    assert done_cells(_screen(), hosts) == {"fleet-1": "37M", "fleet-10": "9.5M", "fleet-2": "40M"}
    # Two hosts drawn with one label: neither row can be told apart, so neither is read.
    assert "fleet-10" not in done_cells(_screen(), [*hosts, "fleet-11"])


def test_a_row_is_late_from_the_host_passing_its_value_to_the_screen_replacing_it() -> None:
    samples = [(10.0, "37M"), (10.4, "37M"), (11.0, "38M"), (12.5, "39M")]
    assert spans(samples, 20.0) == [
        Shown("37M", 10.0, 11.0),
        Shown("38M", 11.0, 12.5),
        Shown("39M", 12.5, 20.0),
    ]
    # The host passed 37M (as the table rounds it: 38M) at 10.6; the screen changed at 11.0.
    truth = [(10.2, 37 * MIB), (10.6, int(37.6 * MIB)), (11.4, 39 * MIB)]
    assert lateness(Shown("37M", 10.0, 11.0), truth) == pytest.approx(0.4)
    # A value the host had not passed while it was shown was not late at all.
    assert lateness(Shown("39M", 12.5, 13.0), truth) == 0.0
    worst, host = worst_lag({"fleet-1": samples}, {"fleet-1": truth}, 10.0, 13.0, 13.0)
    assert (round(worst, 2), host) == (1.1, "fleet-1")  # 38M kept from 11.4 to 12.5
    # Only values on the screen within the window count.
    assert worst_lag({"fleet-1": samples}, {"fleet-1": truth}, 0.0, 9.0, 13.0) == (0.0, "")


def test_the_slow_link_holds_each_chunk_for_its_delay_and_keeps_their_order() -> None:
    chunks = [b"one", b"two", b""]
    written: list[tuple[float, bytes]] = []
    ended = threading.Event()
    started = time.monotonic()
    relay(lambda: chunks.pop(0), lambda data: written.append((time.monotonic(), data)), ended.set, 0.3)
    assert [data for _, data in written] == [b"one", b"two"]
    assert all(at - started >= 0.3 for at, _ in written)
    assert ended.is_set()


def test_the_slow_link_as_ssh_runs_it_relays_both_ways_late_and_ends_with_the_session() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo() -> None:
        peer, _ = server.accept()
        with peer:
            while data := peer.recv(4096):
                peer.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    link = subprocess.Popen(
        [sys.executable, str(SLOW_LINK), "127.0.0.1", str(port), "0.2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert link.stdin is not None and link.stdout is not None
        sent = time.monotonic()
        link.stdin.write(b"hello")
        link.stdin.flush()
        assert link.stdout.read(5) == b"hello"
        assert time.monotonic() - sent >= 0.4  # 0.2 s each way
        link.stdin.close()  # ssh ends the session: the host side closes, and so does the link
        assert link.wait(30) == 0
    finally:
        link.kill()
        server.close()
