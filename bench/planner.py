"""4b. Summed rate of streams under a host budget, and 5. chunk overshoot, through blocktui's planner."""

from __future__ import annotations

import statistics

from bench.common import Settings, log, run_agent
from bench.host import MIB, PREFIX, make_base, make_overlay, start_domain, virsh
from bench.observer import Observer
from bench.report import Figure
from bench.throughput import THROTTLE, base_1g

OVERSHOOT = "5 chunk overshoot (bytes copied past a chunk boundary)"
BUDGET = 80 * MIB
STREAMS = 8
CHUNK = 32 * MIB
CHUNK_DISK = 256 * MIB
CHUNK_LIMIT = 100 * MIB
QUEUE_ACTIVE = 3
QUEUE_BUDGET = 60 * MIB
QUEUE_DISK = 128 * MIB


def _domains(settings: Settings, tag: str, count: int, base_size: int) -> list[str]:
    """``count`` one-disk domains over a fresh overlay each (one stream per domain: no shared end)."""
    base = base_1g(settings) if base_size == 1024 * MIB else settings.work / f"base-{base_size // MIB}m.qcow2"
    make_base(base, base_size)
    names = []
    for index in range(count):
        name = f"{PREFIX}{tag}{index}"
        top = settings.work / f"{name}-vda.qcow2"
        make_overlay(top, base)
        start_domain(name, [top], settings.work)
        names.append(name)
    return names


def _state(settings: Settings) -> str:
    path = settings.work / "state"
    path.mkdir(exist_ok=True)
    return str(path)


def _queue(settings: Settings) -> Figure:
    """8 streams through ``--max-active 3 --budget 60M``: both limits held while the queue drains."""
    names = _domains(settings, "que", STREAMS, QUEUE_DISK)
    log(f"planner: {STREAMS} streams, max-active {QUEUE_ACTIVE}, budget {QUEUE_BUDGET // MIB} MiB/s")
    try:
        result = run_agent(
            "queue",
            "--disks",
            ",".join(f"{n}:vda" for n in names),
            "--bandwidth",
            str(QUEUE_BUDGET),
            "--max-active",
            str(QUEUE_ACTIVE),
            "--seconds",
            "120",
            "--state",
            _state(settings),
        )
    finally:
        for name in names:
            virsh("destroy", name)
    typical = result["mean_rate"] / MIB
    peak = result["peak_rate"] / MIB
    error = typical / (QUEUE_BUDGET / MIB) - 1
    over = peak / (QUEUE_BUDGET / MIB) - 1
    return Figure(
        THROTTLE,
        f"{STREAMS} streams, --max-active {QUEUE_ACTIVE} --budget {QUEUE_BUDGET // MIB}M",
        f"at most {result['most_active']} active; summed {typical:.1f} MiB/s ({error * 100:+.1f} %), "
        f"peak {peak:.1f} ({over * 100:+.1f} %)",
        f"max-active {QUEUE_ACTIVE}, budget {QUEUE_BUDGET // MIB} MiB/s",
        "never more active; every 2 s window within 3 %",
        result["most_active"] <= QUEUE_ACTIVE
        and abs(error) <= 0.03
        and over <= 0.03
        and bool(result["finished"]),
        f"{QUEUE_DISK // MIB} MiB disks streamed to completion in {result['seconds']:.1f} s; summed progress "
        "over 2 s windows as blocktui polls it, median and peak (a stream that starts bursts briefly)",
        {"budget": QUEUE_BUDGET, "max_active": QUEUE_ACTIVE, **result},
    )


def run(settings: Settings, observer: Observer) -> list[Figure]:
    """The budget figure and the overshoot figure."""
    del observer
    figures: list[Figure] = []
    names = _domains(settings, "bud", STREAMS, 1024 * MIB)
    log(f"planner: {STREAMS} streams under a {BUDGET // MIB} MiB/s host budget")
    try:
        result = run_agent(
            "budget",
            "--disks",
            ",".join(f"{n}:vda" for n in names),
            "--bandwidth",
            str(BUDGET),
            "--seconds",
            str(settings.throttle_seconds),
            "--warmup",
            "2",
            "--state",
            _state(settings),
        )
    finally:
        for name in names:
            virsh("destroy", name)
    measured = result["rate"] / MIB
    error = measured / (BUDGET / MIB) - 1
    peak = result.get("peak_rate", 0.0) / (BUDGET) - 1 if result.get("peak_rate") else None
    figures.append(
        Figure(
            THROTTLE,
            f"{STREAMS} streams, host budget {BUDGET // MIB} MiB/s",
            f"{measured:.2f} MiB/s summed ({error * 100:+.1f} %)"
            + ("" if peak is None else f", highest 2 s window {peak * 100:+.1f} %"),
            f"budget {BUDGET // MIB} MiB/s",
            "within 3 %, in every 2 s window too",
            abs(error) <= 0.03 and (peak is None or peak <= 0.03),
            f"planner shares the budget (water-filling); summed progress polled by blocktui over "
            f"{result['window']:.1f} s after 2 s warm-up",
            {"budget": BUDGET, **result},
        )
    )
    figures.append(_queue(settings))
    count = 2 if settings.quick else 4
    names = _domains(settings, "chk", count, CHUNK_DISK)
    log(f"planner: {count} chunked streams ({CHUNK // MIB} MiB chunks of {CHUNK_DISK // MIB} MiB disks)")
    try:
        result = run_agent(
            "chunks",
            "--disks",
            ",".join(f"{n}:vda" for n in names),
            "--bandwidth",
            str(CHUNK_LIMIT),
            "--chunk",
            str(CHUNK),
            "--seconds",
            "300",
            "--state",
            _state(settings),
        )
    finally:
        for name in names:
            virsh("destroy", name)
    overshoots: list[int] = result["overshoots"]
    if overshoots:
        median = statistics.median(overshoots)
        value = f"median {median / 1024:.0f} KiB, max {max(overshoots) / 1024:.0f} KiB"
    else:
        value = "no checkpoints recorded"
    figures.append(
        Figure(
            OVERSHOOT,
            f"{len(overshoots)} boundaries, limit {CHUNK_LIMIT // MIB} MiB/s",
            value,
            f"QEMU's stream step: 512 KiB; chunk {CHUNK // MIB} MiB",
            "as small as possible (no fixed goal)",
            None,
            f"{count} streams of {CHUNK_DISK // MIB} MiB in {CHUNK // MIB} MiB chunks, one per domain; "
            "overshoot as the planner's journal records it (offset read just before the stop minus "
            "the boundary); "
            f"plans ended {', '.join(sorted(set(result['statuses'])))} in {result['seconds']:.0f} s",
            result,
        )
    )
    return figures
