"""6. Scale: the dashboard started on 128 running streams plus 200 domains of 4 disks; 1,000 rows updated.

The streams run on the system libvirtd; the 800-disk listing comes from the libvirt test driver
(it has no block jobs), both hosts in one ``blocktui`` process in a 160x50 pty.
"""

from __future__ import annotations

import statistics
import time
from xml.sax.saxutils import escape

from bench.common import Settings, log, run_agent
from bench.host import SYSTEM_URI
from bench.monitor import dashboard_argv
from bench.report import Figure
from bench.terminal import Lines, Terminal, peak_rss_mib

SECTION = "6 scale"
DOMAINS = 200
DISKS = 4
ROWS = 1000
GOAL_SECONDS = 1.0
GOAL_RSS_MIB = 150.0
GOAL_TABLE_MS = 20.0
#: Where the generated disks claim to live (the test driver never opens them).
IMAGES = "/var/lib/libvirt/images"


def _disk(domain: int, index: int) -> str:
    target = f"vd{'abcd'[index]}"
    stem = f"{IMAGES}/vm{domain:03d}-{target}"
    chain = (
        f"<backingStore type='file'><format type='qcow2'/><source file='{stem}-1.qcow2'/>"
        f"<backingStore type='file'><format type='qcow2'/><source file='{IMAGES}/base-{index}.qcow2'/>"
        "<backingStore/></backingStore></backingStore>"
    )
    return (
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{stem}.qcow2'/>"
        f"{chain}<target dev='{target}' bus='virtio'/></disk>"
    )


def test_driver_xml(domains: int = DOMAINS, disks: int = DISKS) -> str:
    """A libvirt test-driver node with running domains, each disk on a three-image chain."""
    parts = ["<node>"]
    for number in range(domains):
        parts.append(
            f"<domain type='test'><name>{escape(f'vm{number:03d}')}</name><memory>65536</memory>"
            "<os><type arch='x86_64'>hvm</type></os><devices>"
            + "".join(_disk(number, index) for index in range(disks))
            + "</devices></domain>"
        )
    parts.append("</node>")
    return "".join(parts)


def full_screen(lines: Lines) -> bool:
    """Both hosts connected, the tree showing the listing, every visible table row a running job."""
    text = list(lines)
    header = next((i for i, line in enumerate(text) if "done/total" in line), None)
    # The hosts bar, first line: " connected" is not part of " disconnected".
    if header is None or text[0].count(" connected") < 2:
        return False
    if not any("vm000" in line for line in text[:header]):
        return False
    rows: list[str] = []
    for line in text[header + 1 :]:
        if line.lstrip().startswith("╰"):
            break
        rows.append(line)
    return bool(rows) and all(" active " in line for line in rows)


def _start_once(uris: list[str], linger: float) -> dict[str, float]:
    """Process start to the first full screen; peak RSS after ``linger`` more seconds on screen."""
    with Terminal(dashboard_argv(*uris)) as term:
        shown = term.wait_for(full_screen, 60)
        first = term.first_output - term.started
        time.sleep(linger)
        rss = peak_rss_mib(term.pid)
        rows = sum(" active " in line for line in term.lines())
    return {
        "start_to_screen_s": shown - term.started,
        "first_output_s": first,
        "maxrss_mib": rss,
        "rows": rows,
    }


def run(settings: Settings, jobs: int) -> list[Figure]:
    """The dashboard started on the system host's ``jobs`` streams plus the 200 x 4 test-driver listing."""
    xml = settings.work / "scale.xml"
    xml.write_text(test_driver_xml())
    uris = [f"test://{xml}", SYSTEM_URI]
    runs = 1 if settings.quick else 3
    log(f"scale: dashboard on {jobs} running streams + {DOMAINS} x {DISKS} disks, {runs} starts")
    starts = [_start_once(uris, 10.0) for _ in range(runs)]
    took = sorted(s["start_to_screen_s"] for s in starts)
    rss = max(s["maxrss_mib"] for s in starts)
    figures = [
        Figure(
            SECTION,
            f"{jobs} running streams + {DOMAINS} domains x {DISKS} disks: process start to full screen",
            f"{statistics.median(took):.2f} s",
            f"first output {statistics.median(s['first_output_s'] for s in starts):.2f} s; "
            f"slowest of {runs} {took[-1]:.2f} s",
            "< 1 s",
            statistics.median(took) < GOAL_SECONDS,
            f"median of {runs} starts of blocktui -c test://… -c qemu:///system in a 160x50 pty: until both "
            f"hosts are connected, the tree shows the test host's domains and every visible table row "
            f"({starts[0]['rows']} of {jobs}) is a running job",
            {"starts": starts, "jobs": jobs},
        ),
        Figure(
            SECTION,
            "peak RSS, same runs",
            f"{rss:.0f} MiB",
            "",
            "< 150 MiB",
            rss < GOAL_RSS_MIB,
            "VmHWM of the dashboard process 10 s after its first full screen (largest of the starts)",
            {},
        ),
    ]
    log(f"scale: one update of {ROWS} job rows (headless, the table alone)")
    table = run_agent("table", "--rows", str(ROWS), "--repeats", "5", timeout=300)
    figures.append(
        Figure(
            SECTION,
            f"one jobs-table update, {ROWS} rows all changed (headless)",
            f"{table['update_ms']:.0f} ms",
            f"sync() alone {table['sync_ms']:.0f} ms; first fill {table['fill_s'] * 1000:.0f} ms",
            "≤ 20 ms",
            table["update_ms"] <= GOAL_TABLE_MS,
            f"JobsTable.sync then the screen refresh, App.run_test headless 160x50 (no terminal output), "
            f"median of 5 (max {table['update_max_ms']:.0f} ms)",
            table,
        )
    )
    return figures
