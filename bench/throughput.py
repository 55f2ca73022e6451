"""3. Throughput neutrality (blocktui versus virsh on identical chains) and 4. throttle accuracy."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Settings, log, run_agent
from bench.host import GIB, MIB, PREFIX, SYSTEM_URI, make_base, make_overlay, start_domain, virsh
from bench.observer import Observer
from bench.report import Figure

NEUTRAL = "3 throughput neutrality (unthrottled 1 GiB chain)"
THROTTLE = "4 throttle accuracy (measured average rate vs limit)"
GOAL_RATIO = 0.97
GOAL_ERROR = 0.03
BLOCKTUI = str(Path(sys.executable).with_name("blocktui"))


def base_1g(settings: Settings) -> Path:
    """The 1 GiB fully written base every run of this section streams from."""
    base = settings.work / "base-1g.qcow2"
    make_base(base, GIB)
    return base


def _one_domain(settings: Settings, name: str) -> Path:
    top = settings.work / f"{name}-vda.qcow2"
    make_overlay(top, base_1g(settings))
    start_domain(name, [top], settings.work)
    return top


def _pull_with(tool: str, settings: Settings, observer: Observer, run: int) -> dict[str, float]:
    """Stream a fresh overlay of the 1 GiB chain with ``tool``; time the copy as a third client sees it."""
    name = f"{PREFIX}tp{tool}{run}"
    top = _one_domain(settings, name)
    argv = {
        "blocktui": [BLOCKTUI, "-c", SYSTEM_URI, "stream", name, "vda", "--wait"],
        "blocktui-noguard": [BLOCKTUI, "-c", SYSTEM_URI, "--no-guard", "stream", name, "vda", "--wait"],
        "virsh": ["virsh", "-c", SYSTEM_URI, "blockpull", name, "vda", "--wait"],
    }[tool]
    # Earlier runs' dirty pages must not be written back during this one.
    os.sync()
    launched = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = observer.wait_started(name, "vda", 30)
    ended, outcome = observer.wait_ended(name, "vda", 600)
    _out, err = process.communicate(timeout=60)
    exited = time.monotonic()
    virsh("destroy", name)
    top.unlink(missing_ok=True)
    if outcome != "completed" or process.returncode != 0:
        raise RuntimeError(f"{tool} pull ended {outcome}, exit {process.returncode}: {err.strip()}")
    return {"copy_s": ended - started, "wall_s": exited - launched, "seen_s": exited - ended}


def _convert(settings: Settings) -> float:
    """``qemu-img convert`` of the same chain to a new qcow2: the disk's copy-speed ceiling."""
    top = settings.work / "convert-top.qcow2"
    out = settings.work / "convert-out.qcow2"
    make_overlay(top, base_1g(settings))
    out.unlink(missing_ok=True)
    os.sync()
    t0 = time.monotonic()
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(top), str(out)], check=True)
    took = time.monotonic() - t0
    out.unlink(missing_ok=True)
    top.unlink(missing_ok=True)
    return took


