"""2. Event-to-screen latency: libvirt delivering a job's completion event to the table showing it."""

from __future__ import annotations

import statistics
import subprocess
import time

from bench.common import Settings, log, run_agent
from bench.host import MIB, PREFIX, SYSTEM_URI, disk_target, make_base, make_overlay, start_domain, virsh
from bench.observer import Observer
from bench.report import Figure

SECTION = "2 event-to-screen latency (completion event → final state on screen)"
#: Disks per latency domain; their streams run one at a time, so no two of a domain end together.
DISKS = 20
GOAL_P99_MS = 50.0
#: Completions watched by ``virsh blockpull --wait`` for the comparison.
VIRSH_SAMPLES = 10


def _domains(settings: Settings, tag: str, wanted: int) -> list[tuple[str, str]]:
    """Fresh domains with enough small streamable disks for every completion."""
    base = settings.work / "base-16m.qcow2"
    make_base(base, 16 * MIB)
    disks: list[tuple[str, str]] = []
    count = -(-wanted // DISKS)
    for index in range(count):
        name = f"{PREFIX}lat{tag}{index}"
        tops = [settings.work / f"{name}-{disk_target(k)}.qcow2" for k in range(DISKS)]
        for top in tops:
            make_overlay(top, base)
        start_domain(name, tops, settings.work)
        disks += [(name, disk_target(k)) for k in range(DISKS)]
    # Interleave domains so consecutive streams are in different domains.
    ordered = sorted(disks, key=lambda item: (item[1], item[0]))
    return ordered[:wanted]


def _virsh(observer: Observer, disks: list[tuple[str, str]]) -> list[float]:
    """From the completion event (seen by the driver's own client) to ``virsh blockpull --wait`` exiting."""
    samples: list[float] = []
    for domain, disk in disks:
        process = subprocess.Popen(
            ["virsh", "-c", SYSTEM_URI, "blockpull", domain, disk, "--wait"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ended, _outcome = observer.wait_ended(domain, disk, 60)
        process.wait(60)
        samples.append(time.monotonic() - ended)
        time.sleep(0.05)
    return samples


def _measure(settings: Settings, observer: Observer, tag: str, load: str, app: bool) -> Figure:
    every = _domains(settings, tag, settings.completions + VIRSH_SAMPLES)
    disks, others = every[: settings.completions], every[settings.completions :]
    mode = "headless dashboard" if app else "Session poll loop (no UI)"
    log(f"latency: {len(disks)} completions, {load}, {mode}")
    try:
        result = run_agent(
            "latency",
            "--disks",
            ",".join(f"{d}:{k}" for d, k in disks),
            *(["--app"] if app else []),
            timeout=300,
        )
        log(f"latency: {len(others)} completions watched by virsh blockpull --wait")
        virsh_ms = sorted(1000 * s for s in _virsh(observer, others))
    finally:
        for name in sorted({d for d, _ in every}):
            virsh("destroy", name)
    p50, p99 = result["p50_ms"], result["p99_ms"]
    if app:
        phases = (
            f"medians: event to Session.step returning it {result['session_ms']:.0f} ms, to the jobs "
            f"table {result['to_table_ms']:.0f} ms, to the screen refreshed {result['paint_ms']:.0f} ms"
        )
    else:
        phases = "until Session.step() returns the final state (what the dashboard is then handed)"
    return Figure(
        SECTION,
        f"p50 / p99, {mode}, {load}",
        f"{p50:.0f} / {p99:.0f} ms" if p99 is not None else "no samples",
        f"virsh blockpull --wait: p50 {statistics.median(virsh_ms):.0f} ms, max {virsh_ms[-1]:.0f} ms",
        "p99 ≤ 50 ms",
        p99 is not None and p99 <= GOAL_P99_MS and result["count"] >= 50,
        f"{result['count']} completions of 16 MiB pulls, one at a time, max {result['max_ms']:.0f} ms; "
        f"{phases}; time.monotonic() stamped in the backend's event callback",
        {"load": load, **result, "virsh_ms": virsh_ms},
    )


def run(settings: Settings, observer: Observer, background: int) -> list[Figure]:
    """Measure with ``background`` throttled streams running (0 for an otherwise idle host)."""
    load = f"{background} other streams running" if background else "no other streams"
    tag = "b" if background else "i"
    figures = [_measure(settings, observer, tag, load, settings.app)]
    if settings.app and not background:
        figures.append(_measure(settings, observer, "s", load, False))
    return figures
