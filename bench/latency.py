"""2. Event-to-screen latency: a job's completion event (seen by a third client) to the terminal showing it.

The bench's own libvirt client (``bench.observer``) starts each stream and records when libvirt
delivers its completion event. The dashboard runs as ``blocktui -c qemu:///system`` in a 160x50
pty (``bench.terminal``); the screen is read with a terminal emulator, and the sample ends when
the bytes that turn the job's row to ``completed`` have been read from the pty. Typed into the
dashboard as a user would: a filter on the benchmark's latency domains (with 128 other streams the
new row would be below the screen's last line) and ``c`` after each sample (clear finished jobs),
so every row measured is on the screen. ``virsh blockpull --wait`` runs in a pty the same way; its
sample ends when ``Pull complete`` is read.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable

from bench.common import Settings, log
from bench.host import MIB, PREFIX, SYSTEM_URI, disk_target, make_base, make_overlay, start_domain, virsh
from bench.monitor import dashboard_argv
from bench.observer import Observer
from bench.report import Figure
from bench.terminal import Lines, Terminal

SECTION = "2 event-to-screen latency (completion event → row changed on the terminal)"
#: Disks per latency domain; their streams run one at a time, so no two of a domain end together.
DISKS = 20
GOAL_P99_MS = 50.0
#: Completions watched by ``virsh blockpull --wait`` for the comparison.
VIRSH_SAMPLES = 10
#: Every latency domain's name starts with this (short: the table's domain column is 12 wide).
LATENCY = f"{PREFIX}l"
#: A stream starts this slow, so its row is on the screen before it can end; then it is unthrottled.
START_LIMIT = 1 * MIB


def _domains(settings: Settings, tag: str, wanted: int) -> list[tuple[str, str]]:
    """Fresh domains with enough small streamable disks for every completion."""
    base = settings.work / "base-16m.qcow2"
    make_base(base, 16 * MIB)
    disks: list[tuple[str, str]] = []
    count = -(-wanted // DISKS)
    for index in range(count):
        name = f"{LATENCY}{tag}{index}"
        tops = [settings.work / f"{name}-{disk_target(k)}.qcow2" for k in range(DISKS)]
        for top in tops:
            make_overlay(top, base)
        start_domain(name, tops, settings.work)
        disks += [(name, disk_target(k)) for k in range(DISKS)]
    # Interleave domains so consecutive streams are in different domains.
    ordered = sorted(disks, key=lambda item: (item[1], item[0]))
    return ordered[:wanted]


def row(domain: str, disk: str, state: str) -> Callable[[Lines], bool]:
    """Whether the jobs table shows the job's row in ``state``."""
    pattern = re.compile(rf"\s{re.escape(domain)}\s+{re.escape(disk)}\s+\S+\s+{re.escape(state)}\b")
    return lambda lines: any(pattern.search(line) for line in lines)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    rank = max(1, -(-int(q * len(sorted_values) * 1000) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _on_screen(text: str) -> Callable[[Lines], bool]:
    return lambda lines: any(text in line for line in lines)


def _filter(term: Terminal, needle: str) -> None:
    """Type ``/ needle Enter`` once the dashboard is up, each key after the screen took the last."""
    term.wait_for(lambda lines: " connected" in lines[0] and _on_screen("done/total")(lines), 60)
    term.send(b"/")
    term.wait_for(_on_screen("filter: host"), 10)  # the field's placeholder: it has the focus
    term.send(needle.encode())
    term.wait_for(lambda lines: not _on_screen("filter: host")(lines), 10)
    term.send(b"\r")  # back to the jobs table, so the next keys are commands


def _dashboard(observer: Observer, disks: list[tuple[str, str]]) -> list[float]:
    """Seconds from each completion event to its row turning final on the dashboard's terminal."""
    samples: list[float] = []
    with Terminal(dashboard_argv(SYSTEM_URI)) as term:
        _filter(term, LATENCY)
        for domain, disk in disks:
            observer.pull(domain, disk, START_LIMIT)
            term.wait_for(row(domain, disk, "active"), 30)
            observer.set_speed(domain, disk, 0)
            ended, outcome = observer.wait_ended(domain, disk, 60)
            shown = term.wait_for(row(domain, disk, outcome), 30)
            samples.append(shown - ended)
            term.send(b"c")  # clear finished jobs: the next row takes this one's place
            shown_final = row(domain, disk, outcome)
            term.wait_for(lambda lines: not shown_final(lines), 10)  # noqa: B023 - used at once
            time.sleep(0.05)  # let libvirt finish with this domain before its next job starts
    return samples


def _virsh(observer: Observer, disks: list[tuple[str, str]]) -> list[float]:
    """Seconds from each completion event to ``virsh blockpull --wait`` printing its completion."""
    samples: list[float] = []
    for domain, disk in disks:
        with Terminal(["virsh", "-c", SYSTEM_URI, "blockpull", domain, disk, "--wait"]) as term:
            ended, _outcome = observer.wait_ended(domain, disk, 60)
            shown = term.wait_for(_on_screen("Pull complete"), 30)
        samples.append(shown - ended)
        time.sleep(0.05)
    return samples


def _measure(settings: Settings, observer: Observer, tag: str, load: str) -> Figure:
    every = _domains(settings, tag, settings.completions + VIRSH_SAMPLES)
    disks, others = every[: settings.completions], every[settings.completions :]
    log(f"latency: {len(disks)} completions, {load}, dashboard in a pty")
    try:
        ms = sorted(1000 * s for s in _dashboard(observer, disks))
        log(f"latency: {len(others)} completions watched by virsh blockpull --wait in a pty")
        virsh_ms = sorted(1000 * s for s in _virsh(observer, others))
    finally:
        for name in sorted({d for d, _ in every}):
            virsh("destroy", name)
    p50, p99 = statistics.median(ms), percentile(ms, 0.99)
    return Figure(
        SECTION,
        f"p50 / p99, {load}",
        f"{p50:.0f} / {p99:.0f} ms",
        f"virsh blockpull --wait: p50 {statistics.median(virsh_ms):.0f} ms, max {virsh_ms[-1]:.0f} ms",
        "p99 ≤ 50 ms (with 128 other streams)",
        p99 <= GOAL_P99_MS and len(ms) >= 50,
        f"{len(ms)} completions of 16 MiB pulls, one at a time, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms; "
        "event time from the bench's own libvirt client, screen time from the dashboard's pty",
        {"load": load, "samples_ms": ms, "p50_ms": p50, "p99_ms": p99, "virsh_ms": virsh_ms},
    )


def run(settings: Settings, observer: Observer, background: int) -> list[Figure]:
    """Measure with ``background`` throttled streams running (0 for an otherwise idle host)."""
    load = f"{background} other streams running" if background else "no other streams"
    return [_measure(settings, observer, "b" if background else "i", load)]