def run_neutrality(settings: Settings, observer: Observer) -> list[Figure]:
    """Rotate blocktui (guarded, as it runs by default on QEMU 7.2, and unguarded) and virsh pulls."""
    base_1g(settings)
    tools = ("blocktui", "virsh", "blocktui-noguard")
    runs: dict[str, list[dict[str, float]]] = {tool: [] for tool in tools}
    for round_ in range(settings.pairs):
        for tool in tools[round_ % 3 :] + tools[: round_ % 3]:
            log(f"throughput: {tool} pull {round_ + 1}/{settings.pairs}")
            runs[tool].append(_pull_with(tool, settings, observer, round_))
    converts = [_convert(settings) for _ in range(2)]
    copy = {tool: statistics.median(r["copy_s"] for r in rs) for tool, rs in runs.items()}
    wall = {tool: statistics.median(r["wall_s"] for r in rs) for tool, rs in runs.items()}
    spread = {
        tool: f"{min(r['copy_s'] for r in rs):.2f}-{max(r['copy_s'] for r in rs):.2f} s"
        for tool, rs in runs.items()
    }
    ceiling = min(converts)
    virsh_rate = GIB / copy["virsh"] / MIB
    figures: list[Figure] = []
    for tool, label in (("blocktui", "guard on (default)"), ("blocktui-noguard", "--no-guard")):
        ratio = copy["virsh"] / copy[tool]
        figures.append(
            Figure(
                NEUTRAL,
                f"blocktui stream --wait, {label} / virsh",
                f"{ratio:.3f} (blocktui {GIB / copy[tool] / MIB:.0f} MiB/s)",
                f"virsh blockpull --wait {virsh_rate:.0f} MiB/s",
                "≥ 0.97",
                ratio >= GOAL_RATIO,
                f"medians of {settings.pairs} rotated pulls each; copy time from the job appearing to its "
                f"completion event, seen by a third libvirt client: blocktui {spread[tool]}, "
                f"virsh {spread['virsh']}; command wall time {wall[tool]:.2f} s vs {wall['virsh']:.2f} s",
                {"runs": runs[tool], "virsh_runs": runs["virsh"], "ratio": ratio},
            )
        )
    figures.append(
        Figure(
            NEUTRAL,
            "qemu-img convert of the same chain",
            f"{GIB / ceiling / MIB:.0f} MiB/s",
            f"blocktui's pull at {ceiling / copy['blocktui'] * 100:.0f} % of it, virsh's at "
            f"{ceiling / copy['virsh'] * 100:.0f} %",
            "copy-speed ceiling (no goal)",
            None,
            "best of 2 runs to a new qcow2, page cache warm as for the pulls; a pull copies in 512 KiB "
            "steps through the running QEMU's block layer",
            {"convert_s": converts},
        )
    )
    return figures


def _direct_rate(settings: Settings, observer: Observer, name: str, limit: int) -> float:
    """The same limit set straight through libvirt, progress read by this client: QEMU's own accuracy."""
    top = _one_domain(settings, name)
    try:
        observer.pull(name, "vda", limit)
        time.sleep(1.0)
        t0, c0 = time.monotonic(), observer.job(name, "vda")["cur"]
        time.sleep(settings.throttle_seconds)
        t1, c1 = time.monotonic(), observer.job(name, "vda")["cur"]
    finally:
        virsh("destroy", name)
        top.unlink(missing_ok=True)
    return (c1 - c0) / (t1 - t0)


def run_throttle(settings: Settings, observer: Observer) -> list[Figure]:
    """Stream at 10, 50 and 100 MiB/s; compare blocktui's measured average with the limit."""
    figures: list[Figure] = []
    for limit_mib in (10, 50, 100):
        name = f"{PREFIX}thr{limit_mib}"
        top = _one_domain(settings, name)
        log(f"throttle: {limit_mib} MiB/s for {settings.throttle_seconds:.0f} s")
        result = run_agent(
            "throttle",
            "--disks",
            f"{name}:vda",
            "--bandwidth",
            str(limit_mib * MIB),
            "--seconds",
            str(settings.throttle_seconds),
            "--warmup",
            "1",
        )
        virsh("destroy", name)
        top.unlink(missing_ok=True)
        measured = result["rate"] / MIB
        error = measured / limit_mib - 1
        direct = _direct_rate(settings, observer, f"{name}d", limit_mib * MIB) / MIB
        figures.append(
            Figure(
                THROTTLE,
                f"limit {limit_mib} MiB/s",
                f"{measured:.2f} MiB/s ({error * 100:+.1f} %)",
                f"same limit via libvirt alone: {direct:.2f} MiB/s ({(direct / limit_mib - 1) * 100:+.1f} %)",
                "within 3 %",
                abs(error) <= GOAL_ERROR,
                f"progress polled by blocktui over {result['window']:.1f} s after 1 s warm-up "
                f"({result['samples']} samples)",
                {"limit_mib": limit_mib, "direct_mib": direct, **result},
            )
        )
    return figures
