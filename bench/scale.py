"""6. Scale: 200 domains of 4 disks (libvirt test driver) to a complete table; 1,000 job rows updated."""

from __future__ import annotations

import time
from pathlib import Path
from xml.sax.saxutils import escape

from bench.common import log, run_agent
from bench.report import Figure

SECTION = "6 scale"
DOMAINS = 200
DISKS = 4
ROWS = 1000
GOAL_SECONDS = 1.0
GOAL_RSS_MIB = 150.0
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


def run(work: Path, *, app: bool, quick: bool) -> list[Figure]:
    """Both figures; the table one needs the dashboard's widgets."""
    del quick  # the scale figures are cheap: always full size
    xml = work / "scale.xml"
    xml.write_text(test_driver_xml())
    uri = f"test://{xml}"
    log(f"scale: {DOMAINS} domains x {DISKS} disks from {xml.name}")
    t0 = time.monotonic()
    plain = run_agent("scale", "--uri", uri, timeout=120)
    session_start = plain["shown_at"] - t0
    figures: list[Figure] = []
    if app:
        t0 = time.monotonic()
        shown = run_agent("scale", "--uri", uri, "--app", timeout=120)
        start_to_table = shown["shown_at"] - t0
        rss = shown["maxrss_mib"]
        note = (
            f"process start to the dashboard's tree ({shown['tree_nodes']} nodes) and jobs table filled, "
            f"headless: blocktui core imports {shown['imports_s']:.2f} s, Textual and the "
            f"dashboard {shown['ui_import_s']:.2f} s, app start to complete screen {shown['ui_s']:.2f} s"
        )
    else:
        start_to_table, rss, shown = session_start, plain["maxrss_mib"], {}
        note = "no dashboard: process start to the Session's first snapshot"
    figures += [
        Figure(
            SECTION,
            f"{plain['domains']} domains, {plain['disks']} disks ({plain['layers']} backing layers): "
            "start to complete table",
            f"{start_to_table:.2f} s",
            f"process start to Session.open + first snapshot {session_start:.2f} s "
            f"(open {plain['open_s']:.2f} s)",
            "< 1 s",
            start_to_table < GOAL_SECONDS,
            note,
            {"session": plain, "app": shown, "start_to_table_s": start_to_table},
        ),
        Figure(
            SECTION,
            "peak RSS, same run",
            f"{rss:.0f} MiB",
            f"Session only {plain['maxrss_mib']:.0f} MiB",
            "< 150 MiB",
            rss < GOAL_RSS_MIB,
            "ru_maxrss of the process that opened the host (and filled the dashboard)",
            {},
        ),
    ]
    if app:
        log(f"scale: one update of {ROWS} job rows")
        table = run_agent("table", "--rows", str(ROWS), "--repeats", "5", timeout=300)
        figures.append(
            Figure(
                SECTION,
                f"one jobs-table update, {ROWS} rows all changed",
                f"{table['update_ms']:.0f} ms",
                f"sync() alone {table['sync_ms']:.0f} ms; first fill {table['fill_s'] * 1000:.0f} ms",
                "(no fixed goal; refresh is every 500 ms)",
                None,
                f"JobsTable.sync then the screen refresh, headless 160x50, median of 5 (max "
                f"{table['update_max_ms']:.0f} ms)",
                table,
            )
        )
    return figures
